"""Datasets a study reads: the built-in mini suite (generated once, shared by all studies)
and the datasets that task adapters read from a user's folder (``harness.sources``).

The node's folder holds ``dataset.json``, which points at the dataset's root in the shared
cache (``$HARNESS_HOME/datasets/<key>/``): for the mini suite its pre-training pool
manifest and one manifest per probe task; for an adapter one task manifest and a report
of the clips left out (missing, unreadable or truncated audio). All manifests are Lhotse CutSets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.job import StageContext
from harness.store import atomic_write_json
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="1",
    doc="a data source or a probe task's dataset as a Lhotse manifest (shared cache)",
    meta={"order": 10, "shared": True},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)
POINTER = "dataset.json"


def run(ctx: StageContext) -> dict:
    from harness.sources import source_names

    if ctx.config["kind"] in source_names() and "files" in ctx.config:
        return _run_source(ctx)
    if ctx.config["kind"] == "mix":
        return _run_mix(ctx)
    if ctx.config["kind"] != "minisuite":
        return _run_adapter(ctx)
    from harness.minisuite import build

    root = ctx.cache_dir / "datasets" / ctx.key
    # Generation is deterministic whatever the number of workers; it runs before any other job.
    index = build(root, seed=ctx.config["seed"], scale=ctx.config["scale"], progress=ctx.progress,
                  workers=os.cpu_count() or 1)
    atomic_write_json(ctx.workdir / POINTER, {"root": str(root), "index": index})
    ctx.log(f"mini suite at {root}: {index['pretrain']['num_clips']} pool clips, {len(index['tasks'])} tasks")
    return {"root": str(root), "pool_clips": index["pretrain"]["num_clips"], "tasks": sorted(index["tasks"])}


def _run_source(ctx: StageContext) -> dict:
    """A pre-training corpus (harness.sources): its pool manifest with uniform supervision fields."""
    from harness.sources import read_source

    kind = ctx.config["kind"]
    root = ctx.cache_dir / "datasets" / ctx.key
    cuts, report = read_source(kind, **ctx.config["args"])
    cuts = list(cuts)
    excluded = {}
    if ctx.config.get("exclude"):
        cuts, excluded = _exclude(ctx, cuts)
        report.notes["excluded"] = excluded
        ctx.log("evaluation clips removed: " + ", ".join(f"{name}: {n}" for name, n in excluded.items()))
    if not cuts:
        raise ValueError(f"the {kind!r} source has no clip with readable audio: {report.summary()}")
    atomic_write_json(root / "report.json", report.to_dict())
    hours = _publish_pool(ctx, root, cuts, sum(c.duration for c in cuts), report="report.json")
    ctx.log(f"{kind} at {root}: {report.summary()}")
    return {"root": str(root), "pool_clips": len(cuts), "hours": hours, "excluded": excluded,
            "report": report.to_dict()}


def _run_mix(ctx: StageContext) -> dict:
    """A pool drawn from other sources' pools by weight (without replacement, nested as it grows)."""
    from harness.sources.select import mix
    from harness.stages.manifests import iter_cut_dicts

    cfg = ctx.config
    parts = {name: (list(iter_cut_dicts(pool_manifest(ctx.inputs[f"part{i}"].path))), weight)
             for i, (name, weight) in enumerate(cfg["weights"].items())}
    cuts, counts = mix(parts, total=cfg["total"], seed=cfg["seed"])
    root = ctx.cache_dir / "datasets" / ctx.key
    hours = _publish_pool(ctx, root, cuts, sum(float(c.get("duration", 0.0)) for c in cuts))
    ctx.log(f"mix of {len(cuts)} clips: " + ", ".join(f"{n}: {c}" for n, c in counts.items()))
    return {"root": str(root), "pool_clips": len(cuts), "hours": hours, "counts": counts}


def _publish_pool(ctx: StageContext, root: Path, cuts: list, seconds: float, **index_extra: str) -> float:
    """Write a pool's manifest under ``root`` and the node's pointer to it; returns its hours."""
    from harness.sources.select import write_cutset

    write_cutset(cuts, root / "pretrain.jsonl.gz")
    hours = round(seconds / 3600, 4)
    index = {"pretrain": {"path": "pretrain.jsonl.gz", "num_clips": len(cuts), "hours": hours}, "tasks": {},
             **index_extra}
    atomic_write_json(ctx.workdir / POINTER, {"root": str(root), "index": index})
    return hours


def _exclude(ctx: StageContext, cuts: list) -> tuple[list, dict[str, int]]:
    """Drop the clips of each excluded task's valid and test splits (by clip or YouTube id)."""
    from harness.sources.select import exclude
    from harness.stages.manifests import iter_cut_dicts

    id_sets = {}
    for i, item in enumerate(ctx.config["exclude"]):
        manifest = task_manifest_for(ctx.inputs[f"exclude{i}"].path, item["task"])
        id_sets[item["task"]["name"]] = [c["id"] for c in iter_cut_dicts(manifest)
                                         if (c.get("custom") or {}).get("split") in item["splits"]]
    return exclude(cuts, id_sets)


def _run_adapter(ctx: StageContext) -> dict:
    from harness.sources._build import build

    kind = ctx.config["kind"]
    root = ctx.cache_dir / "datasets" / ctx.key
    index = build(root, kind, ctx.config["args"], progress=ctx.progress, log=ctx.log,
                  workers=min(8, 2 * (os.cpu_count() or 1)))  # threads hide file-system latency (NFS)
    atomic_write_json(ctx.workdir / POINTER, {"root": str(root), "index": index})
    info = index["tasks"][kind]
    truncated = index.get("truncated", 0)  # a dataset built before truncation was checked has no count
    ctx.log(f"{kind} at {root}: {info['num_clips']} clips {info['counts']}, "
            f"{index['missing']} missing, {index['unreadable']} unreadable, {truncated} truncated")
    report = json.loads((root / index["report"]).read_text())
    return {"root": str(root), "tasks": sorted(index["tasks"]), "num_clips": info["num_clips"],
            "counts": info["counts"], "missing": index["missing"], "unreadable": index["unreadable"],
            "truncated": truncated, "report": str(root / index["report"]),
            # the first few, so the record names them; report.json lists them all
            "missing_clips": report["missing"][:20], "unreadable_clips": report["unreadable"][:20],
            "truncated_clips": report.get("truncated", [])[:20]}


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


def task_manifest_for(node_dir: Path, task: dict) -> Path:
    """The manifest of a task declaration (``harness.tasks.load_task``) in its dataset node."""
    if task["adapter"] == "minisuite":
        return task_manifest(node_dir, task["args"]["task"])
    return task_manifest(node_dir, task["adapter"])


def left_out(node_dir: Path) -> dict:
    """The clips an adapter dataset left out: {"missing": [...], "unreadable": [...]} (empty for the mini suite)."""
    p = _pointer(node_dir)
    report = p["index"].get("report")
    if not report:
        return {"missing": [], "unreadable": []}
    return json.loads((Path(p["root"]) / report).read_text())
