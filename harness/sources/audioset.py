"""AudioSet: the segment CSVs plus the user's audio; label mids mapped to display names.

Official layout (research.google.com/audioset/download.html)::

    balanced_train_segments.csv  unbalanced_train_segments.csv  eval_segments.csv

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Lines starting with ``#`` are comments. Mids are mapped to names through
``class_labels_indices.csv`` (index,mid,display_name; the 527 classes) or the ontology
JSON (632 nodes with ``id`` and ``name``); the default is the ``audioset-classes`` asset.

Audio is the user's, one file per segment under ``audio_dir``, named ``Y{YTID}`` (the
usual downloaders' name), ``{YTID}``, ``{YTID}_{start}`` or ``{YTID}_{start}_{end}``
(and ``Y`` forms; see :func:`harness.sources._common.youtube_stems`). The file is taken to
be the segment itself.

Two components read it: the pre-training source (``kind: audioset``, any segment CSVs)
and the evaluation adapter (``adapter: audioset``): the balanced train segments for
training, ``eval_segments.csv`` for test, 10% of train (by a hash of the id) for
validation, multi-label over the 527 classes (BLAT's zero-shot AudioSet mAP,
``paper/audioset_zeroshot``). A segment of the list with no file is missing: counted and
left out, as for every adapter.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import HarnessError
from harness.sources._adapter import Adapter
from harness.sources._common import (AudioIndex, Clip, Clips, Pathlike, SourceReport, as_paths, build_cuts, read_csv,
                                     require_file, youtube_stems)
from harness.registry import Component
from harness.schema import PathArg, Str

COMPONENTS = [
    Component(
        kind="source",
        target="read_audioset",
        version="1",
        doc="AudioSet: segment CSVs, audio named by YouTube id, class names",
        options={
            "segments": PathArg(must="file", many=True, doc="the segment CSVs"),
            "audio_dir": PathArg(None, must="dir", many=True, doc="folder(s) of the audio"),
            "classes": PathArg(None, must="file", mapping="as-is",
                               doc="class_labels_indices.csv, or a mapping of mid to display name"),
        },
    ),
    # A task file names it in `adapter: audioset` (balanced train / eval, multi-label).
    Component(kind="adapter", target="AudioSetEval", version="1"),
]

WHAT = 'an AudioSet segment CSV (YTID, start_seconds, end_seconds, "positive_labels")'


def load_classes(path: Pathlike | None = None) -> dict[str, str]:
    """AudioSet mid → display name, from ``class_labels_indices.csv`` or the ontology JSON
    (``None``: the verified ``audioset-classes`` asset, see :mod:`harness.assets`)."""
    if path is None:
        from harness.assets import fetch

        path = fetch("audioset-classes")
    path = Path(path).expanduser()
    if path.suffix.lower() == ".json":
        what = "the AudioSet ontology JSON (a list of nodes with id and name)"
        require_file(path, what)
        try:
            nodes = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HarnessError(f"{path}: not JSON ({e}); expected {what}") from None
        if not isinstance(nodes, list) or not all(isinstance(n, dict) and "id" in n and "name" in n for n in nodes):
            raise HarnessError(f"{path}: not a list of nodes with id and name; expected {what}")
        return {n["id"]: n["name"] for n in nodes}
    rows = read_csv(path, ("mid", "display_name"), "AudioSet's class_labels_indices.csv")
    return {row["mid"]: row["display_name"] for _, row in rows}


def read_segments(path: Path) -> list[tuple[int, str, str, str, list[str]]]:
    """The rows of a segment CSV: (line number, YTID, start, end, mids)."""
    require_file(path, WHAT)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                fields = next(csv.reader([line], skipinitialspace=True))
            except csv.Error as e:
                raise HarnessError(f"{path}:{lineno}: malformed CSV ({e}); expected {WHAT}") from None
            if len(fields) != 4:
                raise HarnessError(f"{path}:{lineno}: {len(fields)} fields; expected {WHAT}")
            ytid, start, end, mids = (x.strip() for x in fields)
            try:
                float(start), float(end)
            except ValueError:
                raise HarnessError(f"{path}:{lineno}: start {start!r} / end {end!r} are not seconds; "
                                   f"expected {WHAT}") from None
            out.append((lineno, ytid, start, end, [m.strip() for m in mids.split(",") if m.strip()]))
    return out


def read_audioset(segments: Pathlike | Sequence[Pathlike], audio_dir: Pathlike | Sequence[Pathlike] | None = None,
                  *, classes: Pathlike | Mapping[str, str] | None = None, source: str = "audioset"):
    """AudioSet segment CSVs + audio → ``(CutSet, SourceReport)``.

    ``classes``: class_labels_indices.csv, the ontology JSON, a ``{mid: name}`` dict, or
    None for the ``audioset-classes`` asset. Cut id: the YTID. ``custom``: the uniform
    fields with ``labels`` the display names (a mid missing from the map stays a mid and
    is counted under ``notes["unknown_mids"]``), plus ``mids``, ``youtube_id``,
    ``start``, ``end`` and ``split`` (the CSV's stem).
    """
    names = dict(classes) if isinstance(classes, Mapping) else load_classes(classes)
    report = SourceReport(source)
    clips = Clips(report)
    unknown: set[str] = set()
    for path in as_paths(segments):
        for _, ytid, start, end, mids in read_segments(path):
            unknown.update(m for m in mids if m not in names)
            clips.add(Clip(
                id=ytid, stems=youtube_stems(ytid, start, end),
                labels=[names.get(m, m) for m in mids],
                extra={"mids": mids, "youtube_id": ytid, "start": float(start), "end": float(end),
                       "split": Path(path).stem},
            ))
    if unknown:
        report.notes["unknown_mids"] = len(unknown)
    index = AudioIndex(audio_dir) if audio_dir is not None else None
    return build_cuts(clips, report, index), report


class AudioSetEval(Adapter):
    """AudioSet as a multi-label evaluation task (``adapter: audioset``): the balanced train
    segments train, the eval segments test; labels are the classes' display names."""

    name = "audioset"
    title = "AudioSet"
    layout = "balanced_train_segments.csv, eval_segments.csv and a folder of clips named by YouTube id"
    required = ("balanced_train_segments.csv", "eval_segments.csv")
    kinds = ("multilabel",)
    valid_fraction = 0.1
    args = {
        "audio_dir": Str("audio", doc="folder of the clips, relative to root (searched recursively)"),
        "classes": Str(None, doc="class_labels_indices.csv (default: the verified audioset-classes asset)"),
    }
    SPLIT_FILES = {"balanced_train_segments.csv": "train", "eval_segments.csv": "test"}

    def metadata_files(self, args):
        return list(self.SPLIT_FILES)

    def records(self, args, log=print):
        root = Path(args["root"])
        names = load_classes(args.get("classes"))
        files = AudioIndex(root / args.get("audio_dir", "audio"), missing_ok=True)
        out, unknown = [], set()
        for filename, split in self.SPLIT_FILES.items():
            for _, ytid, start, end, mids in read_segments(root / filename):
                unknown.update(m for m in mids if m not in names)
                path = files.find(youtube_stems(ytid, start, end)) or root / args.get("audio_dir", "audio") / f"Y{ytid}.wav"
                out.append(Clip(id=ytid, path=str(path), split=split, labels=[names.get(m, m) for m in mids]))
        if unknown:
            log(f"AudioSet: {len(unknown)} label ids not in the class list kept as ids")
        return out
