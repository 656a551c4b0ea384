"""UrbanSound8K: 8,732 urban sound excerpts (<= 4 s) of 10 classes in 10 folds.

Official layout (the ``UrbanSound8K`` folder of the release archive)::

    root/metadata/UrbanSound8K.csv   slice_file_name,fsID,start,end,salience,fold,classID,class
    root/audio/fold<N>/<slice_file_name>

Label: ``class``. Split: ``test_fold`` (default 1) is test, ``valid_fold`` (default 2) is
validation, the other eight folds are train; every clip keeps its ``fold``. (The official
protocol is 10-fold cross-validation over the predefined folds, never a random split.)
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import Clip, MetadataError, read_csv

# A task file names it in `adapter: urbansound8k`.
COMPONENT = Component(kind="adapter", name="urbansound8k", target="UrbanSound8K", version="1")


class UrbanSound8K(Adapter):
    name = "urbansound8k"
    title = "UrbanSound8K"
    layout = "metadata/UrbanSound8K.csv and audio/fold1..fold10/"
    required = ("metadata/UrbanSound8K.csv", "audio/")
    folds = 10

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = root / "metadata" / "UrbanSound8K.csv"
        out = []
        for n, row in read_csv(meta, required=("slice_file_name", "fold", "class")):
            try:
                fold = int(row["fold"])
            except ValueError:
                raise MetadataError(f"{meta}:{n}: fold: expected an integer, found {row['fold']!r}") from None
            name = row["slice_file_name"].strip()
            out.append(Clip(id=Path(name).stem, path=str(root / "audio" / f"fold{fold}" / name), fold=fold,
                            label=row["class"].strip()))
        return out
