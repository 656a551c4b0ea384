"""Zipformer encoder: the UTS authors' encoder, built from the ``zipformer`` package's model code.

The ``zipformer`` package (0.1.3) declares ``torch<2.8`` and a tool chain this encoder never
uses (tensorboard, onnx, modelscope, kaldialign, ...), and its top-level ``__init__`` imports
that tool chain. Its model code runs under this project's torch. So the README's install line
installs it ``--no-deps``, and :func:`zipformer_package` loads only its model modules
(``zipformer.modules.{scaling,zipformer,subsampling,optim}``) without running the package's
``__init__``: see there. This module itself imports nothing beyond torch; the package is
loaded when a :class:`ZipformerEncoder` is built.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from encoders.base import Encoder, padding_mask, size_config
from harness.registry import Component
from harness.schema import Any_, Bool, List, Num

COMPONENT = Component(
    kind="encoder",
    target="ZipformerEncoder",
    version="2",
    doc="Zipformer (Yao et al., 2023) from the zipformer package, the UTS paper's encoder (size m)",
    meta={"sizes": "SIZES"},  # the preset names: the keys of this module's SIZES
    options={
        "downsampling_factor": List(Num(integer=True, min=1), doc="per-stack downsampling"),
        "num_encoder_layers": Any_(doc="layers per stack (an integer or one per stack)"),
        "encoder_dim": Any_(doc="width per stack (an integer or one per stack)"),
        "encoder_unmasked_dim": Any_(doc="unmasked width per stack (an integer or one per stack)"),
        "feedforward_dim": Any_(doc="feed-forward width per stack (an integer or one per stack)"),
        "num_heads": Any_(doc="attention heads per stack (an integer or one per stack)"),
        "query_head_dim": Any_(doc="query/key width per head (an integer or one per stack)"),
        "value_head_dim": Any_(doc="value width per head (an integer or one per stack)"),
        "pos_head_dim": Any_(doc="positional-encoding width per head (an integer or one per stack)"),
        "pos_dim": Num(integer=True, min=1, doc="width of the relative positional encoding"),
        "cnn_module_kernel": Any_(doc="convolution kernel per stack (an integer or one per stack)"),
        "warmup_batches": Num(min=0.0, doc="batches over which the stacks' layer bypass warms up"),
        "dropout": Num(None, min=0.0, max=1.0, doc="a fixed dropout (default: the authors' schedule, "
                                                   "0.3 -> 0.1 over 20k batches)"),
        "causal": Bool(False, doc="causal (streaming) attention and convolution"),
    },
)

FEATURE_RATE = 100.0
"""Input frames per second: ``encoders.features.FRAME_RATE``, not imported (that module loads torchaudio)."""

PACKAGE = "zipformer==0.1.3"
"""The release this adapter is written and tested against (installed ``--no-deps``)."""

INSTALL_HINT = (
    f"the zipformer encoder needs the 'zipformer' package's model code: pip install --no-deps {PACKAGE} "
    "(the README's install line does this; --no-deps keeps its torch<2.8 pin and unused tool chain out, "
    "and this project's torch runs its model code)"
)

_SIX = (1, 2, 4, 8, 4, 2)  # per-stack downsampling on top of the 50 frames/s front end
_HEADS = {"query_head_dim": 32, "value_head_dim": 12, "pos_head_dim": 4, "pos_dim": 48,
          "warmup_batches": 4000.0}
"""Head widths and warm-up of every preset: the authors' (and icefall's) values."""
_M = {"downsampling_factor": _SIX, "num_encoder_layers": (2, 2, 3, 4, 3, 2),
      "encoder_dim": (192, 256, 384, 512, 384, 256),
      "encoder_unmasked_dim": (192, 192, 256, 256, 256, 192),
      "feedforward_dim": (576, 768, 1152, 1536, 1152, 768), "num_heads": (4, 4, 4, 8, 4, 4),
      "cnn_module_kernel": (31, 31, 15, 15, 15, 31), **_HEADS}
"""The UTS authors' Zipformer-M: ``ZipformerConfig()``'s defaults in AudenAI/Auden
(``src/auden/models/zipformer/model_config.py``, which names it ``zipformer_base_config``);
65,913,719 parameters with the 80 -> 192 front end."""
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"downsampling_factor": _SIX, "num_encoder_layers": (1, 1, 1, 1, 1, 1),
             "encoder_dim": (128, 192, 192, 192, 192, 192), "encoder_unmasked_dim": (128,) * 6,
             "feedforward_dim": (384, 576, 576, 576, 576, 576), "num_heads": (4,) * 6,
             "cnn_module_kernel": (31, 31, 15, 15, 15, 31), **_HEADS},
    # icefall's "small" LibriSpeech configuration.
    "small": {"downsampling_factor": _SIX, "num_encoder_layers": (2, 2, 2, 2, 2, 2),
              "encoder_dim": (192, 256, 256, 256, 256, 256), "encoder_unmasked_dim": (192,) * 6,
              "feedforward_dim": (512, 768, 768, 768, 768, 768), "num_heads": (4, 4, 4, 8, 4, 4),
              "cnn_module_kernel": (31, 31, 15, 15, 15, 31), **_HEADS},
    "base": _M,  # the same as m: the authors call their M "base"
    "m": _M,  # the paper's
}
"""Presets of ``Zipformer`` keywords; any key can be overridden, as can ``dropout`` and
``causal``. ``m`` (alias ``base``) is the UTS paper's Zipformer-M. ``num_layers`` of the
encoder is the number of stacks (6)."""

EDGE = 3
"""Zero frames added before and after every clip: the front end's conv stack trims 7 frames,
so with 6 added a clip of L frames gives ``((L - 1) // 2 + 1) // 2`` (about L / 4) frames."""

BATCH_COUNT_EVERY = 10
BATCH_COUNT_MAX = 100_000
"""The authors' trainer adds 10 to the model's batch count every 10 batches, until 100,000."""


@contextlib.contextmanager
def _torch_autocast(device_type: str = "cuda", **kwargs: Any):
    """``zipformer.utils.torch_autocast`` for torch >= 2.3 (the branch this project's torch takes)."""
    with torch.amp.autocast(device_type=device_type, **kwargs):
        yield


def _fix_random_seed(seed: int) -> None:
    """``zipformer.utils.fix_random_seed`` (from ``atdataset``): used only by the package's self-tests."""
    import random

    random.seed(seed)
    torch.manual_seed(seed)


def zipformer_package() -> types.SimpleNamespace:
    """The ``zipformer`` package's model modules, loaded without its ``__init__``.

    Returns a namespace with ``scaling``, ``zipformer``, ``subsampling`` and ``optim`` (the
    modules) and ``Zipformer``, ``Conv2dSubsampling``, ``ScheduledFloat``, ``ScaledAdam`` and
    ``Eden``. Raises RuntimeError (one line, how to install) when the package is missing.

    How: ``zipformer/__init__.py`` imports ``zipformer.bin.inference`` (tensorboard, onnx, ...),
    and the model modules import ``torch_autocast`` and ``fix_random_seed`` from
    ``zipformer.utils``, whose ``__init__`` imports kaldialign, tensorboard and atdataset.
    So, unless the package is already imported, ``zipformer`` is registered as a bare package
    (its ``__init__`` not run) and ``zipformer.utils`` as a module holding just those two
    functions; then the four model modules are imported as usual. In that process
    ``import zipformer.bin...`` (the package's tool chain) does not work: this project never
    uses it.
    """
    if "zipformer" not in sys.modules:
        spec = importlib.util.find_spec("zipformer")  # finds the package without running it
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{INSTALL_HINT} (no module named 'zipformer')")
        package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
        sys.modules["zipformer"] = package
    if "zipformer.utils" not in sys.modules:
        utils = types.ModuleType("zipformer.utils", "The two names zipformer's model modules import "
                                                    "from zipformer.utils (encoders/zipformer.py).")
        utils.torch_autocast = _torch_autocast
        utils.fix_random_seed = _fix_random_seed
        sys.modules["zipformer.utils"] = utils
        sys.modules["zipformer"].utils = utils
    try:
        mods = {name: importlib.import_module(f"zipformer.modules.{name}")
                for name in ("scaling", "zipformer", "subsampling", "optim")}
    except ImportError as error:
        raise RuntimeError(f"{INSTALL_HINT} (import failed: {error})") from error
    return types.SimpleNamespace(
        **mods,
        Zipformer=mods["zipformer"].Zipformer,
        Conv2dSubsampling=mods["subsampling"].Conv2dSubsampling,
        ScheduledFloat=mods["scaling"].ScheduledFloat,
        ScaledAdam=mods["optim"].ScaledAdam,
        Eden=mods["optim"].Eden,
    )


class _CompiledOnCuda:
    """An activation that runs the package's ``torch.compile``-d function on CUDA tensors and
    the same function eagerly elsewhere (compiling it on a CPU takes about a minute per
    shape regime, for an elementwise function)."""

    def __init__(self, compiled: Any, eager: Any):
        self.compiled, self.eager = compiled, eager

    def __call__(self, x: Tensor) -> Any:
        return self.compiled(x) if x.is_cuda else self.eager(x)


def _compile_only_on_cuda(model: torch.nn.Module) -> None:
    """Wrap the Swoosh activations that the package compiled (:class:`_CompiledOnCuda`)."""
    for module in model.modules():
        for attr in ("func", "forward_func", "backward_func"):
            fn = module.__dict__.get(attr)
            eager = getattr(fn, "_torchdynamo_orig_callable", None)
            if eager is not None:
                setattr(module, attr, _CompiledOnCuda(fn, eager))


def _to_dim(x: Tensor, dim: int) -> Tensor:
    """Zero-pad or truncate the channels (last axis) to ``dim``, as zipformer does between stacks."""
    return x[..., :dim] if x.shape[-1] >= dim else F.pad(x, (0, dim - x.shape[-1]))


class ZipformerEncoder(Encoder):
    """Zipformer (Yao et al., 2023) behind the Encoder contract. Needs the ``zipformer`` package.

    Args:
        size: preset name in :data:`SIZES`: ``m`` (alias ``base``) is the UTS paper's
            Zipformer-M (65.9M parameters); ``tiny`` and ``small`` are smaller.
        input_dim: feature bins F (at least 7).
        **overrides: any ``Zipformer`` keyword of the presets, ``dropout`` (a float for the
            front end and every stack; default: the authors' schedule) and ``causal``.

    Built as the authors build it (AudenAI/Auden, ``ZipformerEncoderModel``): zipformer's
    ``Conv2dSubsampling`` front end (50 frames/s) with dropout scheduled from 0.3 to 0.1 over
    20k batches, then ``Zipformer`` with ``output_downsampling_factor=2``. The stacks run at
    50 / ``downsampling_factor`` frames/s and the output at 25 frames/s. ``dim`` is
    ``max(encoder_dim)``. ``layer=i`` returns the output of stack i, zero-padded to ``dim``
    channels and put through the final 2x downsampling (the full output also takes channels
    from earlier, wider stacks; with the presets the widest stack is not the last).

    Zipformer's dropout, layer skipping, bypass warm-up and Balancer/Whiten probabilities are
    scheduled on a batch count, which the trainer advances through :meth:`set_batch_count`;
    until it is called they hold their eval-time defaults (no dropout, no skipping). The
    package ``torch.compile``-s the Swoosh activations; here they run compiled on CUDA and
    eagerly on a CPU (the same function; compiling costs about a minute there).

    Not padding-invariant at clip ends: the front end's ConvNeXt and the stacks' downsampling
    read frames past a clip's end (which are padding inside a batch), so the last few valid
    frames of a clip can differ between a padded batch and the clip alone.
    """

    def __init__(self, size: str = "tiny", input_dim: int = 80, **overrides: Any):
        super().__init__()
        cfg = size_config(SIZES, size, {"dropout": None, "causal": False}, overrides)
        zp = zipformer_package()
        if cfg["dropout"] is None:
            del cfg["dropout"]  # Zipformer's own default: the schedule below
            embed_dropout: Any = zp.ScheduledFloat((0.0, 0.3), (20000.0, 0.1))
        else:
            embed_dropout = float(cfg["dropout"])
        stacks = len(cfg["downsampling_factor"])
        cfg = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()}
        for key in ("num_encoder_layers", "encoder_dim", "encoder_unmasked_dim", "feedforward_dim",
                    "num_heads", "query_head_dim", "value_head_dim", "pos_head_dim", "cnn_module_kernel"):
            if isinstance(cfg[key], int):
                cfg[key] = (cfg[key],) * stacks
        self.encoder_dims = tuple(int(d) for d in cfg["encoder_dim"])
        self.dim = max(self.encoder_dims)
        self.num_layers = stacks
        self.frame_rate = FEATURE_RATE / 4
        self.encoder_embed = zp.Conv2dSubsampling(
            in_channels=input_dim, out_channels=self.encoder_dims[0], dropout=embed_dropout)
        self.encoder = zp.Zipformer(output_downsampling_factor=2, **cfg)
        _compile_only_on_cuda(self)
        self._batch_count: float | None = None

    def set_batch_count(self, step: int) -> None:
        """Advance Zipformer's schedules to training step ``step`` (0 for the first batch).

        Call it before every step's forward. It sets the ``batch_count`` of every scheduled
        module to the value the authors' trainer gives it at that step: it adds 10 every 10
        batches, starting before the first, and stops at 100,000, so the count is
        ``min(10 * (step // 10 + 1), 100000)``. The count is not saved: on resume the next
        call restores it from the step.
        """
        count = float(min(BATCH_COUNT_EVERY * (int(step) // BATCH_COUNT_EVERY + 1), BATCH_COUNT_MAX))
        if count == self._batch_count:
            return
        for module in self.modules():
            if module is not self and hasattr(module, "batch_count"):
                module.batch_count = count
        self._batch_count = count

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
