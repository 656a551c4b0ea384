"""NSynth: 305,979 four-second notes; the task is the instrument family (11 classes).

Official layout (magenta.tensorflow.org/datasets/nsynth, the json/wav archives)::

    root/nsynth-train/examples.json    {note_str: {instrument_family_str, pitch, ...}, ...}
    root/nsynth-train/audio/<note_str>.wav
    root/nsynth-valid/...              (same)
    root/nsynth-test/...               (same)

Splits: the three folders (train, valid, test). Label: ``label`` (default
``instrument_family_str``; also ``instrument_source_str`` or ``pitch``). The train set is
large; ``max_per_split: {train: N}`` keeps N train notes chosen by a hash of their name.
Clip id: ``note_str``.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import Clip, MetadataError
from harness.schema import Str

# A task file names it in `adapter: nsynth`.
COMPONENT = Component(kind="adapter", name="nsynth", target="NSynth", version="1")

FOLDERS = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}


class NSynth(Adapter):
    name = "nsynth"
    title = "NSynth"
    layout = "nsynth-{train,valid,test}/examples.json and audio/"
    required = tuple(f"{f}/examples.json" for f in FOLDERS.values())
    args = {"label": Str("instrument_family_str", choices=["instrument_family_str", "instrument_source_str", "pitch"])}

    def records(self, args, log=print):
        root = Path(args["root"])
        key = args.get("label", "instrument_family_str")
        out = []
        for split, folder in FOLDERS.items():
            meta = root / folder / "examples.json"
            try:
                examples = json.loads(meta.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise MetadataError(f"{meta}:{exc.lineno}: invalid JSON: {exc.msg}") from None
            for note, info in sorted(examples.items()):
                if key not in info:
                    raise MetadataError(f"{meta}: note {note!r} has no {key!r}")
                out.append(Clip(id=note, path=str(root / folder / "audio" / f"{note}.wav"), split=split,
                                label=str(info[key])))
        return out
