"""The text decoder of PAR and captioning: pre-LN Transformer blocks with self-attention
under a per-sample mask and cross-attention to the audio encoder's frames.

Its sizes come from a named preset (:data:`PRESETS`), each value overridable:

- ``auden``: the Auden caption model's defaults (``AudioCaptionConfig``): 6 layers, width
  768, 8 heads, FFN 3072, dropout 0.1, label smoothing 0.1 — the recipe of the UTS and
  CaptionStew caption models;
- ``cappa``: CapPa's own decoder (Tschannen et al. 2023): as wide as the encoder, no
  dropout, no label smoothing; heads of width 64, FFN 4× the width, 6 layers.

Token ids come from :class:`encoders.text.TextTokenizer`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import padding_mask

VERSION = "1"

PRESETS: dict[str, dict[str, Any]] = {
    "auden": {"layers": 6, "dim": 768, "heads": 8, "ffn_dim": 3072, "dropout": 0.1, "label_smoothing": 0.1},
    "cappa": {"layers": 6, "dim": None, "heads": None, "ffn_dim": None, "dropout": 0.0, "label_smoothing": 0.0},
}


def decoder_settings(preset: str, encoder_dim: int, **given: Any) -> dict[str, Any]:
    """``layers``, ``dim``, ``heads``, ``ffn_dim``, ``dropout`` and ``label_smoothing`` of
    ``preset``, each overridden by a value in ``given`` that is not None. The ``cappa``
    sizes follow the encoder: width ``encoder_dim``, heads of width 64 (the most heads of
    at least that width that divide it), FFN 4× the width."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    out = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    unknown = set(out) - set(PRESETS[preset])
    if unknown:
        raise TypeError(f"unknown decoder settings: {', '.join(sorted(unknown))}")
    out["dim"] = out["dim"] or encoder_dim
    out["heads"] = out["heads"] or max(h for h in range(1, max(1, out["dim"] // 64) + 1) if out["dim"] % h == 0)
    out["ffn_dim"] = out["ffn_dim"] or 4 * out["dim"]
    return out


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"decoder width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """``mask`` [B, 1 or Lq, Lk] bool: True where a query may attend to a key."""
        b, lq, d = x.shape
        h = self.num_heads
        q = self.q(x).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, memory_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, num_heads, dropout=dropout)
        self.cross_attn = _Attention(dim, num_heads, kv_dim=memory_dim, dropout=dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, self_mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, self_mask))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, memory_mask))
        return x + self.drop(self.ffn(self.norm3(x)))


class TextDecoder(nn.Module):
    """Token ids [B, L] + encoder frames [B, T, D_enc] -> logits [B, L, V]."""

    def __init__(self, encoder_dim: int, num_embeddings: int, layers: int = 6, dim: int = 768, heads: int = 8,
                 ffn_dim: int = 3072, dropout: float = 0.1, max_len: int = 128):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(num_embeddings, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, ffn_dim, encoder_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, num_embeddings)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, inputs: Tensor, input_lengths: Tensor, causal: Tensor, memory: Tensor,
                memory_lengths: Tensor) -> Tensor:
        """``causal`` [B] bool picks, per sample, a causal (AR) or bidirectional (parallel)
        self-attention mask; padding positions are masked either way."""
        b, length = inputs.shape
        if length > self.max_len:
            raise ValueError(f"decoder input of {length} tokens is longer than max_len {self.max_len}")
        pos = torch.arange(length, device=inputs.device)
        x = self.embed(inputs) + self.positions(pos)[None]
        valid = padding_mask(input_lengths, length)  # [B, L] keys
        lower = pos[None, :] <= pos[:, None]  # [L, L]: key j <= query i
        self_mask = valid[:, None, :] & (lower[None] | ~causal[:, None, None])
        self_mask |= torch.eye(length, dtype=torch.bool, device=inputs.device)[None]  # no empty rows
        memory_mask = padding_mask(memory_lengths.clamp(min=1), memory.shape[1])[:, None, :]
        for block in self.blocks:
            x = block(x, self_mask, memory, memory_mask)
        return self.out(self.norm(x))
