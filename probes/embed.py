"""Frame-level embeddings from a frozen encoder, and their on-disk cache.

The encoder is seen only through the Encoder contract::

    encoder(feats [B, T, F] zero-padded, lengths [B], layer=-1) -> (frames [B, T', D], out_lengths [B])

Embeddings are kept frame-level (``[T'_i, D]`` float16 per item) so that every pooling,
learned or not, can be probed from one extraction ("embed once, probe many").

On disk, ``save_shards`` writes ``shard-00000.npz``, ``shard-00001.npz``, ... each
holding ``frames`` (the items' frames concatenated, float16 ``[sum T'_i, D]``) and
``offsets`` (int64 ``[n_items + 1]``), then ``index.json`` last. Every file is written
to a temporary name and renamed, so a reader never sees a partial file and a cache
without ``index.json`` is incomplete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import track
from torch import Tensor, nn

__all__ = ["extract_embeddings", "save_shards", "load_shards", "mean_pool"]

_INDEX = "index.json"
_SHARD = "shard-{:05d}.npz"


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.no_grad()
def extract_embeddings(
    encoder: nn.Module,
    features: Sequence[Tensor],
    layer: int = -1,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Run a frozen encoder over variable-length features.

    The encoder is moved to ``device`` (default: CUDA when available, else CPU) and put in
    eval mode for the call; its training flag is restored afterwards. Items are batched
    in order of decreasing length to minimise padding, run under ``no_grad`` (and bf16
    autocast on CUDA), and returned in the input order.

    Args:
        encoder: a module obeying the Encoder contract.
        features: one ``[T_i, F]`` tensor per item (e.g. 80-bin fbank).
        layer: which encoder layer to read (passed to the encoder).
        batch_size: items per forward pass.
        device: torch device string.
        progress: show a progress bar.

    Returns:
        One float16 array ``[T'_i, D]`` per item, holding its valid frames only.
    """
    device = device or _default_device()
    was_training = encoder.training
    encoder.to(device).eval()
    order = sorted(range(len(features)), key=lambda i: -features[i].shape[0])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out: list[np.ndarray | None] = [None] * len(features)
    device_type = torch.device(device).type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda")
    try:
        for batch in track(batches, description="embedding", disable=not progress):
            items = [features[i] for i in batch]
            lengths = torch.tensor([x.shape[0] for x in items], device=device)
            padded = nn.utils.rnn.pad_sequence(items, batch_first=True).to(device, torch.float32)
            with autocast:
                frames, out_lengths = encoder(padded, lengths, layer=layer)
            frames = frames.to(torch.float16).cpu().numpy()
            for row, (i, n) in enumerate(zip(batch, out_lengths.tolist())):
                out[i] = frames[row, :n].copy()
    finally:
        encoder.train(was_training)
    return out  # type: ignore[return-value]


def _atomic_write(path: Path, write: Callable[[object], None]) -> None:
    """Write ``path`` through ``write(file)`` on a temporary name, then rename it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_shards(out_dir: str | os.PathLike, embeddings: list[np.ndarray], shard_size: int = 1024) -> None:
    """Write frame-level embeddings as float16 shards of ``shard_size`` items.

    ``index.json`` (item count, shard count, dim) is written last; see the module
    docstring for the layout.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(e.ndim != 2 for e in embeddings) or len({e.shape[1] for e in embeddings}) > 1:
        raise ValueError("embeddings must all be [T_i, D] arrays with one D")
    (out / _INDEX).unlink(missing_ok=True)  # the cache reads as incomplete until rewritten
    starts = range(0, len(embeddings), shard_size)
    for k, start in enumerate(starts):
        chunk = embeddings[start : start + shard_size]
        offsets = np.concatenate([[0], np.cumsum([e.shape[0] for e in chunk])]).astype(np.int64)
        frames = np.concatenate(chunk).astype(np.float16, copy=False)
        _atomic_write(out / _SHARD.format(k), partial(np.savez, frames=frames, offsets=offsets))
    dim = embeddings[0].shape[1] if embeddings else None
    index = {"n_items": len(embeddings), "n_shards": len(starts), "dim": dim}
    _atomic_write(out / _INDEX, lambda f: f.write(json.dumps(index).encode()))


def load_shards(out_dir: str | os.PathLike) -> list[np.ndarray]:
    """Read embeddings written by ``save_shards``, in their original order."""
    out = Path(out_dir)
    index_path = out / _INDEX
    if not index_path.exists():
        raise FileNotFoundError(f"no complete embedding cache in {out} (missing {_INDEX})")
    index = json.loads(index_path.read_text())
    embeddings: list[np.ndarray] = []
    for k in range(index["n_shards"]):
        with np.load(out / _SHARD.format(k)) as shard:
            frames, offsets = shard["frames"], shard["offsets"]
        embeddings.extend(np.split(frames, offsets[1:-1]))
    if len(embeddings) != index["n_items"]:
        raise ValueError(f"{out}: index says {index['n_items']} items, shards hold {len(embeddings)}")
    return embeddings


def mean_pool(embeddings: list[np.ndarray]) -> np.ndarray:
    """Average each item's frames: ``[N, D]`` float32 (accumulated in float32)."""
    if any(e.shape[0] == 0 for e in embeddings):
        raise ValueError("cannot mean-pool an item with no frames")
    # torch converts float16 with vector instructions: twice as fast as numpy's mean(dtype=float32)
    return torch.stack([torch.from_numpy(np.ascontiguousarray(e)).mean(0, dtype=torch.float32)
                        for e in embeddings]).numpy()
