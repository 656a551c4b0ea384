"""Released weights of one of the harness's own encoders, as an arm:
``{name: checkpoint, encoder: zipformer, size: m, path: /models/uts-mtc.pt}``.

The weights are read as the releases lay them out, then loaded strictly into the encoder
built from ``encoder``, ``size`` and ``options`` (as ``pretrain.encoder`` builds it), and
saved as a harness ``encoder.pt`` by the ``external`` stage: from there the arm is
embedded like any pre-trained run (80-bin fbank input, its embedding cache keyed by the
weights' content digest, so the same weights are never embedded twice).

``path`` is a weight file (``.pt``/``.pth``/``.ckpt`` from ``torch.save``, or
``.safetensors``) or an exported model folder (AudenAI/Auden's ``save_pretrained`` layout:
``config.json`` with ``pretrained.safetensors``, ``model.safetensors``, ``pretrained.pt`` or
``model.pt``, looked for in that order, as Auden's ``from_pretrained`` does). Inside it:

- the state dict itself, or under ``state_dict`` (a harness ``encoder.pt`` too), or an
  Auden / icefall trainer checkpoint's ``model_avg`` (preferred, as Auden's export does) or
  ``model``;
- a ``module.`` prefix (DDP) is dropped; for a whole model (Auden's MTC tagger keeps the
  encoder under ``encoder.``, the captioner and CLAP under ``audio_encoder.``, TTA under
  ``speech_encoder.``) the encoder's sub-dict is taken and the rest (classifier, decoder,
  text tower) left out;
- Auden's ``model_batch_count`` buffer (its ScheduledFloat clock) is dropped: the
  harness's Zipformer holds the eval-time values of the schedules.

Anything else that does not fit is one line naming the missing and unexpected keys (and
shape mismatches). ``layer`` is the encoder's (``-1`` or a block index; default: the
study's ``probes.layer``), checked against the built encoder by the ``external`` job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.registry import Component
from harness.schema import Any_, Map, Num, PathArg, Str

COMPONENT = Component(
    kind="external",
    target="load",
    version="1",
    doc="released weights of a harness encoder (e.g. the UTS authors' Zipformer-M)",
    meta={"input": "fbank", "layers": True},
    options={
        "encoder": Str(doc="the harness encoder the weights are for (encoders/: zipformer, transformer, ...)"),
        "size": Str(doc="its preset (zipformer: m is the UTS paper's Zipformer-M)"),
        "options": Map(Any_(), default={}, doc="overrides of the preset, as pretrain.encoder.options"),
        "path": PathArg(must="any", doc="the weight file, or an exported model folder (config.json + weights)"),
        "layer": Num(None, integer=True, min=-1, doc="block to read: -1 the output, i block i "
                                                     "(default: the study's probes.layer)"),
        "label": Str(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.+-]*", doc="the arm's name (default: the file's stem)"),
    },
)

FOLDER_WEIGHTS = ("pretrained.safetensors", "model.safetensors", "pretrained.pt", "model.pt")
"""Weight files of an exported folder, in the order AudenAI/Auden's ``from_pretrained`` looks for them."""
PARENTS = ("encoder.", "audio_encoder.", "speech_encoder.")
"""Where whole models keep their encoder (Auden: tagger and ASR, captioner and CLAP, TTA)."""
DROPPED = ("model_batch_count",)
"""Buffers of the released encoders that the harness's encoders hold elsewhere."""
SHOWN = 4  # keys named in a mismatch line


# ------------------------------------------------------------------ plan time (no torch)

def weight_file(path: str) -> Path | None:
    """The weight file of ``path``: the file itself, or the first of :data:`FOLDER_WEIGHTS` in a folder."""
    p = Path(path)
    if p.is_file():
        return p
    return next((p / name for name in FOLDER_WEIGHTS if (p / name).is_file()), None)


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    from harness.registry import registry
    from harness.schema import Context

    problems: list[tuple[str, str]] = []
    encoders = registry("encoder")
    problem = encoders.problem(options["encoder"])
    if problem:
        problems.append(("encoder", problem))
    else:
        entry = encoders.get(options["encoder"])
        sizes = entry.presets()
        if sizes and options["size"] not in sizes:
            problems.append(("size", f"expected one of {', '.join(sizes)} (the {entry.name!r} presets), "
                                     f"found {options['size']!r}"))
        ctx = Context(base_dir=Path("."))
        entry.check_options(options.get("options") or {}, "options", ctx)
        problems += [(p.path, p.message) for p in ctx.problems]
    if weight_file(options["path"]) is None:
        problems.append(("path", f"{options['path']} is a folder without weights: expected one of "
                                 f"{', '.join(FOLDER_WEIGHTS)} in it, or the path of the weight file"))
    return problems


def describe(options: dict[str, Any]) -> dict[str, str]:
    p = Path(options["path"])
    return {"label": p.stem if p.is_file() else p.name, "encoder": f"{options['encoder']}-{options['size']}"}


def content(options: dict[str, Any]) -> list[str]:
    return [options["path"]]


# ------------------------------------------------------------------ in the job

def read_state_dict(path: str | Path) -> tuple[dict, str]:
    """The tensors of a released weight file or folder, and where in the file they were found."""
    import torch

    file = weight_file(str(path))
    if file is None:
        raise FileNotFoundError(f"{path}: no weight file ({', '.join(FOLDER_WEIGHTS)})")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file), device="cpu"), file.name
    blob = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_avg", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            return blob[key], f"{file.name}[{key!r}]"
    if not isinstance(blob, dict):
        raise ValueError(f"{file}: expected a state dict (or a checkpoint holding one), found {type(blob).__name__}")
    return blob, file.name


def map_keys(state: dict, expected: set[str]) -> tuple[dict, list[str]]:
    """``state`` with its keys laid out as the harness encoder's (see the module docstring),
    and the steps taken."""
    steps: list[str] = []
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        steps.append("dropped the DDP prefix 'module.'")
    direct = len(set(state) & expected)
    scores = {p: sum(k[len(p):] in expected for k in state if k.startswith(p)) for p in PARENTS}
    best = max(scores, key=scores.get)
    if scores[best] > direct:  # a whole model: its encoder's part
        state = {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
        steps.append(f"took the encoder under {best!r}")
    dropped = [k for k in state if k.split(".")[-1] in DROPPED and k not in expected]
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        steps.append(f"dropped {', '.join(dropped)}")
    return state, steps


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def build(options: dict[str, Any]):
    """The harness encoder of ``options`` with the released weights loaded (strictly)."""
    import torch

    from encoders import build_encoder
    from encoders.external import with_defaults

    options = with_defaults(COMPONENT, options)
    config = {"size": options["size"], **(options.get("options") or {})}
    torch.manual_seed(0)
    encoder = build_encoder(options["encoder"], **config)
    expected = encoder.state_dict()
    state, where = read_state_dict(options["path"])
    state, steps = map_keys(state, set(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        what = f"{options['encoder']}-{options['size']}"
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} of another shape: {_names(shapes)}")
        read = f" (read {where}; {'; '.join(steps)})" if steps else f" (read {where})"
        raise ValueError(f"{options['path']}: the weights do not fit the {what} encoder: "
                         f"{'; '.join(parts)}{read}")
    encoder.load_state_dict({k: state[k] for k in expected})
    return encoder.eval(), options["encoder"], config, {"read": where, "steps": steps, "tensors": len(expected)}


def prepare(options: dict[str, Any], workdir: Path, log) -> dict[str, Any]:
    """Convert the released weights into a harness ``encoder.pt`` (the ``external`` stage)."""
    from encoders.checkpoint import checkpoint_digest, save_encoder

    encoder, name, config, info = build(options)
    layer = options.get("layer")
    if layer is not None and not (layer == -1 or 0 <= layer < encoder.num_layers):
        raise ValueError(f"layer {layer} is out of range for the {name}-{options['size']} encoder: expected -1 "
                         f"(its output) or 0..{encoder.num_layers - 1} (a block)")
    path = Path(workdir) / "encoder.pt"
    save_encoder(path, encoder, name, config)
    log(f"{options['path']}: {info['tensors']} tensors read from {info['read']}"
        + (f" ({'; '.join(info['steps'])})" if info["steps"] else "") + f" -> {path.name}")
    return {"checkpoint": path.name, "digest": checkpoint_digest(path),
            "params": sum(p.numel() for p in encoder.parameters()), "mapped": info}


def load(options: dict[str, Any]):
    """The encoder with the released weights (the embed stage reads the converted ``encoder.pt`` instead)."""
    return build(options)[0]
