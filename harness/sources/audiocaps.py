"""AudioCaps: the official caption CSVs plus the user's audio folder.

Official layout (github.com/cdjkim/audiocaps, ``dataset/`` and ``dataset2.0/``)::

    train.csv  val.csv  test.csv        audiocap_id,youtube_id,start_time,caption

Train has one caption per clip, val and test five (one row each). Rows of the same clip
(same ``youtube_id`` and ``start_time``) merge into one cut with all its captions.

Audio is the user's: one file per clip anywhere under ``audio_dir``, named by any of
``{youtube_id}``, ``Y{youtube_id}``, ``{youtube_id}_{start}``, ``{youtube_id}_{start}_{end}``
(start/end spelt ``30``, ``30.0``, ``30.000`` or in ms), their ``Y`` forms, or
``{audiocap_id}`` (any of the row's audiocap ids), with extension ``.wav``, ``.flac``,
``.mp3``, ``.ogg`` or ``.opus``. The file is taken to be the 10 s clip itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.sources._common import AudioIndex, Clip, Clips, Pathlike, SourceReport, as_paths, build_cuts, read_csv, youtube_stems
from harness.registry import Component
from harness.schema import PathArg

COMPONENT = Component(
    kind="source",
    target="read_audiocaps",
    version="1",
    doc="AudioCaps: caption CSVs and audio named by YouTube id",
    options={
        "captions": PathArg(must="file", many=True, doc="the caption CSVs (train.csv, val.csv, test.csv)"),
        "audio_dir": PathArg(None, must="dir", many=True, doc="folder(s) of the audio"),
    },
)

COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
WHAT = "an AudioCaps caption CSV"


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
        for _, row in read_csv(csv_path, COLUMNS, WHAT):
            ytid, start = row["youtube_id"], row["start_time"]
            first = starts_of.setdefault(ytid, start)
            clip_id = ytid if _same_time(first, start) else f"{ytid}_{start}"
            clips.add(Clip(
                id=clip_id,
                stems=youtube_stems(ytid, start) + [row["audiocap_id"]],
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
