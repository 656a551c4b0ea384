"""MusicCaps: 5,521 ten-second music clips from AudioSet, each with an expert caption (retrieval).

Official metadata (kaggle.com/datasets/googleai/musiccaps)::

    root/musiccaps-public.csv   ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,
                                author_id,is_balanced_subset,is_audioset_eval
    root/<audio_dir>/**/<ytid>.<ext>    (also <ytid>_<start_s>.<ext>, <ytid>_<start_s:06d>.<ext>,
                                         [<ytid>]-[<start_s>-<end_s>].<ext>)

Split: ``is_audioset_eval`` True → test (2,858 clips), False → train; ``valid_fraction``
(default 0.1) of train becomes valid. Clips you do not have are counted as missing. The
caption rides in ``custom.captions``, the aspect list in ``custom.aspects``. Clip id:
``<ytid>_<start_s>``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import AudioIndex, Clip, MetadataError, read_csv
from harness.schema import Str

# A task file names it in `adapter: musiccaps`.
COMPONENT = Component(kind="adapter", name="musiccaps", target="MusicCaps", version="1")


class MusicCaps(Adapter):
    name = "musiccaps"
    title = "MusicCaps"
    layout = "musiccaps-public.csv and a folder of clips named <ytid>.<ext>"
    required = ("musiccaps-public.csv",)
    kinds = ("retrieval",)
    valid_fraction = 0.1
    args = {"audio_dir": Str(".", doc="folder of the clips, relative to root (searched recursively)")}

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = root / "musiccaps-public.csv"
        audio = (root / args.get("audio_dir", ".")).resolve()
        files = AudioIndex(audio, missing_ok=True).paths()
        out = []
        for n, row in read_csv(meta, required=("ytid", "start_s", "caption", "is_audioset_eval")):
            ytid = row["ytid"].strip()
            try:
                start = int(float(row["start_s"]))
                end = int(float(row.get("end_s") or start + 10))
            except ValueError:
                raise MetadataError(f"{meta}:{n}: start_s: expected seconds, found {row['start_s']!r}") from None
            flag = row["is_audioset_eval"].strip().lower()
            if flag not in ("true", "false"):
                raise MetadataError(f"{meta}:{n}: is_audioset_eval: expected True or False, found {row['is_audioset_eval']!r}")
            clip_id = f"{ytid}_{start}"
            stems = (ytid, clip_id, f"{ytid}_{start:06d}", f"[{ytid}]-[{start}-{end}]")
            path = next((files[s] for s in stems if s in files), str(audio / f"{ytid}.wav"))
            try:
                aspects = [str(a) for a in ast.literal_eval(row.get("aspect_list") or "[]")]
            except (ValueError, SyntaxError):
                aspects = []
            out.append(Clip(id=clip_id, path=path, split="test" if flag == "true" else "train",
                            captions=[row["caption"].strip()], extra={"aspects": aspects} if aspects else {}))
        return out
