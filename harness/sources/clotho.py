"""Clotho: the caption CSVs plus the audio folders, in the layout of the Zenodo release.

Official layout (Clotho v2.1, zenodo.org/records/4783391), with the 7z archives extracted
into the same folder::

    root/clotho_captions_development.csv   file_name,caption_1,...,caption_5
    root/clotho_captions_validation.csv
    root/clotho_captions_evaluation.csv
    root/development/<file_name>           (from clotho_audio_development.7z)
    root/validation/<file_name>
    root/evaluation/<file_name>

Each clip has five captions. Audio is looked for at ``<audio root>/<split>/<file_name>``,
then by the file name's stem anywhere under the audio root (so converted ``.flac`` files
are found too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError
from harness.sources._common import AudioIndex, Clip, Clips, Pathlike, SourceReport, build_cuts, read_csv
from harness.registry import Component
from harness.schema import List, PathArg, Str

COMPONENT = Component(
    kind="source",
    target="read_clotho",
    version="1",
    doc="Clotho: caption CSVs per split and the split folders of audio",
    options={
        "root": PathArg(must="dir", doc="the folder holding clotho_captions_<split>.csv"),
        "splits": List(Str(choices=["development", "validation", "evaluation"]), default=None, unique=True,
                       doc="splits to read (default: every split found)"),
        "audio_dir": PathArg(None, must="dir", doc="where the split folders are, if not root"),
    },
)

SPLITS = ("development", "validation", "evaluation")
COLUMNS = ("file_name",) + tuple(f"caption_{i}" for i in range(1, 6))
WHAT = "a Clotho caption CSV"


def read_clotho(root: Pathlike, *, splits: Sequence[str] | None = None, audio_dir: Pathlike | None = None,
                source: str = "clotho"):
    """Clotho under ``root`` → ``(CutSet, SourceReport)``.

    ``splits``: which of development / validation / evaluation to read (default: every
    split whose ``clotho_captions_{split}.csv`` is in ``root``). ``audio_dir``: where the
    split folders are, if not ``root``. Cut id: the file name's stem. ``custom``: the
    uniform fields (``caption`` = ``caption_1``, ``captions`` = all five) plus ``split``
    and ``file_name``.
    """
    root = Path(root).expanduser()
    audio_root = Path(audio_dir).expanduser() if audio_dir is not None else root
    if splits is None:
        splits = [s for s in SPLITS if (root / f"clotho_captions_{s}.csv").is_file()]
        if not splits:
            raise HarnessError(f"{root}: no clotho_captions_{{{','.join(SPLITS)}}}.csv found (expected the Clotho "
                               "caption CSVs)")
    report = SourceReport(source)
    clips = Clips(report)
    for split in splits:
        for _, row in read_csv(root / f"clotho_captions_{split}.csv", COLUMNS, WHAT):
            name = row["file_name"]
            clips.add(Clip(
                id=Path(name).stem, path=audio_root / split / name, stems=[Path(name).stem],
                captions=[row[f"caption_{i}"] for i in range(1, 6)],
                extra={"split": split, "file_name": name},
            ))
    index = AudioIndex(audio_root) if audio_root.is_dir() else None
    return build_cuts(clips, report, index), report
