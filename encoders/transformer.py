"""Transformer encoder: conv2d subsampling, sinusoidal positions, pre-LN blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import Encoder, padding_mask, size_config
from encoders.features import FRAME_RATE
from harness.registry import Component
from harness.schema import Num

COMPONENT = Component(
    kind="encoder",
    target="TransformerEncoder",
    version="1",
    doc="pre-LN Transformer over 80-bin fbank, x4 conv2d subsampling (25 frames/s)",
    meta={"sizes": "SIZES"},  # the preset names: the keys of this module's SIZES
    options={
        "dim": Num(integer=True, min=1, doc="model width"),
        "num_layers": Num(integer=True, min=1, doc="blocks"),
        "num_heads": Num(integer=True, min=1, doc="attention heads (must divide dim)"),
        "ffn_dim": Num(integer=True, min=1, doc="feed-forward width"),
        "conv_channels": Num(integer=True, min=1, doc="channels of the conv2d subsampling front end"),
        "dropout": Num(0.1, min=0.0, max=1.0, doc="dropout"),
    },
)

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 128, "num_layers": 4, "num_heads": 4, "ffn_dim": 512, "conv_channels": 32},
    "small": {"dim": 256, "num_layers": 6, "num_heads": 4, "ffn_dim": 1024, "conv_channels": 64},
    "base": {"dim": 768, "num_layers": 12, "num_heads": 12, "ffn_dim": 3072, "conv_channels": 128},
}
"""Presets; any key can be overridden by a keyword of the same name, as can ``dropout``."""


class ConvSubsampling(nn.Module):
    """Stride-2 3x3 conv2d + ReLU layers over (time, freq), then a linear projection and LayerNorm.

    Each layer halves time (rounding up), so ``subsample = 2 ** layers`` and a clip of L
    frames gives ``ceil(L / subsample)`` frames. Frames past each clip's length are zeroed
    before every conv, so the valid outputs equal those of the clip encoded alone.
    """

    def __init__(self, input_dim: int, dim: int, channels: int, subsample: int):
        super().__init__()
        layers = int(math.log2(subsample))
        if subsample < 2 or 2**layers != subsample:
            raise ValueError(f"subsample must be a power of two >= 2, got {subsample}")
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1) for i in range(layers)
        )
        freq = input_dim
        for _ in range(layers):
            freq = (freq + 1) // 2
        self.proj = nn.Linear(channels * freq, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for conv in self.convs:
            x = x * padding_mask(lengths, x.shape[2])[:, None, :, None]
            x = F.relu(conv(x))
            lengths = (lengths + 1) // 2
        b, c, t, f = x.shape
        return self.norm(self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))), lengths


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """[length, dim] sine/cosine position table of "Attention Is All You Need", any length."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freqs)
    table[:, 1::2] = torch.cos(pos * freqs[: dim // 2])
    return table


class Block(nn.Module):
    """Pre-LN transformer block: x + MHSA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """x [B, T, D]; attn_mask [B, 1, 1, T] boolean, True where a key may be attended."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerEncoder(Encoder):
    """Transformer over 80-bin fbank: x4 conv2d subsampling (25 frames/s), pre-LN blocks.

    Args:
        size: preset name in :data:`SIZES` (tiny, small, base).
        input_dim: feature bins F.
        subsample: time reduction, a power of two (4 gives 25 frames/s from 100).
        **overrides: ``dim``, ``num_layers``, ``num_heads``, ``ffn_dim``, ``conv_channels``,
            ``dropout`` (default 0.1), replacing the preset's values.

    Positions are sinusoidal and computed for the batch's length, so any input length works.
    Attention ignores padded keys. Output frames past each clip's length are zero.
    """

    def __init__(self, size: str = "tiny", input_dim: int = 80, subsample: int = 4, **overrides: int | float):
        super().__init__()
        cfg = size_config(SIZES, size, {"dropout": 0.1}, overrides)
        self.dim = int(cfg["dim"])
        self.num_layers = int(cfg["num_layers"])
        self.frame_rate = FRAME_RATE / subsample
        self.subsampling = ConvSubsampling(input_dim, self.dim, int(cfg["conv_channels"]), subsample)
        self.drop = nn.Dropout(cfg["dropout"])
        self.blocks = nn.ModuleList(
            Block(self.dim, int(cfg["num_heads"]), int(cfg["ffn_dim"]), float(cfg["dropout"]))
            for _ in range(self.num_layers)
        )
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, feats: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
        if not (layer == -1 or 0 <= layer < self.num_layers):
            raise ValueError(f"layer must be -1 or in [0, {self.num_layers}), got {layer}")
        x, lengths = self.subsampling(feats, lengths)
        x = self.drop(x + sinusoidal_positions(x.shape[1], self.dim, x.device).to(x.dtype))
        valid = padding_mask(lengths, x.shape[1])
        # A clip with no valid frame attends to every key, which keeps its (zeroed) rows finite.
        attn_mask = (valid | (lengths == 0)[:, None])[:, None, None, :]
        last = self.num_layers - 1 if layer == -1 else layer
        for block in self.blocks[: last + 1]:
            x = block(x, attn_mask)
        if layer == -1:
            x = self.norm(x)
        return x * valid[..., None].to(x.dtype), lengths
