"""CREMA-D: 7,442 acted sentences by 91 actors in 6 emotions (label: the emotion).

Official layout (github.com/CheyneyComputerScience/CREMA-D)::

    root/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav    e.g. 1001_DFA_ANG_XX.wav

The emotion comes from the file name: ANG anger, DIS disgust, FEA fear, HAP happy,
NEU neutral, SAD sad. CREMA-D has no official split; this adapter makes speaker-disjoint
folds: the actors, in ascending id order, are dealt round-robin into 5 folds (actor
1001 → fold 1, 1002 → fold 2, ..., 1006 → fold 1, ...), so no actor is in two folds.
The default split is fold 1 test, fold 2 valid, folds 3-5 train (about 60/20/20), and
every clip keeps its ``fold``. Clip id: the file name without extension.
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import AUDIO_EXTENSIONS, Clip, MetadataError

# A task file names it in `adapter: cremad`.
COMPONENT = Component(kind="adapter", name="cremad", target="CremaD", version="1")

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
FOLDS = 5


class CremaD(Adapter):
    name = "cremad"
    title = "CREMA-D"
    layout = "AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav"
    required = ("AudioWAV/",)
    folds = FOLDS

    def fingerprint(self, args):
        folder = Path(args["root"]) / "AudioWAV"
        st = folder.stat()
        return {"AudioWAV": [st.st_mtime_ns]}

    def records(self, args, log=print):
        folder = Path(args["root"]) / "AudioWAV"
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        parsed = []
        for p in files:
            parts = p.stem.split("_")
            if len(parts) != 4 or parts[2] not in EMOTIONS:
                raise MetadataError(f"{p}: expected a name <actor>_<sentence>_<emotion>_<level> with an emotion in "
                                    f"{', '.join(EMOTIONS)}")
            parsed.append((p, parts[0], EMOTIONS[parts[2]]))
        actors = sorted({a for _, a, _ in parsed}, key=lambda a: (len(a), a))
        fold_of = {a: i % FOLDS + 1 for i, a in enumerate(actors)}
        return [Clip(id=p.stem, path=str(p), fold=fold_of[actor], label=emotion, extra={"speaker": actor})
                for p, actor, emotion in parsed]
