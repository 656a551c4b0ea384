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
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
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
