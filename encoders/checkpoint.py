"""Save and load encoder checkpoints: registry name, config, version and weights in one file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from encoders import build_encoder, encoder_version
from encoders.base import Encoder


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_encoder(path: str | os.PathLike, encoder: Encoder, name: str, config: dict[str, Any]) -> None:
    """Write ``encoder``'s weights with the registry ``name`` and ``config`` that rebuild it."""
    atomic_save(
        {
            "name": name,
            "config": dict(config),
            "version": encoder_version(name),
            "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        },
        path,
    )


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint's content: name, config, version and every tensor's bytes.

    ``torch.save`` writes a random serialization id into each file, so equal weights give
    different file bytes; this digest is equal exactly when the weights and metadata are.
    It keys the embedding cache.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256(json.dumps({k: ckpt[k] for k in ("name", "config", "version")}, sort_keys=True).encode())
    for key in sorted(ckpt["state_dict"]):
        tensor = ckpt["state_dict"][key].contiguous()
        h.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes;
        # any other tensor gives the same bytes either way.
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def load_encoder(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Encoder, dict[str, Any]]:
    """Rebuild an encoder saved by :func:`save_encoder`, in eval mode on ``map_location``.

    Returns the encoder and its metadata ``{"name", "config", "version"}``.
    """
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    encoder = build_encoder(ckpt["name"], **ckpt["config"])
    encoder.load_state_dict(ckpt["state_dict"])
    encoder.to(map_location).eval()
    return encoder, {k: ckpt[k] for k in ("name", "config", "version")}


# ------------------------------------------------------------------ the language side

LANGUAGE_FILE = "language.pt"
"""Beside ``encoder.pt`` in a pre-training run of an audio-text objective (contrastive):
the objective's own modules (text tower, both projections, temperature), for zero-shot
classification and retrieval. The encoder checkpoint itself is unchanged."""


def has_language_side(objective: Any) -> bool:
    """An objective that embeds audio and text in one space (``embed_audio``, ``embed_text``)."""
    return callable(getattr(objective, "embed_audio", None)) and callable(getattr(objective, "embed_text", None))


def save_language_side(path: str | os.PathLike, objective: Any, name: str, options: dict[str, Any],
                       encoder_dim: int) -> bool:
    """Write an audio-text objective's modules with what rebuilds them; a no-op (False) for
    any other objective, and on every DDP rank but 0."""
    from encoders.objectives import objective_version

    if not has_language_side(objective):
        return False
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
        return False
    atomic_save(
        {
            "name": name,
            "options": dict(options),
            "encoder_dim": int(encoder_dim),
            "version": objective_version(name),
            "state_dict": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
        },
        path,
    )
    return True


def _build_language_side(name: str, options: dict[str, Any], encoder_dim: int, state_dict: dict) -> Any:
    import inspect

    from encoders.objectives import objective_class

    cls = objective_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    module = cls(encoder_dim, **{k: v for k, v in options.items() if k in accepted})  # max_tokens etc. are not
    if not has_language_side(module):
        return None
    module.load_state_dict(state_dict)
    return module.eval()


def load_language_side(run_dir: str | os.PathLike, objective: dict[str, Any] | None = None,
                       encoder_dim: int | None = None, map_location: str | torch.device = "cpu"):
    """The audio-text modules of a pre-training run folder, or None if it has none.

    Reads ``language.pt``; for a run finished before that file existed, falls back to the
    objective state in the trainer's ``train_state.pt``, rebuilt from ``objective`` (the
    run's objective config, ``{"name", **options}``) and ``encoder_dim``. Returns
    ``(module, {"name", "options"})`` with the module in eval mode, or None when the
    run's objective has no language side (or the run was not trained).
    """
    run_dir = Path(run_dir)
    path = run_dir / LANGUAGE_FILE
    if path.is_file():
        blob = torch.load(path, map_location=map_location, weights_only=True)
        module = _build_language_side(blob["name"], blob["options"], blob["encoder_dim"], blob["state_dict"])
        return None if module is None else (module, {"name": blob["name"], "options": blob["options"]})
    if not objective or encoder_dim is None:
        return None
    options = {k: v for k, v in objective.items() if k != "name"}
    from encoders.objectives import objective_class, objective_names

    if objective.get("name") not in objective_names():
        return None  # a baseline (random): nothing trained
    cls = objective_class(objective["name"])
    if not has_language_side(cls) or not (run_dir / "train_state.pt").is_file():
        return None
    state = torch.load(run_dir / "train_state.pt", map_location=map_location, weights_only=True)
    module = _build_language_side(objective["name"], options, encoder_dim, state["objective"])
    return None if module is None else (module, {"name": objective["name"], "options": options})
