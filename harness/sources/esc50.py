"""ESC-50: 2,000 five-second clips of 50 environmental sound classes in 5 folds.

Official layout (the ``ESC-50-master`` folder of github.com/karolpiczak/ESC-50)::

    root/meta/esc50.csv     filename,fold,target,category,esc10,src_file,take
    root/audio/<filename>   e.g. 1-100032-A-0.wav (44.1 kHz mono)

Label: ``category``. Split: the task's ``test_fold`` (default 1) is test, ``valid_fold``
(default 2) is validation, the other three folds are train; every clip keeps its ``fold``.
``subset: esc10`` keeps the ESC-10 clips only.
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import Clip, MetadataError, read_csv
from harness.schema import Str

# A task file names it in `adapter: esc50`.
COMPONENT = Component(kind="adapter", name="esc50", target="ESC50", version="1")


class ESC50(Adapter):
    name = "esc50"
    title = "ESC-50"
    layout = "meta/esc50.csv and audio/*.wav"
    required = ("meta/esc50.csv", "audio/")
    folds = 5
    args = {"subset": Str(None, choices=["esc10"], doc="esc10: only the ESC-10 clips (esc10 column True)")}

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = root / "meta" / "esc50.csv"
        out = []
        for n, row in read_csv(meta, required=("filename", "fold", "category")):
            try:
                fold = int(row["fold"])
            except ValueError:
                raise MetadataError(f"{meta}:{n}: fold: expected an integer, found {row['fold']!r}") from None
            if args.get("subset") == "esc10" and row.get("esc10", "").strip().lower() != "true":
                continue
            name = row["filename"].strip()
            out.append(Clip(id=Path(name).stem, path=str(root / "audio" / name), fold=fold,
                            label=row["category"].strip()))
        return out
