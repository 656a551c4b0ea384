"""Conformer encoder: conv2d subsampling, sinusoidal positions, torchaudio Conformer blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.models import Conformer

from encoders.base import Encoder, padding_mask, size_config
from encoders.features import FRAME_RATE
from encoders.transformer import ConvSubsampling, sinusoidal_positions
from harness.registry import Component
from harness.schema import Bool, Num

COMPONENT = Component(
    kind="encoder",
    target="ConformerEncoder",
    version="1",
    doc="torchaudio Conformer blocks over 80-bin fbank, x4 conv2d subsampling (25 frames/s)",
    meta={"sizes": "SIZES"},  # the preset names: the keys of this module's SIZES
    extends="transformer",  # its size options; these add to them
    options={
        "depthwise_conv_kernel_size": Num(integer=True, min=1, doc="depthwise convolution kernel (odd)"),
        "convolution_first": Bool(False, doc="convolution module before self-attention"),
    },
)

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 144, "num_layers": 4, "num_heads": 4, "ffn_dim": 576, "conv_channels": 32,
             "depthwise_conv_kernel_size": 31},
    "small": {"dim": 256, "num_layers": 8, "num_heads": 4, "ffn_dim": 1024, "conv_channels": 64,
              "depthwise_conv_kernel_size": 31},
    "base": {"dim": 512, "num_layers": 12, "num_heads": 8, "ffn_dim": 2048, "conv_channels": 128,
             "depthwise_conv_kernel_size": 31},
}
"""Presets; any key can be overridden by a keyword of the same name, as can ``dropout`` and
``convolution_first``."""


class ConformerEncoder(Encoder):
    """Conformer over 80-bin fbank: x4 conv2d subsampling (25 frames/s), torchaudio Conformer blocks.

    Args:
        size: preset name in :data:`SIZES` (tiny, small, base).
        input_dim: feature bins F.
        subsample: time reduction, a power of two (4 gives 25 frames/s from 100).
        **overrides: ``dim``, ``num_layers``, ``num_heads``, ``ffn_dim``, ``conv_channels``,
            ``depthwise_conv_kernel_size`` (odd), ``dropout`` (default 0.1),
            ``convolution_first`` (default False), replacing the preset's values.

    The front end is the transformer's :class:`~encoders.transformer.ConvSubsampling`
    (which projects straight to ``dim``) plus sinusoidal absolute positions; the blocks are
    ``torchaudio.models.Conformer``'s ``conformer_layers`` (macaron FFN, MHSA, depthwise conv
    module, FFN, LayerNorm), held in ``self.conformer`` so the weights load into a plain
    torchaudio Conformer.

    The blocks are run by :meth:`_block` rather than by torchaudio's ``forward``, for two
    reasons: ``layer=i`` stops after block i, and padding must not reach the valid frames.
    torchaudio masks padded keys in attention but not the depthwise convolution (whose kernel
    reads up to ``kernel // 2`` padded frames past a clip's end) nor the BatchNorm statistics
    in training. Here padded frames are zeroed before the depthwise convolution, and in
    training BatchNorm normalises over the valid frames only. On a batch without padding the
    result equals torchaudio's ``Conformer.forward``. Each block ends in its own LayerNorm, so
    ``layer=-1`` equals ``layer=num_layers - 1``. Output frames past each clip's length are zero.
    """

    def __init__(self, size: str = "tiny", input_dim: int = 80, subsample: int = 4, **overrides: int | float | bool):
        super().__init__()
        cfg = size_config(SIZES, size, {"dropout": 0.1, "convolution_first": False}, overrides)
        self.dim = int(cfg["dim"])
        self.num_layers = int(cfg["num_layers"])
        self.frame_rate = FRAME_RATE / subsample
        num_heads, kernel = int(cfg["num_heads"]), int(cfg["depthwise_conv_kernel_size"])
        if self.dim % num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {num_heads}")
        if kernel % 2 == 0:
            raise ValueError(f"depthwise_conv_kernel_size must be odd, got {kernel}")
        self.subsampling = ConvSubsampling(input_dim, self.dim, int(cfg["conv_channels"]), subsample)
        self.drop = nn.Dropout(float(cfg["dropout"]))
        self.conformer = Conformer(
            input_dim=self.dim,
            num_heads=num_heads,
            ffn_dim=int(cfg["ffn_dim"]),
            num_layers=self.num_layers,
            depthwise_conv_kernel_size=kernel,
            dropout=float(cfg["dropout"]),
            use_group_norm=False,  # GroupNorm(1) pools over time, padding included
            convolution_first=bool(cfg["convolution_first"]),
        )

    def front_end(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Subsampled, position-encoded frames [B, T', D] and their lengths: the blocks' input."""
        x, lengths = self.subsampling(feats, lengths)
        return self.drop(x + sinusoidal_positions(x.shape[1], self.dim, x.device).to(x.dtype)), lengths

    def forward(self, feats: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
        if not (layer == -1 or 0 <= layer < self.num_layers):
            raise ValueError(f"layer must be -1 or in [0, {self.num_layers}), got {layer}")
        x, lengths = self.front_end(feats, lengths)
        valid = padding_mask(lengths, x.shape[1])
        # torchaudio's key_padding_mask is True at padded keys. A clip with no valid frame
        # attends to every key instead, which keeps its (zeroed) rows finite.
        key_padding_mask = ~(valid | (lengths == 0)[:, None])
        last = self.num_layers - 1 if layer == -1 else layer
        x = x.transpose(0, 1)  # the blocks work on (T, B, D), as in Conformer.forward
        for block in self.conformer.conformer_layers[: last + 1]:
            x = self._block(block, x, key_padding_mask, valid)
        x = x.transpose(0, 1)
        return x * valid[..., None].to(x.dtype), lengths

    def _block(self, block: nn.Module, x: Tensor, key_padding_mask: Tensor, valid: Tensor) -> Tensor:
        """``torchaudio.models.conformer.ConformerLayer.forward`` with a padding-aware conv module."""
        residual = x
        x = block.ffn1(x) * 0.5 + residual
        if block.convolution_first:
            x = x + self._conv(block.conv_module, x, valid)
        residual = x
        x = block.self_attn_layer_norm(x)
        x, _ = block.self_attn(query=x, key=x, value=x, key_padding_mask=key_padding_mask, need_weights=False)
        x = block.self_attn_dropout(x) + residual
        if not block.convolution_first:
            x = x + self._conv(block.conv_module, x, valid)
        residual = x
        x = block.ffn2(x) * 0.5 + residual
        return block.final_layer_norm(x)

    @staticmethod
    def _conv(module: nn.Module, x: Tensor, valid: Tensor) -> Tensor:
        """torchaudio's ``_ConvolutionModule`` on (T, B, D) input, blind to the padded frames.

        ``module.sequential`` is pointwise conv, GLU, depthwise conv, BatchNorm1d, SiLU,
        pointwise conv, dropout.
        """
        pointwise1, glu, depthwise, norm, act, pointwise2, drop = module.sequential
        y = module.layer_norm(x).permute(1, 2, 0)  # [B, D, T]
        y = glu(pointwise1(y)) * valid[:, None, :].to(y.dtype)
        y = depthwise(y)
        if norm.training and int(valid.sum()) > 1:
            # Batch statistics over the valid frames only; BatchNorm1d takes [N, C].
            out = torch.zeros_like(y)
            out.transpose(1, 2)[valid] = norm(y.transpose(1, 2)[valid])
            y = out
        elif norm.training:  # too few frames for batch statistics: use the running ones
            y = F.batch_norm(y, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        else:
            y = norm(y)
        y = drop(pointwise2(act(y)))
        return y.permute(2, 0, 1)
