"""Clotho (v2): 15-30 second Freesound clips, five captions each (audio-text retrieval).

Official layout (zenodo.org/records/4783391, archives unpacked into one folder)::

    root/clotho_captions_development.csv    file_name,caption_1,...,caption_5
    root/clotho_captions_validation.csv     (absent in Clotho v1)
    root/clotho_captions_evaluation.csv
    root/development/<file_name>            (clotho_audio_development.7z; also
    root/validation/<file_name>              clotho_audio_<split>/ is accepted)
    root/evaluation/<file_name>

Splits: development → train, validation → valid, evaluation → test; without a validation
file, ``valid_fraction`` (default 0.1) of development becomes valid. Captions ride in
the manifest (``custom.captions``). Clip id: ``<split>/<file name without extension>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.adapters.base import Adapter, Record, read_csv

# A task file names it in `adapter: clotho`.
COMPONENT = Component(kind="adapter", name="clotho", target="Clotho", version="1")

PARTS = {"development": "train", "validation": "valid", "evaluation": "test"}


class Clotho(Adapter):
    name = "clotho"
    title = "Clotho"
    layout = "clotho_captions_{development,validation,evaluation}.csv and development/, evaluation/ audio"
    required = ("clotho_captions_development.csv", "clotho_captions_evaluation.csv")
    kinds = ("retrieval",)
    valid_fraction = 0.1

    def metadata_files(self, args):
        return [f"clotho_captions_{p}.csv" for p in PARTS]

    def records(self, args, log=print):
        root = Path(args["root"])
        out = []
        for part, split in PARTS.items():
            meta = root / f"clotho_captions_{part}.csv"
            if not meta.is_file():
                continue  # Clotho v1 has no validation split
            folder = next((d for d in (root / part, root / f"clotho_audio_{part}") if d.is_dir()), root / part)
            for row in read_csv(meta, required=("file_name", "caption_1")):
                name = row["file_name"].strip()
                captions = [row[k].strip() for k in sorted(row) if k and k.startswith("caption_") and (row[k] or "").strip()]
                out.append(Record(id=f"{part}/{Path(name).stem}", path=str(folder / name), split=split,
                                  captions=captions))
        return out
