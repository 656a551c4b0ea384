"""Clotho: the caption CSVs plus the audio folders, in the layout of the Zenodo release.

Official layout (Clotho v2.1, zenodo.org/records/4783391), with the 7z archives extracted
into the same folder::

    root/clotho_captions_development.csv   file_name,caption_1,...,caption_5
    root/clotho_captions_validation.csv
    root/clotho_captions_evaluation.csv
    root/development/<file_name>           (from clotho_audio_development.7z)
    root/validation/<file_name>
    root/evaluation/<file_name>

Each clip has five captions. Audio is looked for at ``<audio root>/<split>/<file_name>``
(or ``clotho_audio_<split>/``), then by the file name's stem anywhere under the audio root
(so converted ``.flac`` files are found too). One reader serves both uses:

- **Source** (:func:`read_clotho`, ``kind: clotho``): cut id the file name's stem.
- **Task** (:class:`Clotho`, ``adapter: clotho``, retrieval): clip id
  ``<split>/<stem>``; development → train, validation → valid, evaluation → test; without
  a validation file (Clotho v1), ``valid_fraction`` (default 0.1) of development is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError
from harness.registry import Component
from harness.schema import List, PathArg, Str
from harness.sources._adapter import Adapter
from harness.sources._common import AudioIndex, Clip, Clips, Pathlike, SourceReport, build_cuts, read_csv

VERSION = "1"  # the reader: both uses below

COMPONENTS = [
    Component(kind="source", target="read_clotho", versions_of=("harness.sources.clotho",),
              doc="Clotho: caption CSVs per split and the split folders of audio",
              options={
                  "root": PathArg(must="dir", doc="the folder holding clotho_captions_<split>.csv"),
                  "splits": List(Str(choices=["development", "validation", "evaluation"]), default=None,
                                 unique=True, doc="splits to read (default: every split found)"),
                  "audio_dir": PathArg(None, must="dir", doc="where the split folders are, if not root"),
              }),
    # A task file names it in `adapter: clotho`.
    Component(kind="adapter", target="Clotho", versions_of=("harness.sources.clotho",)),
]

SPLITS = ("development", "validation", "evaluation")
COLUMNS = ("file_name", "caption_1")
WHAT = "a Clotho caption CSV (file_name, caption_1, ..., caption_5)"
TASK_SPLITS = {"development": "train", "validation": "valid", "evaluation": "test"}


def caption_rows(root: Path, split: str) -> list[tuple[str, list[str]]]:
    """``(file name, captions)`` of one split's caption CSV (every non-empty ``caption_N``)."""
    rows = read_csv(root / f"clotho_captions_{split}.csv", COLUMNS, WHAT)
    return [(row["file_name"], [row[k] for k in sorted(row) if k.startswith("caption_") and row[k]])
            for _, row in rows]


def split_folder(audio_root: Path, split: str) -> Path:
    """Where a split's audio is: ``<split>/``, else ``clotho_audio_<split>/``."""
    return next((d for d in (audio_root / split, audio_root / f"clotho_audio_{split}") if d.is_dir()),
                audio_root / split)


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
        folder = split_folder(audio_root, split)
        for name, captions in caption_rows(root, split):
            clips.add(Clip(
                id=Path(name).stem, path=folder / name, stems=[Path(name).stem], captions=captions,
                extra={"split": split, "file_name": name},
            ))
    index = AudioIndex(audio_root) if audio_root.is_dir() else None
    return build_cuts(clips, report, index), report


class Clotho(Adapter):
    """Clotho as a retrieval task (``adapter: clotho``)."""

    name = "clotho"
    title = "Clotho"
    layout = "clotho_captions_{development,validation,evaluation}.csv and development/, evaluation/ audio"
    required = ("clotho_captions_development.csv", "clotho_captions_evaluation.csv")
    kinds = ("retrieval",)
    valid_fraction = 0.1

    def metadata_files(self, args):
        return [f"clotho_captions_{split}.csv" for split in TASK_SPLITS]

    def records(self, args, log=print):
        root = Path(args["root"])
        out = []
        for split, task_split in TASK_SPLITS.items():
            if not (root / f"clotho_captions_{split}.csv").is_file():
                continue  # Clotho v1 has no validation split
            folder = split_folder(root, split)
            for name, captions in caption_rows(root, split):
                out.append(Clip(id=f"{split}/{Path(name).stem}", path=str(folder / name), split=task_split,
                                captions=captions))
        return out
