"""CNN14 (PANNs, Kong et al. 2020), as BLAT's audio encoder (wsntxxn/BLAT, ``models/audio_encoder.py``).

Input: PANNs' 64-bin log-mel at 32 kHz (10 ms hop, :func:`encoders.features.panns_logmel`),
which the encoder declares as its front end (``meta.features``), so the planner computes
those features for it while every other encoder keeps the 80-bin fbank.

As the authors': BatchNorm over the mel bins (``bn0``), then six conv blocks (two 3x3
convs without bias, each BatchNorm + ReLU) of 64, 128, 256, 512, 1024 and 2048 channels,
2x2 average pooling after the first five and none after the sixth, dropout 0.2 after
each block, and the mean over the frequency axis: frames of 2048 channels at 100 / 32 =
3.125 frames per second (``feat_length // 32`` valid frames of a clip of ``feat_length``).
Xavier-uniform init of the convs, BatchNorm at (1, 0).

BLAT's clip embedding (max + mean over valid frames, dropout, ``fc1`` 2048 -> 2048 + ReLU)
is not part of the encoder here: the frames are its output, and the objective pools
them (docs/blat.md records the difference). ``width`` scales the channels (64 is
CNN14's); the presets are CPU-sized below ``base``.

Padding: positions past each clip's length are zeroed before every convolution, so in
eval mode a clip's valid frames do not depend on the batch's padding. In training the
BatchNorm statistics include the padding, as in the authors' batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import Encoder, padding_mask, size_config
from harness.registry import Component
from harness.schema import Num

COMPONENT = Component(
    kind="encoder",
    target="Cnn14",
    version="1",
    doc="PANNs CNN14 over 64-bin log-mel at 32 kHz (BLAT's audio encoder), 2048 channels at 3.125 frames/s",
    meta={"sizes": "SIZES", "features": "panns-logmel"},  # the front end: harness/components.py FRONT_ENDS
    options={
        "width": Num(integer=True, min=1, doc="channels of the first block (64: CNN14); the blocks have 1, 2, 4, "
                                              "8, 16, 32 times it"),
        "dropout": Num(0.2, min=0.0, max=1.0, doc="dropout after each conv block (the authors': 0.2)"),
    },
)

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"width": 4},
    "small": {"width": 16},
    "base": {"width": 64},  # CNN14 itself: 2048-channel frames, 75.5M parameters (fc1 and the AudioSet head left out)
}
"""Presets; ``width`` and ``dropout`` can be overridden."""

MULTIPLIERS = (1, 2, 4, 8, 16, 32)
FRAME_RATE_IN = 100.0  # input frames per second (10 ms hop)
DOWNSAMPLE = 32  # five 2x2 average poolings: a clip of T frames gives T // 32


class ConvBlock(nn.Module):
    """Two 3x3 convs (no bias), each followed by BatchNorm and ReLU (PANNs' ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x [B, C, T, F]; valid [B, 1, T, 1] zeroes the padding before each conv."""
        x = F.relu(self.bn1(self.conv1(x * valid)))
        return F.relu(self.bn2(self.conv2(x * valid)))


class Cnn14(Encoder):
    """CNN14 over log-mel [B, T, 64]: frames [B, T // 32, 32 * width].

    Args:
        size: preset name in :data:`SIZES` (tiny, small, base = CNN14).
        input_dim: mel bins F (64 as PANNs).
        **overrides: ``width``, ``dropout``.

    The blocks differ in width, so one layer is offered: ``layer`` 0 and -1 are both the
    last block's output (the encoder's frames).
    """

    def __init__(self, size: str = "tiny", input_dim: int = 64, **overrides: int | float):
        super().__init__()
        cfg = size_config(SIZES, size, {"dropout": 0.2}, overrides)
        width = int(cfg["width"])
        channels = [width * m for m in MULTIPLIERS]
        self.dropout = float(cfg["dropout"])
        self.bn0 = nn.BatchNorm2d(input_dim)
        self.blocks = nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in zip([1] + channels[:-1], channels))
        self.dim = channels[-1]
        self.num_layers = 1  # the blocks differ in width: only the last one's output is a layer
        self.frame_rate = FRAME_RATE_IN / DOWNSAMPLE
        self.apply(_init)

    def forward(self, feats: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
        if layer not in (-1, 0):
            raise ValueError(f"layer must be -1 or 0 (CNN14 offers its last block only), got {layer}")
        x = self.bn0(feats.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # BatchNorm per mel bin
        x = x.unsqueeze(1)  # [B, 1, T, F]
        for i, block in enumerate(self.blocks):
            x = block(x, padding_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype))
            if i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
                lengths = torch.div(lengths, 2, rounding_mode="floor")
            x = F.dropout(x, p=self.dropout, training=self.training)
        frames = x.mean(dim=3).transpose(1, 2)  # [B, T // 32, C]
        return frames * padding_mask(lengths, frames.shape[1])[..., None].to(frames.dtype), lengths


def _init(module: nn.Module) -> None:
    """PANNs' init: Xavier-uniform convs and linears with zero bias, BatchNorm at (1, 0)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
