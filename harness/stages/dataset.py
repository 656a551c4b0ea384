"""Datasets a study reads: the built-in mini suite (generated once, shared by all studies).

The node's folder holds ``dataset.json``, which points at the dataset's root in the shared
cache (``$HARNESS_HOME/datasets/<key>/``): its pre-training pool manifest and one manifest
per probe task, all Lhotse CutSets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.job import StageContext
from harness.store import atomic_write_json

VERSION = "1"
POINTER = "dataset.json"


def run(ctx: StageContext) -> dict:
    from harness.minisuite import build

    root = ctx.cache_dir / "datasets" / ctx.key
    # Generation is deterministic whatever the number of workers; it runs before any other job.
    index = build(root, seed=ctx.config["seed"], scale=ctx.config["scale"], progress=ctx.progress,
                  workers=os.cpu_count() or 1)
    atomic_write_json(ctx.workdir / POINTER, {"root": str(root), "index": index})
    ctx.log(f"mini suite at {root}: {index['pretrain']['num_clips']} pool clips, {len(index['tasks'])} tasks")
    return {"root": str(root), "pool_clips": index["pretrain"]["num_clips"], "tasks": sorted(index["tasks"])}


def _pointer(node_dir: Path) -> dict:
    return json.loads((node_dir / POINTER).read_text())


def pool_manifest(node_dir: Path) -> Path:
    """The pre-training pool manifest of a completed dataset node."""
    p = _pointer(node_dir)
    return Path(p["root"]) / p["index"]["pretrain"]["path"]


def task_manifest(node_dir: Path, task: str) -> Path:
    """The manifest of one probe task of a completed dataset node."""
    p = _pointer(node_dir)
    tasks = p["index"]["tasks"]
    if task not in tasks:
        raise KeyError(f"the dataset has no task {task!r}; it has: {', '.join(sorted(tasks))}")
    return Path(p["root"]) / tasks[task]["path"]
