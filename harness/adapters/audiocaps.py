"""AudioCaps: about 50k 10-second AudioSet clips with human captions (audio-text retrieval).

Official metadata (github.com/cdjkim/audiocaps, ``dataset/``)::

    root/<metadata_dir>/train.csv   audiocap_id,youtube_id,start_time,caption  (one caption per clip)
    root/<metadata_dir>/val.csv     (five captions per clip, one row each)
    root/<metadata_dir>/test.csv    (same)
    root/<audio_dir>/...            your clips, in any sub-folders, named <youtube_id>.<ext>,
                                    Y<youtube_id>.<ext>, <youtube_id>_<start>.<ext> or <audiocap_id>.<ext>

``metadata_dir`` defaults to ``dataset`` when ``root/dataset/train.csv`` exists, else the
root itself. As for VGGSound, clips you do not have are counted as missing and left out.
Each clip's captions ride in the manifest (``custom.captions``); split train / valid / test.
Clip id: ``<youtube_id>_<start>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.adapters.base import Adapter, AdapterError, Record, index_audio, read_csv
from harness.schema import Str

# A task file names it in `adapter: audiocaps`.
COMPONENT = Component(kind="adapter", name="audiocaps", target="AudioCaps", version="1")

CSVS = {"train": "train.csv", "valid": "val.csv", "test": "test.csv"}


def metadata_dir(root: Path, value: str | None) -> Path:
    if value:
        return root / value
    return root / "dataset" if (root / "dataset" / "train.csv").is_file() else root


class AudioCaps(Adapter):
    name = "audiocaps"
    title = "AudioCaps"
    layout = "train.csv, val.csv, test.csv (or dataset/*.csv) and a folder of clips"
    kinds = ("retrieval",)
    args = {"metadata_dir": Str(None, doc="folder of the CSVs, relative to root (default: dataset/ or root)"),
            "audio_dir": Str(".", doc="folder of the clips, relative to root (searched recursively)")}

    def check(self, args, ctx, path="args"):
        before = len(ctx.problems)
        out = super().check(args, ctx, path)
        if len(ctx.problems) == before and out.get("root"):
            meta = metadata_dir(Path(out["root"]), out.get("metadata_dir"))
            lacking = [name for name in CSVS.values() if not (meta / name).is_file()]
            if lacking:
                ctx.error(f"{path}.root", f"expected the {self.title} folder ({self.layout}), found {meta} "
                          f"without {', '.join(lacking)}")
        return out

    def metadata_files(self, args):
        meta = metadata_dir(Path(args["root"]), args.get("metadata_dir"))
        return [str(meta / name) for name in CSVS.values()]

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = metadata_dir(root, args.get("metadata_dir"))
        audio = (root / args.get("audio_dir", ".")).resolve()
        files = index_audio(audio)
        by_id: dict[tuple[str, str], Record] = {}
        for split, name in CSVS.items():
            path = meta / name
            for n, row in enumerate(read_csv(path, required=("youtube_id", "start_time", "caption")), start=2):
                ytid, start = row["youtube_id"].strip(), row["start_time"].strip()
                try:
                    start_s = int(float(start))
                except ValueError:
                    raise AdapterError(f"{path}:{n}: start_time: expected seconds, found {start!r}") from None
                clip_id = f"{ytid}_{start_s}"
                record = by_id.get((split, clip_id))
                if record is None:
                    stems = (ytid, f"Y{ytid}", clip_id, f"{ytid}_{start_s:06d}", f"Y{ytid}_{start_s}",
                             (row.get("audiocap_id") or "").strip())
                    file = next((files[s] for s in stems if s and s in files), str(audio / f"{ytid}.wav"))
                    record = by_id[split, clip_id] = Record(id=clip_id, path=file, split=split, captions=[])
                record.captions.append(row["caption"].strip())
        splits_of: dict[str, int] = {}
        for _, clip_id in by_id:
            splits_of[clip_id] = splits_of.get(clip_id, 0) + 1
        for (split, clip_id), record in by_id.items():
            if splits_of[clip_id] > 1:  # the same segment in two splits: keep both, ids made distinct
                record.id = f"{split}-{clip_id}"
        return list(by_id.values())
