"""The keyword-conditioned caption decoder (torch; imported only inside jobs).

As the BLAT authors' ``KeywordProbTransformerDecoder`` (wsntxxn/AudioCaption,
``captioning/models/transformer_decoder.py``): each word embedding (scaled by √d) gets the
projection of the clip's multi-hot keyword vector added, then a LayerNorm and sinusoidal
positions (with dropout); post-LN ``nn.TransformerDecoder`` layers (heads of width 64,
FFN 4·d) cross-attend to the audio frames projected by Linear-ReLU-Dropout-LayerNorm; a
bias-free classifier; Xavier-uniform init of every matrix. The loss is label-smoothed
cross-entropy over the caption's tokens (their ``LabelSmoothingLoss``), averaged over the
batch's tokens. Keywords may be dropped one by one during training (their
``dropout_prob``). Decoding is greedy (theirs: beam search of 3).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import padding_mask
from encoders.transformer import sinusoidal_positions


class KeywordCaptioner(nn.Module):
    """Audio frames [B, T, D] + keywords [B, K] -> caption token logits; the objective the
    trainer runs (``forward(batch, frames, lengths)`` returns ``{"loss", ...}``)."""

    def __init__(self, encoder_dim: int, num_keywords: int, num_embeddings: int, bos_id: int, eos_id: int,
                 pad_id: int, dim: int = 256, layers: int = 2, dropout: float = 0.2, label_smoothing: float = 0.1,
                 keyword_dropout: float = 0.0, max_tokens: int = 30):
        super().__init__()
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.dim, self.max_tokens = dim, max_tokens
        self.label_smoothing, self.keyword_dropout = label_smoothing, keyword_dropout
        self.word_embedding = nn.Embedding(num_embeddings, dim)
        self.in_dropout = nn.Dropout(dropout)
        self.pos_dropout = nn.Dropout(dropout)
        self.keyword_proj = nn.Linear(num_keywords, dim)
        self.word_keyword_norm = nn.LayerNorm(dim)
        self.attn_proj = nn.Sequential(nn.Linear(encoder_dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(dim))
        layer = nn.TransformerDecoderLayer(dim, max(1, dim // 64), 4 * dim, dropout, batch_first=True)
        self.model = nn.TransformerDecoder(layer, layers)
        self.classifier = nn.Linear(dim, num_embeddings, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def logits(self, words: Tensor, word_lengths: Tensor, keywords: Tensor, frames: Tensor,
               lengths: Tensor) -> Tensor:
        """[B, L, V] next-token logits of input words [B, L] (BOS first)."""
        return self.classifier(self.hidden(words, word_lengths, keywords, frames, lengths))

    def hidden(self, words: Tensor, word_lengths: Tensor, keywords: Tensor, frames: Tensor,
               lengths: Tensor) -> Tensor:
        """[B, L, d] decoder outputs of input words [B, L], before the classifier."""
        x = self.in_dropout(self.word_embedding(words)) * math.sqrt(self.dim)
        x = self.word_keyword_norm(x + self.keyword_proj(keywords)[:, None, :])
        x = self.pos_dropout(x + sinusoidal_positions(x.shape[1], self.dim, x.device).to(x.dtype))
        length = words.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=words.device), 1)
        memory = self.attn_proj(frames)
        memory_pad = ~padding_mask(lengths.clamp(min=1), frames.shape[1])
        return self.model(x, memory, tgt_mask=causal, tgt_key_padding_mask=~padding_mask(word_lengths, length),
                          memory_key_padding_mask=memory_pad)

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Any]:
        tokens, token_lengths = batch["tokens"], batch["tokens_lengths"]  # BOS ... EOS, padded
        keywords = batch["keywords"]
        if self.training and self.keyword_dropout > 0:
            keywords = keywords * (torch.rand_like(keywords) >= self.keyword_dropout)
        logits = self.logits(tokens[:, :-1], token_lengths - 1, keywords, frames, lengths)
        targets = tokens[:, 1:].masked_fill(~padding_mask(token_lengths - 1, tokens.shape[1] - 1), -100)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                               label_smoothing=self.label_smoothing)
        return {"loss": loss}

    @torch.no_grad()
    def greedy(self, keywords: Tensor, frames: Tensor, lengths: Tensor) -> list[list[int]]:
        """Token ids (BOS and EOS left out) of each clip's greedy caption."""
        words = torch.full((len(frames), 1), self.bos_id, dtype=torch.long, device=frames.device)
        done = torch.zeros(len(frames), dtype=torch.bool, device=frames.device)
        for _ in range(self.max_tokens - 1):
            word_lengths = torch.full((len(frames),), words.shape[1], device=frames.device)
            step = self.classifier(self.hidden(words, word_lengths, keywords, frames, lengths)[:, -1]).argmax(-1)
            step = step.masked_fill(done, self.eos_id)
            words = torch.cat([words, step[:, None]], dim=1)
            done |= step == self.eos_id
            if done.all():
                break
        out = []
        for row in words[:, 1:].tolist():
            out.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return out
