"""PAR: parallel decoding of the tag sequence (CapPa, "Image Captioners Are Scalable Vision
Learners Too"; the UTS paper mixes 0.75 parallel with 0.25 autoregressive samples).

A text decoder cross-attends to the encoder output. For each sample, with probability
``parallel_fraction``:

- **parallel**: every decoder input is the mask token, over the target's true length, with
  no BOS/EOS, under fully bidirectional self-attention (padding still masked); the decoder
  predicts all target tokens at once from the audio alone;
- otherwise **autoregressive**: BOS then the target shifted right (teacher forcing), under
  a causal mask; the target ends with EOS.

The target is the clip's canonical tag sequence (in-system tags by tag-system rank, joined
by ", "), tokenised with the MiniLM WordPiece vocabulary or any local tokenizer folder.
The loss is token-level cross-entropy with label smoothing 0.1 over all valid positions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import padding_mask
from encoders.decoder import TextDecoder
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Num, Str

COMPONENT = Component(
    kind="objective",
    target="PAR",
    version="1",
    needs="tags",
    doc="parallel decoding of the tag sequence with a bidirectional decoder mask (UTS PAR, CapPa)",
    options={
        "parallel_fraction": Num(0.75, min=0.0, max=1.0, doc="share of samples decoded in parallel (the rest autoregressive)"),
        "tokenizer": Str(None, doc="a local tokenizer folder (default: the MiniLM WordPiece vocabulary)"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens"),
        "vocab": Str("full", choices=["full", "targets"],
                     doc="full: the tokenizer's vocabulary; targets: only tokens of the training targets"),
        "label_smoothing": Num(0.1, min=0.0, max=1.0, doc="label smoothing of the token cross-entropy"),
        "layers": Num(6, integer=True, min=1, doc="decoder layers"),
        "dim": Num(768, integer=True, min=1, doc="decoder width"),
        "heads": Num(8, integer=True, min=1, doc="decoder attention heads"),
        "ffn_dim": Num(3072, integer=True, min=1, doc="decoder feed-forward width"),
        "dropout": Num(0.1, min=0.0, max=1.0, doc="decoder dropout"),
    },
)


class PAR(nn.Module):
    text_field = "tag_sequences"
    default_max_tokens = 64

    def __init__(self, encoder_dim: int, num_embeddings: int, bos_id: int, eos_id: int, mask_id: int,
                 parallel_fraction: float = 0.75, label_smoothing: float = 0.1, layers: int = 6, dim: int = 768,
                 heads: int = 8, ffn_dim: int = 3072, dropout: float = 0.1, max_len: int = 65):
        super().__init__()
        if not 0.0 <= parallel_fraction <= 1.0:
            raise ValueError(f"parallel_fraction must be in [0, 1], got {parallel_fraction}")
        self.parallel_fraction = parallel_fraction
        self.label_smoothing = label_smoothing
        self.bos_id, self.eos_id, self.mask_id = bos_id, eos_id, mask_id
        self.decoder = TextDecoder(encoder_dim, num_embeddings, layers, dim, heads, ffn_dim, dropout, max_len)

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, tokenizer: str | None = None,
                         max_tokens: int | None = None, vocab: str = "full",
                         **options: Any) -> tuple[nn.Module, dict[str, Any]]:
        """``vocab: full`` decodes into the whole tokenizer vocabulary (the reference);
        ``vocab: targets`` into only the tokens that occur in the training targets (plus the
        special tokens), renumbered — the same loss over a much smaller softmax, for small
        CPU runs. ``max_tokens`` truncates each target."""
        from encoders.text import TextTokenizer

        if vocab not in ("full", "targets"):
            raise ValueError(f"vocab must be 'full' or 'targets', got {vocab!r}")
        texts = sup.require(cls.text_field, cls.__name__.lower())
        tok = TextTokenizer(tokenizer)
        max_tokens = max_tokens or cls.default_max_tokens
        ids = tok.encode(texts, max_tokens)
        specials = (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id)
        num_embeddings = tok.num_embeddings
        if vocab == "targets":
            used = sorted({t for seq in ids for t in seq} - set(specials))
            compact = {t: i for i, t in enumerate([*specials, *used])}
            ids = [[compact[t] for t in seq] for seq in ids]
            specials = (0, 1, 2, 3)
            num_embeddings = len(compact)
        objective = cls(encoder_dim, num_embeddings, *specials[1:], max_len=max_tokens + 1, **options)
        return objective, {"tokens": [torch.tensor(t, dtype=torch.long) for t in ids]}

    def decoder_io(self, tokens: Tensor, lengths: Tensor, parallel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(inputs, targets, lengths) [B, L+1] for target ``tokens`` [B, L] and per-sample modes."""
        b, length = tokens.shape
        pos = torch.arange(length + 1, device=tokens.device)[None]
        padded = F.pad(tokens, (0, 1))  # [B, L+1]
        ar_in = F.pad(tokens, (1, 0), value=self.bos_id)  # BOS, t1 .. tn
        ar_tgt = torch.where(pos == lengths[:, None], torch.full_like(padded, self.eos_id), padded)  # t1 .. tn EOS
        par_in = torch.full_like(padded, self.mask_id)
        inputs = torch.where(parallel[:, None], par_in, ar_in)
        targets = torch.where(parallel[:, None], padded, ar_tgt)
        out_lengths = torch.where(parallel, lengths, lengths + 1)
        return inputs, targets, out_lengths

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Any]:
        tokens, token_lengths = batch["tokens"], batch["tokens_lengths"]
        parallel = torch.rand(tokens.shape[0], device=tokens.device) < self.parallel_fraction
        parallel = parallel & (token_lengths > 0)  # an empty target can only be decoded as EOS
        inputs, targets, in_lengths = self.decoder_io(tokens, token_lengths, parallel)
        logits = self.decoder(inputs, in_lengths, ~parallel, frames, lengths).float()
        valid = padding_mask(in_lengths, inputs.shape[1])
        loss = F.cross_entropy(logits[valid], targets[valid], label_smoothing=self.label_smoothing)
        with torch.no_grad():
            accuracy = (logits[valid].argmax(-1) == targets[valid]).float().mean().item()
        return {"loss": loss, "token_accuracy": accuracy, "parallel_share": parallel.float().mean().item()}
