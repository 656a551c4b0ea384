"""MagnaTagATune: 25,863 29-second music clips with 188 tags; the top-50 tags (metric: mAP).

Official layout (mirg.city.ac.uk/codeapps/the-magnatagatune-dataset)::

    root/annotations_final.csv    tab-separated, quoted: clip_id, 188 tag columns (0/1), mp3_path
    root/mp3/<d>/<name>.mp3       <d> is one of 0-9, a-f (the three mp3.zip parts unzipped
                                  into root/mp3/; unzipped straight into root also works)

Labels: the ``top_k`` (default 50) most frequent tags over the whole annotation file
(ties broken by name). Clips with none of them are dropped (``drop_untagged``), as is
common practice. Split: by the first character of ``mp3_path`` (its folder), the
standard 12:1:3 split of Dieleman & Schrauwen (2014): folders 0-b train, c valid, d-f
test (15,250 / 1,529 / 4,332 clips with top-50 tags). The folders are arguments
(``train_dirs``, ``valid_dirs``, ``test_dirs``). soundfile (libsndfile >= 1.1) decodes
the mp3 files; the few empty or broken mp3s of the release are reported as unreadable.
Clip id: ``clip_id``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import Clip, MetadataError, read_csv
from harness.schema import Bool, Num, Str

# A task file names it in `adapter: mtat`.
COMPONENT = Component(kind="adapter", name="mtat", target="MTAT", version="1")


class MTAT(Adapter):
    name = "mtat"
    title = "MagnaTagATune"
    layout = "annotations_final.csv and mp3/<0-f>/*.mp3"
    required = ("annotations_final.csv",)
    kinds = ("multilabel",)
    args = {
        "top_k": Num(50, integer=True, min=1, doc="keep the most frequent K tags"),
        "drop_untagged": Bool(True, doc="leave out clips with none of the kept tags"),
        "audio_dir": Str("mp3", doc="folder holding 0/ .. f/, relative to root (root itself if absent)"),
        "train_dirs": Str("0123456789ab"),
        "valid_dirs": Str("c"),
        "test_dirs": Str("def"),
    }

    def check(self, args, ctx, path="args"):
        out = super().check(args, ctx, path)
        dirs = [out.get(k) or "" for k in ("train_dirs", "valid_dirs", "test_dirs")]
        if all(isinstance(d, str) for d in dirs) and len(set("".join(dirs))) != len("".join(dirs)):
            ctx.error(f"{path}.test_dirs", f"expected the train, valid and test folders to be disjoint, found {dirs}")
        return out

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = root / "annotations_final.csv"
        rows = read_csv(meta, delimiter="\t", required=("clip_id", "mp3_path"))
        if not rows:
            return []
        tags = [c for c in rows[0][1] if c not in ("clip_id", "mp3_path")]
        counts: Counter = Counter()
        for _, row in rows:
            counts.update(t for t in tags if (row.get(t) or "").strip() == "1")
        kept = sorted(counts, key=lambda t: (-counts[t], t))[: args.get("top_k", 50)]
        kept_set = set(kept)
        audio = root / args.get("audio_dir", "mp3")
        if not audio.is_dir():
            audio = root
        split_of = {}
        for split, key in (("train", "train_dirs"), ("valid", "valid_dirs"), ("test", "test_dirs")):
            for ch in args.get(key) or "":
                split_of[ch] = split
        out = []
        for n, row in rows:
            rel = (row.get("mp3_path") or "").strip()
            if not rel:
                raise MetadataError(f"{meta}:{n}: mp3_path: expected a path, found nothing")
            split = split_of.get(rel[0])
            if split is None:
                continue  # a folder in no split
            labels = [t for t in tags if t in kept_set and (row.get(t) or "").strip() == "1"]
            if not labels and args.get("drop_untagged", True):
                continue
            out.append(Clip(id=row["clip_id"].strip(), path=str(audio / rel), split=split, labels=labels))
        return out
