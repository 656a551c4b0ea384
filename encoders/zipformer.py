"""Zipformer encoder: an optional adapter over the ``zipformer`` package (or an icefall recipe).

The ``zipformer`` PyPI package pins ``torch<2.8``, so it is not a dependency of this project
and is imported only when a :class:`ZipformerEncoder` is built; without it, building raises a
RuntimeError that says how to get it. This module imports nothing beyond torch.

UNTESTED against a real install here: the adapter follows the sources of ``zipformer`` 0.1.3
(``zipformer.modules.zipformer.Zipformer``, ``zipformer.modules.subsampling.Conv2dSubsampling``)
and of icefall's ``egs/librispeech/ASR/zipformer`` recipe (``Zipformer2``), which share one API.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from encoders.base import Encoder, padding_mask
from harness.registry import Component
from harness.schema import Any_, Bool, List, Num

COMPONENT = Component(
    kind="encoder",
    target="ZipformerEncoder",
    version="1",
    doc="Zipformer (Yao et al., 2023) from the zipformer package, the UTS paper's encoder",
    meta={"sizes": "SIZES"},  # the preset names: the keys of this module's SIZES
    options={
        "downsampling_factor": List(Num(integer=True, min=1), doc="per-stack downsampling"),
        "num_encoder_layers": Any_(doc="layers per stack (an integer or one per stack)"),
        "encoder_dim": Any_(doc="width per stack (an integer or one per stack)"),
        "encoder_unmasked_dim": Any_(doc="unmasked width per stack (an integer or one per stack)"),
        "feedforward_dim": Any_(doc="feed-forward width per stack (an integer or one per stack)"),
        "num_heads": Any_(doc="attention heads per stack (an integer or one per stack)"),
        "cnn_module_kernel": Any_(doc="convolution kernel per stack (an integer or one per stack)"),
        "dropout": Num(None, min=0.0, max=1.0, doc="a fixed dropout (default: the package's schedule)"),
        "causal": Bool(False, doc="causal (streaming) attention and convolution"),
    },
)

FEATURE_RATE = 100.0
"""Input frames per second: ``encoders.features.FRAME_RATE``, not imported (that module loads torchaudio)."""

INSTALL_HINT = (
    "the zipformer encoder needs the optional 'zipformer' package, which pins torch<2.8 and so "
    "needs its own environment: pip install zipformer 'torch<2.8' 'torchaudio<2.8' "
    "(or put icefall's egs/librispeech/ASR/zipformer on PYTHONPATH); "
    "the 'transformer' and 'conformer' encoders work without it"
)

_SIX = (1, 2, 4, 8, 4, 2)  # per-stack downsampling on top of the 50 frames/s front end
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"downsampling_factor": _SIX, "num_encoder_layers": (1, 1, 1, 1, 1, 1),
             "encoder_dim": (128, 192, 192, 192, 192, 192), "encoder_unmasked_dim": (128,) * 6,
             "feedforward_dim": (384, 576, 576, 576, 576, 576), "num_heads": (4,) * 6,
             "cnn_module_kernel": (31, 31, 15, 15, 15, 31)},
    # icefall's "small" and default ("medium") LibriSpeech configurations.
    "small": {"downsampling_factor": _SIX, "num_encoder_layers": (2, 2, 2, 2, 2, 2),
              "encoder_dim": (192, 256, 256, 256, 256, 256), "encoder_unmasked_dim": (192,) * 6,
              "feedforward_dim": (512, 768, 768, 768, 768, 768), "num_heads": (4, 4, 4, 8, 4, 4),
              "cnn_module_kernel": (31, 31, 15, 15, 15, 31)},
    "base": {"downsampling_factor": _SIX, "num_encoder_layers": (2, 2, 3, 4, 3, 2),
             "encoder_dim": (192, 256, 384, 512, 384, 256),
             "encoder_unmasked_dim": (192, 192, 256, 256, 256, 192),
             "feedforward_dim": (512, 768, 1024, 1536, 1024, 768), "num_heads": (4, 4, 4, 8, 4, 4),
             "cnn_module_kernel": (31, 31, 15, 15, 15, 31)},
}
"""Presets of ``Zipformer`` keywords; any key can be overridden, as can ``dropout`` and
``causal``. ``num_layers`` of the encoder is the number of stacks (6)."""

EDGE = 3
"""Zero frames added before and after every clip: the front end's conv stack trims 7 frames,
so with 6 added a clip of L frames gives ``((L - 1) // 2 + 1) // 2`` (about L / 4) frames."""


def _load_backend() -> tuple[type, type]:
    """The (Zipformer, Conv2dSubsampling) classes of whichever implementation is importable."""
    try:  # the PyPI package
        from zipformer.modules.subsampling import Conv2dSubsampling
        from zipformer.modules.zipformer import Zipformer
        return Zipformer, Conv2dSubsampling
    except ImportError as package_error:
        try:  # an icefall recipe directory on sys.path: zipformer.py and subsampling.py
            from subsampling import Conv2dSubsampling  # type: ignore[import-not-found]
            from zipformer import Zipformer2  # type: ignore[import-not-found]
            return Zipformer2, Conv2dSubsampling
        except ImportError:
            raise RuntimeError(f"{INSTALL_HINT} (import failed: {package_error})") from package_error


def _to_dim(x: Tensor, dim: int) -> Tensor:
    """Zero-pad or truncate the channels (last axis) to ``dim``, as zipformer does between stacks."""
    return x[..., :dim] if x.shape[-1] >= dim else F.pad(x, (0, dim - x.shape[-1]))


class ZipformerEncoder(Encoder):
    """Zipformer (Yao et al., 2023) behind the Encoder contract. Needs the ``zipformer`` package.

    Args:
        size: preset name in :data:`SIZES` (tiny, small, base).
        input_dim: feature bins F (at least 7).
        **overrides: any ``Zipformer`` keyword of the presets, ``dropout`` (a float; default:
            the package's schedule) and ``causal``.

    The front end is zipformer's own ``Conv2dSubsampling`` (50 frames/s); the stacks run at
    50 / ``downsampling_factor`` frames/s and the output is downsampled once more, to 25
    frames/s. ``dim`` is ``max(encoder_dim)``. ``layer=i`` returns the output of stack i,
    zero-padded to ``dim`` channels and put through the final 2x downsampling (the full output
    also takes channels from earlier, wider stacks; with the presets the widest stack is not the
    last). Zipformer's Balancer/Whiten modules and dropout schedules read a ``batch_count`` that
    icefall's training loop sets; this harness does not.

    Not padding-invariant at clip ends: the front end's ConvNeXt and the stacks' downsampling
    read frames past a clip's end (which are padding inside a batch), so the last few valid
    frames of a clip can differ between a padded batch and the clip alone.
    """

    def __init__(self, size: str = "tiny", input_dim: int = 80, **overrides: Any):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
        cfg: dict[str, Any] = {**SIZES[size], "dropout": None, "causal": False}
        unknown = set(overrides) - set(cfg)
        if unknown:
            raise ValueError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(cfg)}")
        cfg.update(overrides)
        if cfg["dropout"] is None:
            del cfg["dropout"]  # the package's default ScheduledFloat
        Zipformer, Conv2dSubsampling = _load_backend()
        stacks = len(cfg["downsampling_factor"])
        cfg = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()}
        for key in ("num_encoder_layers", "encoder_dim", "encoder_unmasked_dim", "feedforward_dim",
                    "num_heads", "cnn_module_kernel"):
            if isinstance(cfg[key], int):
                cfg[key] = (cfg[key],) * stacks
        self.encoder_dims = tuple(int(d) for d in cfg["encoder_dim"])
        self.dim = max(self.encoder_dims)
        self.num_layers = stacks
        self.frame_rate = FEATURE_RATE / 4
        self.encoder_embed = Conv2dSubsampling(in_channels=input_dim, out_channels=self.encoder_dims[0])
        self.encoder = Zipformer(output_downsampling_factor=2, **cfg)

    def forward(self, feats: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
        if not (layer == -1 or 0 <= layer < self.num_layers):
            raise ValueError(f"layer must be -1 or in [0, {self.num_layers}), got {layer}")
        # Every clip gets EDGE zero frames on each side (its trailing ones are the batch's
        # zero padding, or the added frames for the longest clip).
        feats = F.pad(feats * padding_mask(lengths, feats.shape[1])[..., None].to(feats.dtype), (0, 0, EDGE, EDGE))
        x, x_lens = self.encoder_embed(feats, lengths + 2 * EDGE)
        key_padding_mask = ~padding_mask(x_lens, x.shape[1])  # True at padded frames
        x = x.permute(1, 0, 2)  # (T, B, C), as zipformer expects
        if layer == -1:
            x, out_lens = self.encoder(x, x_lens, key_padding_mask)
        else:
            x, out_lens = self._stack_output(x, x_lens, key_padding_mask, layer)
        x = x.permute(1, 0, 2)
        out_lens = out_lens.clamp(min=0)
        return x * padding_mask(out_lens, x.shape[1])[..., None].to(x.dtype), out_lens

    def _stack_output(self, x: Tensor, x_lens: Tensor, key_padding_mask: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        """``Zipformer.forward`` up to stack ``layer``, then its output downsampling."""
        enc = self.encoder
        feature_masks = enc.get_feature_masks(x)
        chunk_size, left_context_chunks = enc.get_chunk_info()
        attn_mask = enc._get_attn_mask(x, chunk_size, left_context_chunks)
        for i, module in enumerate(enc.encoders[: layer + 1]):
            ds = enc.downsampling_factor[i]
            x = module(
                _to_dim(x, self.encoder_dims[i]),
                chunk_size=chunk_size,
                feature_mask=feature_masks[i],
                src_key_padding_mask=key_padding_mask[..., ::ds],
                attn_mask=attn_mask,
            )
        return enc.downsample_output(_to_dim(x, self.dim)), (x_lens + 1) // 2
