"""Clips → a Lhotse CutSet in the shared cache, with every missing or unreadable clip reported.

Layout of a built adapter dataset (``$HARNESS_HOME/datasets/<key>/``)::

    index.json                 adapter, args, tasks: {<adapter>: {path, counts, classes, ...}}, missing, unreadable
    tasks/<adapter>.jsonl.gz   Lhotse CutSet; custom: split, fold, label / labels / captions
    report.json                every missing clip (id, path) and unreadable clip (id, path, error)

Audio stays where the user keeps it: the manifests hold absolute paths into ``args.root``.
A clip whose file is absent is *missing*; one whose header cannot be read is
*unreadable*. Both are left out of the manifest, counted and listed; neither stops the
build. Clips that pass here but fail to decode later are skipped by the embed stage.
"""

from __future__ import annotations

import gzip
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from harness.sources._common import SPLITS, Clip
from harness.store import publish_dir

LIST_IN_LOG = 5  # missing / unreadable clips named in the log (all of them are in report.json)


def short_error(exc: BaseException) -> str:
    """One line for a decoding error (Lhotse's are many lines long; keep the backend's reason)."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:  # lhotse: "Exception #0 (<backend>): <class 'X'>: reason"
        if "Exception #0" in line and ">: " in line:
            text = line.split(">: ", 2)[-1]
            break
    else:
        text = lines[0] if lines else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def probe_audio(record: Clip):
    """(Recording, None) for a readable clip, (None, 'missing') or (None, error) otherwise.

    The header is read with soundfile (about 3x faster than ``Recording.from_file``, which
    matters for NSynth's 300k notes); formats soundfile cannot open get Lhotse's other
    audio backends as a second chance.
    """
    import soundfile
    from lhotse import AudioSource, Recording

    if record.path is None or not os.path.isfile(record.path):
        return None, "missing"
    try:
        info = soundfile.info(record.path)
        rec = Recording(id=record.id, sources=[AudioSource(type="file", channels=list(range(info.channels)),
                                                             source=str(record.path))],
                        sampling_rate=int(info.samplerate), num_samples=int(info.frames),
                        duration=info.frames / info.samplerate)
    except Exception as first:  # noqa: BLE001 - any decoder failure is a reported, skipped clip
        try:
            rec = Recording.from_file(record.path, recording_id=record.id)
        except Exception:  # noqa: BLE001
            return None, short_error(first)
    if rec.num_samples <= 0:
        return None, "no audio samples"
    return rec, None


def write_cutset(cuts: list, path: Path) -> None:
    """A Lhotse ``.jsonl.gz`` manifest, byte-identical for identical cuts (gzip mtime 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for cut in cuts:
            gz.write((json.dumps(cut.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))


def summarize(records: list[Clip]) -> dict[str, Any]:
    counts = {s: sum(r.split == s for r in records) for s in SPLITS}
    info: dict[str, Any] = {"num_clips": len(records), "counts": counts}
    folds = sorted({r.fold for r in records if r.fold is not None})
    if folds:
        info["folds"] = folds
    if any(r.label is not None for r in records):
        info["classes"] = sorted({r.label for r in records if r.label is not None})
    if any(r.labels is not None for r in records):
        info["labels"] = sorted({x for r in records for x in (r.labels or [])})
    if any(r.captions for r in records):
        info["captions"] = sum(len(r.captions or []) for r in records)
    return info


def build(out_dir: str | Path, kind: str, args: dict[str, Any], progress: bool = False,
          log: Callable[[str], None] = print, workers: int = 8) -> dict:
    """Build (or find) the dataset of adapter ``kind`` with validated ``args`` at ``out_dir``."""
    from harness.sources import get_adapter as get

    out = Path(out_dir)
    if (out / "index.json").is_file():
        return json.loads((out / "index.json").read_text())
    adapter = get(kind)
    records = adapter.load(args, log=log)
    log(f"{adapter.title}: {len(records)} clips in the metadata; checking their audio")
    results = _probe_all(records, progress, workers)
    kept, missing, unreadable = [], [], []
    for record, (rec, problem) in zip(records, results):
        if rec is not None:
            cut = rec.to_cut()
            cut.custom = record.custom()
            kept.append((record, cut))
        elif problem == "missing":
            missing.append({"id": record.id, "path": record.path})
        else:
            unreadable.append({"id": record.id, "path": record.path, "error": problem})
    for name, items in (("missing", missing), ("unreadable", unreadable)):
        if items:
            shown = "; ".join(f"{i['id']} ({i['path']})" for i in items[:LIST_IN_LOG])
            more = f" and {len(items) - LIST_IN_LOG} more" if len(items) > LIST_IN_LOG else ""
            log(f"{len(items)} of {len(records)} clips {name}, left out: {shown}{more} (all in report.json)")
    if not kept:
        where = Path(records[0].path).parent if records else args.get("root")
        raise FileNotFoundError(f"{adapter.title}: none of the {len(records)} clips in the metadata has readable "
                                f"audio (looked for files such as {records[0].path if records else where}); "
                                f"{len(missing)} missing, {len(unreadable)} unreadable")
    task_info = {"path": f"tasks/{kind}.jsonl.gz", **summarize([r for r, _ in kept])}
    index = {"adapter": kind, "args": args, "tasks": {kind: task_info},
             "missing": len(missing), "unreadable": len(unreadable), "report": "report.json"}
    # Published concurrently by another job: identical by construction, and kept.
    with publish_dir(out, complete=lambda o: (o / "index.json").is_file()) as tmp:
        write_cutset([c for _, c in kept], tmp / task_info["path"])
        (tmp / "report.json").write_text(json.dumps({"missing": missing, "unreadable": unreadable}, indent=1) + "\n")
        (tmp / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def _probe_all(records: list[Clip], progress: bool, workers: int) -> list:
    """Header checks in threads (libsndfile releases the GIL); results in record order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("audio check"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results = []
    with Progress(*columns, disable=not progress) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        task = bar.add_task("check", total=len(records))
        for result in pool.map(probe_audio, records, chunksize=64):
            results.append(result)
            bar.advance(task)
    return results
