"""Plan, render and publish the mini suite (see :func:`harness.minisuite.build`)."""

from __future__ import annotations

import gzip
import json
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from harness.minisuite.render import Job, render_job
from harness.minisuite.spec import GENERATOR_VERSION, TASKS, clips_per_class, pool_clips, splits_of
from harness.store import publish_dir


def _split_table(seed: int, task: str, n_groups: int, per_group: int) -> list[list[str]]:
    """For every group (class, or the whole task), the split of each of its ``per_group`` clips
    (exact shares, see :func:`~harness.minisuite.spec.splits_of`)."""
    shares = splits_of(task)
    table = []
    for c in range(n_groups):
        order = np.random.default_rng([seed, zlib.crc32(task.encode()), 1_000_000 + c]).permutation(per_group)
        names = [""] * per_group
        start = 0
        for name, share in shares:
            stop = per_group if name == shares[-1][0] else start + round(share * per_group)
            for rep in order[start:stop]:
                names[int(rep)] = name
            start = stop
        table.append(names)
    return table


def plan(seed: int, scale: float) -> list[Job]:
    """Every clip of the suite, pool first, then each task (classes interleaved)."""
    jobs = [Job("pool", i, seed, f"audio/pool/pool-{i:05d}.wav") for i in range(pool_clips(scale))]
    for task, info in TASKS.items():
        classes = info["classes"] if info["kind"] == "multiclass" else [None]
        per_group = clips_per_class(task, scale)
        splits = _split_table(seed, task, len(classes), per_group)
        for i in range(per_group * len(classes)):
            c, rep = i % len(classes), i // len(classes)
            jobs.append(Job(task, i, seed, f"audio/{task}/{task}-{i:05d}.wav", classes[c], splits[c][rep]))
    return jobs


def _render_all(jobs: list[Job], root: Path, progress: bool, workers: int) -> list[dict]:
    """Render every job into ``root``; metadata in job order.

    With ``workers > 1`` the jobs run in spawned worker processes (not forked: the caller
    may hold threads, e.g. torch or a progress display, that fork would copy mid-flight).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    render = partial(render_job, root=str(root))
    metas: list[dict] = []
    columns = (TextColumn("mini suite"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("render", total=len(jobs))
        if workers <= 1:
            for job in jobs:
                metas.append(render(job))
                bar.advance(task)
            return metas
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for meta in pool.map(render, jobs, chunksize=8):
                    metas.append(meta)
                    bar.advance(task)
        except BrokenProcessPool as err:
            raise RuntimeError(
                "mini-suite worker processes died. Spawned workers re-import the main script: "
                "call build() under `if __name__ == '__main__':`, or pass workers=1."
            ) from err
    return metas


def _write_cutset(cuts: list, path: Path) -> None:
    """Write cuts as a Lhotse ``.jsonl.gz`` manifest, byte-identical for identical cuts
    (``CutSet.to_file`` stamps the gzip header with the current time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for cut in cuts:
            gz.write((json.dumps(cut.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))


def _write_manifests(jobs: list[Job], metas: list[dict], root: Path, final: Path, seed: int, scale: float) -> dict:
    """Write the pool and task CutSets plus ``index.json`` into ``root``; audio paths point into ``final``."""
    from lhotse import Recording

    by_kind: dict[str, list] = {}
    for job, meta in zip(jobs, metas, strict=True):
        depth = len(Path(job.path).parts)
        recording = Recording.from_file(root / job.path, recording_id=job.clip_id, relative_path_depth=depth)
        cut = recording.with_path_prefix(final).to_cut()
        if job.kind == "pool":
            cut.custom = {**meta, "source": "mini"}
        else:  # a multiclass clip's label; a multilabel clip's labels; a scene's captions and labels
            cut.custom = {**({"label": job.label} if job.label is not None else {}), "split": job.split, **meta}
        by_kind.setdefault(job.kind, []).append(cut)
    pool = by_kind["pool"]
    _write_cutset(pool, root / "pretrain.jsonl.gz")
    index: dict = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "pretrain": {
            "path": "pretrain.jsonl.gz",
            "num_clips": len(pool),
            "hours": round(sum(c.duration for c in pool) / 3600, 4),
        },
        "tasks": {},
    }
    for task, info in TASKS.items():
        cuts = by_kind[task]
        _write_cutset(cuts, root / "tasks" / f"{task}.jsonl.gz")
        counts = {name: sum(c.custom["split"] == name for c in cuts) for name, _ in splits_of(task)}
        index["tasks"][task] = {
            "path": f"tasks/{task}.jsonl.gz",
            "domain": info["domain"],
            "kind": info["kind"],
            "classes": list(info["classes"]),
            "counts": counts,
        }
    (root / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def _existing(out: Path, seed: int, scale: float) -> dict | None:
    """The index of a complete suite at ``out`` built with these settings, or None if ``out``
    is absent or an empty folder. Raises ``FileExistsError`` for anything else there."""
    index_path = out / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if (index.get("generator_version"), index.get("seed"), index.get("scale")) == (GENERATOR_VERSION, seed, scale):
            return index
        raise FileExistsError(
            f"{out} holds a mini suite built with generator {index.get('generator_version')}, "
            f"seed {index.get('seed')}, scale {index.get('scale')}; asked for generator {GENERATOR_VERSION}, "
            f"seed {seed}, scale {scale}. Use another folder."
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a mini suite; use another folder")
    return None


def build(out_dir: str | Path, seed: int = 0, scale: float = 1.0, progress: bool = True, workers: int = 2) -> dict:
    """Build the suite into ``out_dir`` atomically; see :func:`harness.minisuite.build`."""
    out = Path(out_dir).expanduser().absolute()
    scale = float(scale)
    found = _existing(out, seed, scale)
    if found is not None:
        return found
    jobs = plan(seed, scale)
    with publish_dir(out, complete=lambda o: _existing(o, seed, scale) is not None) as tmp:
        metas = _render_all(jobs, tmp, progress, workers)
        _write_manifests(jobs, metas, tmp, out, seed, scale)
    return _existing(out, seed, scale)  # ours, or the same suite that another build published first
