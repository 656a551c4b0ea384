"""AudioCaps: the official caption CSVs plus the user's audio — one reader, serving both a
pre-training source (``kind: audiocaps``) and a retrieval task (``adapter: audiocaps``).

Official layout (github.com/cdjkim/audiocaps, ``dataset/`` and ``dataset2.0/``)::

    train.csv  val.csv  test.csv        audiocap_id,youtube_id,start_time,caption

Train has one caption per clip, val and test five (one row each). Rows of the same clip
(same ``youtube_id`` and ``start_time``) merge into one clip with all its captions.

Audio is the user's: one file per clip anywhere under the audio folder, named by any of
``{youtube_id}``, ``Y{youtube_id}``, ``{youtube_id}_{start}``, ``{youtube_id}_{start}_{end}``
(start/end spelt ``30``, ``30.0``, ``30.000``, ``000030`` or in ms), their ``Y`` forms, or
``{audiocap_id}`` (any of the row's audiocap ids). The file is taken to be the 10 s clip.

- **Source** (:func:`read_audiocaps`): cut id the ``youtube_id`` (``{youtube_id}_{start}``
  if the same video appears at a second start time); ``split`` is the CSV's file stem.
- **Task** (:class:`AudioCaps`): ``args.root`` holds the CSVs (or ``dataset/*.csv``) and
  the audio (``audio_dir``); clip id ``<youtube_id>_<start>``; split train / valid /
  test from the CSV; a segment in two splits keeps both, ids prefixed with the split.
  Clips you do not have are counted as missing and left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from harness.registry import Component
from harness.schema import PathArg, Str
from harness.sources._adapter import Adapter
from harness.sources._common import (AudioIndex, Clip, Clips, MetadataError, Pathlike, SourceReport, as_paths,
                                     build_cuts, read_csv, youtube_stems)

VERSION = "1"  # the reader: both uses below

COMPONENTS = [
    Component(kind="source", target="read_audiocaps", versions_of=("harness.sources.audiocaps",),
              doc="AudioCaps: caption CSVs and audio named by YouTube id",
              options={
                  "captions": PathArg(must="file", many=True, doc="the caption CSVs (train.csv, val.csv, test.csv)"),
                  "audio_dir": PathArg(None, must="dir", many=True, doc="folder(s) of the audio"),
              }),
    # A task file names it in `adapter: audiocaps`.
    Component(kind="adapter", target="AudioCaps", versions_of=("harness.sources.audiocaps",)),
]

COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
WHAT = "an AudioCaps caption CSV"
CSVS = {"train": "train.csv", "valid": "val.csv", "test": "test.csv"}


def caption_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The rows of one AudioCaps caption CSV as ``(where, row)``, checked: every column
    present, ``start_time`` in seconds."""
    for lineno, row in read_csv(path, COLUMNS, WHAT):
        where = f"{path}:{lineno}"
        try:
            float(row["start_time"])
        except ValueError:
            raise MetadataError(f"{where}: start_time: expected seconds, found {row['start_time']!r}") from None
        yield where, row


def audio_stems(row: dict[str, str]) -> list[str]:
    """The file stems a row's clip may be stored under (see the module docstring)."""
    return youtube_stems(row["youtube_id"], row["start_time"]) + [row["audiocap_id"]]


def read_audiocaps(captions: Pathlike | Sequence[Pathlike], audio_dir: Pathlike | Sequence[Pathlike] | None = None,
                   *, source: str = "audiocaps"):
    """AudioCaps CSVs (``captions``: one path or several) + audio under ``audio_dir`` → ``(CutSet, SourceReport)``.

    Cut id: the ``youtube_id`` (``{youtube_id}_{start_time}`` if the same video appears at
    two start times). ``custom``: the uniform fields with ``caption`` the first caption and
    ``captions`` all of them, plus ``split`` (the CSV's file stem), ``youtube_id``,
    ``start_time`` and ``audiocap_ids``.
    """
    report = SourceReport(source)
    clips = Clips(report)
    starts_of: dict[str, str] = {}  # youtube_id -> first start time seen
    for csv_path in as_paths(captions):
        for _, row in caption_rows(csv_path):
            ytid, start = row["youtube_id"], row["start_time"]
            first = starts_of.setdefault(ytid, start)
            clip_id = ytid if _same_time(first, start) else f"{ytid}_{start}"
            clips.add(Clip(
                id=clip_id,
                stems=audio_stems(row),
                captions=[row["caption"]] if row["caption"] else [],
                extra={"split": Path(csv_path).stem, "youtube_id": ytid, "start_time": _number(start),
                       "audiocap_ids": [row["audiocap_id"]]},
            ))
    index = AudioIndex(audio_dir) if audio_dir is not None else None
    return build_cuts(clips, report, index), report


def _same_time(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def metadata_dir(root: Path, value: str | None) -> Path:
    if value:
        return root / value
    return root / "dataset" if (root / "dataset" / "train.csv").is_file() else root


class AudioCaps(Adapter):
    """AudioCaps as a retrieval task (``adapter: audiocaps``)."""

    name = "audiocaps"
    title = "AudioCaps"
    layout = "train.csv, val.csv, test.csv (or dataset/*.csv) and a folder of clips"
    kinds = ("retrieval",)
    args = {"metadata_dir": Str(None, doc="folder of the CSVs, relative to root (default: dataset/ or root)"),
            "audio_dir": Str(".", doc="folder of the clips, relative to root (searched recursively)")}

    def check(self, args, ctx, path="args"):
        before = len(ctx.problems)
        out = super().check(args, ctx, path)
        if len(ctx.problems) == before and out.get("root"):
            meta = metadata_dir(Path(out["root"]), out.get("metadata_dir"))
            lacking = [name for name in CSVS.values() if not (meta / name).is_file()]
            if lacking:
                ctx.error(f"{path}.root", f"expected the {self.title} folder ({self.layout}), found {meta} "
                          f"without {', '.join(lacking)}")
        return out

    def metadata_files(self, args):
        meta = metadata_dir(Path(args["root"]), args.get("metadata_dir"))
        return [str(meta / name) for name in CSVS.values()]

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = metadata_dir(root, args.get("metadata_dir"))
        audio = (root / args.get("audio_dir", ".")).resolve()
        index = AudioIndex(audio, missing_ok=True)
        by_id: dict[tuple[str, str], Clip] = {}
        for split, name in CSVS.items():
            for _, row in caption_rows(meta / name):
                ytid, start_s = row["youtube_id"], int(float(row["start_time"]))
                clip_id = f"{ytid}_{start_s}"
                record = by_id.get((split, clip_id))
                if record is None:
                    file = index.find(audio_stems(row))
                    record = by_id[split, clip_id] = Clip(id=clip_id, path=str(file or audio / f"{ytid}.wav"),
                                                          split=split, captions=[])
                record.captions.append(row["caption"])
        splits_of: dict[str, int] = {}
        for _, clip_id in by_id:
            splits_of[clip_id] = splits_of.get(clip_id, 0) + 1
        for (split, clip_id), record in by_id.items():
            if splits_of[clip_id] > 1:  # the same segment in two splits: keep both, ids made distinct
                record.id = f"{split}-{clip_id}"
        return list(by_id.values())
