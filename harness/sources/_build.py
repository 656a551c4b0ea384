"""Clips → a Lhotse CutSet in the shared cache, with every missing or unreadable clip reported.

Layout of a built adapter dataset (``$HARNESS_HOME/datasets/<key>/``)::

    index.json                 adapter, args, tasks: {<adapter>: {path, counts, classes, ...}}, missing,
                               unreadable, truncated
    tasks/<adapter>.jsonl.gz   Lhotse CutSet; custom: split, fold, label / labels / captions
    report.json                every missing clip (id, path), unreadable clip (id, path, error) and,
                               when there are any, truncated clip (id, path, error)

Audio stays where the user keeps it: the manifests hold absolute paths into ``args.root``.
A clip whose file is absent is *missing*; one whose header cannot be read is
*unreadable*; one whose file holds less audio than its header (or its metadata) declares
is *truncated* (:func:`truncation`). All three are left out of the manifest, counted and
listed; none stops the build. Clips that pass here but fail to decode later are skipped
by the embed stage.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
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


def probe_audio(record: Clip, expected_s: float | None = None):
    """(Recording, None) for a readable, whole clip; (None, 'missing'), (None, error) or
    (None, 'truncated: ...') otherwise.

    The header is read with soundfile (about 3x faster than ``Recording.from_file``, which
    matters for NSynth's 300k notes), and :func:`truncation` checks in the same open file
    that the audio it declares is there. ``expected_s``: the clip's duration as its
    metadata gives it, if it does. Formats soundfile cannot open get Lhotse's other audio
    backends as a second chance.
    """
    import soundfile
    from lhotse import AudioSource, Recording

    if record.path is None or not os.path.isfile(record.path):
        return None, "missing"
    try:
        with soundfile.SoundFile(record.path) as f:
            frames, rate, channels = int(f.frames), int(f.samplerate), int(f.channels)
            cut = truncation(record.path, f)
        rec = Recording(id=record.id, sources=[AudioSource(type="file", channels=list(range(channels)),
                                                             source=str(record.path))],
                        sampling_rate=rate, num_samples=frames, duration=frames / rate)
    except Exception as first:  # noqa: BLE001 - any decoder failure is a reported, skipped clip
        try:
            rec = Recording.from_file(record.path, recording_id=record.id)
        except Exception:  # noqa: BLE001
            return None, short_error(first)
        cut = None
    if cut is None and expected_s and rec.duration < expected_s - max(EXPECTED_SLACK_S, EXPECTED_SLACK * expected_s):
        cut = f"{rec.duration:.3f} s of audio where its metadata gives {expected_s:.3f} s"
    if cut is not None:  # before the empty check: a file cut before its first audio is truncated too
        return None, f"truncated: {cut}"
    if rec.num_samples <= 0:
        return None, "no audio samples"
    return rec, None


# A clip shorter than its metadata's duration by more than this (the larger of the two) is
# truncated; less is rounding.
EXPECTED_SLACK_S, EXPECTED_SLACK = 0.25, 0.05
TAIL_FRAMES = 64  # frames decoded at the end the header declares
OGG_PAGE_MAX = 27 + 255 + 255 * 255  # the longest an Ogg page can be


def truncation(path: str | os.PathLike, f) -> str | None:
    """Why an audio file holds less audio than its container declares, or None.

    libsndfile reads a truncated file as a shorter valid clip: a WAV's frame count comes
    from the bytes present, an Ogg's from its last whole page, so the frame count alone
    cannot tell. Three cheap checks, none a full decode (``f``: the file open in soundfile):

    - WAV and AIFF: the size the data chunk declares against the bytes that follow it
      (a few header bytes read);
    - Ogg (Vorbis, Opus, FLAC in Ogg): the stream's last page must be whole and marked
      end-of-stream (the last page read, at most 64 KiB);
    - any other format: the last frames the header declares are sought and decoded
      (a FLAC's STREAMINFO declares its length; a cut FLAC fails to seek or decode there).
    """
    size = os.path.getsize(path)
    kind = f.format.upper()
    if kind in ("WAV", "WAVEX", "AIFF", "RF64", "W64"):
        declared = _declared_data_bytes(path, size)
        if declared is not None and declared[0] > declared[1]:
            whole = f.frames * declared[0] / max(declared[1], 1) / f.samplerate
            return f"{f.frames / f.samplerate:.3f} s of audio where its header declares {whole:.3f} s"
        return None
    if kind == "OGG":
        problem = _ogg_end(path, size)
        return f"{problem} ({f.frames / f.samplerate:.3f} s decodable)" if problem else None
    if f.frames <= 0 or not f.seekable():
        return None
    want = min(TAIL_FRAMES, f.frames)
    try:
        f.seek(f.frames - want)
        got = len(f.read(want, dtype="int16", always_2d=True))
    except Exception as exc:  # noqa: BLE001 - the declared end cannot be reached: truncated
        return (f"its last frames do not decode ({short_error(exc)}); the header declares "
                f"{f.frames / f.samplerate:.3f} s")
    if got < want:
        return f"it ends {want - got} frames before the {f.frames / f.samplerate:.3f} s its header declares"
    return None


def _declared_data_bytes(path: str | os.PathLike, size: int) -> tuple[int, int] | None:
    """(bytes of audio the WAV / AIFF header declares, bytes present after it), or None
    where it declares no size (a stream written before its length was known)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
            order, data = ("<" if head[:4] == b"RIFF" else ">"), b"data"
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            order, data = ">", b"SSND"
        else:
            return None  # RF64 / W64 carry their sizes elsewhere
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            length = struct.unpack(order + "I", chunk[4:])[0]
            if chunk[:4] == data:
                if length in (0, 0xFFFFFFFF):
                    return None
                return length, size - pos - 8
            pos += 8 + length + (length & 1)
    return None


def _ogg_end(path: str | os.PathLike, size: int) -> str | None:
    """What is wrong with the end of an Ogg stream, or None when its last page is whole and
    marked end-of-stream."""
    with open(path, "rb") as f:
        f.seek(max(0, size - OGG_PAGE_MAX))
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at != -1 and (len(tail) - at < 27 or tail[at + 4] != 0):  # a page header starts 'OggS', version 0
        at = tail.rfind(b"OggS", 0, at)
    if at == -1:
        return "no whole Ogg page at its end"
    segments = tail[at + 26]
    end = at + 27 + segments + sum(tail[at + 27:at + 27 + segments])
    if at + 27 + segments > len(tail) or end > len(tail):
        return "its last Ogg page is cut short"
    if not tail[at + 5] & 0x04:
        return "its Ogg stream has no end-of-stream page"
    return None


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
    results = _probe_all(records, progress, workers, getattr(adapter, "clip_duration", None))
    kept, missing, unreadable, truncated = [], [], [], []
    for record, (rec, problem) in zip(records, results):
        if rec is not None:
            cut = rec.to_cut()
            cut.custom = record.custom()
            kept.append((record, cut))
        elif problem == "missing":
            missing.append({"id": record.id, "path": record.path})
        elif problem.startswith("truncated: "):
            truncated.append({"id": record.id, "path": record.path, "error": problem})
        else:
            unreadable.append({"id": record.id, "path": record.path, "error": problem})
    for name, items in (("missing", missing), ("unreadable", unreadable), ("truncated", truncated)):
        if items:
            shown = "; ".join(f"{i['id']} ({i['path']})" for i in items[:LIST_IN_LOG])
            more = f" and {len(items) - LIST_IN_LOG} more" if len(items) > LIST_IN_LOG else ""
            log(f"{len(items)} of {len(records)} clips {name}, left out: {shown}{more} (all in report.json)")
    if not kept:
        where = Path(records[0].path).parent if records else args.get("root")
        raise FileNotFoundError(f"{adapter.title}: none of the {len(records)} clips in the metadata has readable "
                                f"audio (looked for files such as {records[0].path if records else where}); "
                                f"{len(missing)} missing, {len(unreadable)} unreadable, {len(truncated)} truncated")
    task_info = {"path": f"tasks/{kind}.jsonl.gz", **summarize([r for r, _ in kept])}
    index = {"adapter": kind, "args": args, "tasks": {kind: task_info},
             "missing": len(missing), "unreadable": len(unreadable), "truncated": len(truncated),
             "report": "report.json"}
    report: dict[str, Any] = {"missing": missing, "unreadable": unreadable}
    if truncated:  # listed when there are any (the report of a whole dataset keeps its two keys)
        report["truncated"] = truncated
    # Published concurrently by another job: identical by construction, and kept.
    with publish_dir(out, complete=lambda o: (o / "index.json").is_file()) as tmp:
        write_cutset([c for _, c in kept], tmp / task_info["path"])
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def _probe_all(records: list[Clip], progress: bool, workers: int, clip_duration: float | None = None) -> list:
    """Header and truncation checks in threads (libsndfile releases the GIL); results in
    record order. A clip's expected duration is its metadata's ``duration`` (in
    ``Clip.extra``), else the adapter's ``clip_duration`` (a dataset of fixed-length clips)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def check(record: Clip):
        expected = record.extra.get("duration") or clip_duration
        try:
            expected = float(expected) if expected else None
        except (TypeError, ValueError):
            expected = None
        return probe_audio(record, expected)

    columns = (TextColumn("audio check"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results = []
    with Progress(*columns, disable=not progress) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        task = bar.add_task("check", total=len(records))
        for result in pool.map(check, records, chunksize=64):
            results.append(result)
            bar.advance(task)
    return results
