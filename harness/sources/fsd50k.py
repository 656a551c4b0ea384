"""FSD50K: 51,197 Freesound clips, 200 AudioSet-ontology classes, multi-label (metric: mAP).

Official layout (the Zenodo release, unzipped into one folder)::

    root/FSD50K.ground_truth/dev.csv    fname,labels,mids,split   (split: train / val)
    root/FSD50K.ground_truth/eval.csv   fname,labels,mids
    root/FSD50K.dev_audio/<fname>.wav
    root/FSD50K.eval_audio/<fname>.wav

Labels: the comma-separated ``labels`` column (class names such as ``Speech`` or
``Bicycle_bell``). Splits: dev ``train`` → train, dev ``val`` → valid, eval → test. Clip
ids are ``dev-<fname>`` and ``eval-<fname>`` (file names repeat across the two sets).
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import Clip, MetadataError, read_csv

# A task file names it in `adapter: fsd50k`.
COMPONENT = Component(kind="adapter", name="fsd50k", target="FSD50K", version="1")


class FSD50K(Adapter):
    name = "fsd50k"
    title = "FSD50K"
    layout = "FSD50K.ground_truth/{dev,eval}.csv, FSD50K.dev_audio/, FSD50K.eval_audio/"
    required = ("FSD50K.ground_truth/dev.csv", "FSD50K.ground_truth/eval.csv")
    kinds = ("multilabel",)

    def records(self, args, log=print):
        root = Path(args["root"])
        truth = root / "FSD50K.ground_truth"
        out = []
        for part, audio in (("dev", "FSD50K.dev_audio"), ("eval", "FSD50K.eval_audio")):
            meta = truth / f"{part}.csv"
            need = ("fname", "labels", "split") if part == "dev" else ("fname", "labels")
            for n, row in read_csv(meta, required=need):
                if part == "dev":
                    split = {"train": "train", "val": "valid"}.get(row["split"].strip())
                    if split is None:
                        raise MetadataError(f"{meta}:{n}: split: expected 'train' or 'val', found {row['split']!r}")
                else:
                    split = "test"
                labels = [x.strip() for x in row["labels"].split(",") if x.strip()]
                if not labels:
                    raise MetadataError(f"{meta}:{n}: labels: expected at least one label")
                fname = row["fname"].strip()
                out.append(Clip(id=f"{part}-{fname}", path=str(root / audio / f"{fname}.wav"), split=split,
                                labels=labels))
        return out
