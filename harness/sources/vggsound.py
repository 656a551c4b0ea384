"""VGGSound: about 200k 10-second YouTube clips of 309 classes (single label).

Official metadata (www.robots.ox.ac.uk/~vgg/data/vggsound/)::

    root/vggsound.csv       no header: YouTube id, start second, label, split (train / test)
    root/<audio_dir>/...    the clips you obtained, named <ytid>_<start:06d>.<ext>
                            (also <ytid>_<start>.<ext> or <ytid>.<ext>), in any sub-folders

VGGSound is distributed as a list of YouTube segments; each user has a different subset
of the clips. The folder is indexed once; a clip of the list with no file is *missing*:
counted, listed in the dataset's report, and left out, never an error. Extract audio
from video first (``ffmpeg -i X.mp4 -vn -ac 1 -ar 16000 X.flac``): soundfile does not
read ``.mp4``, so undecodable files are reported as unreadable. When both exist, a
``.wav``/``.flac``/``.mp3`` is read rather than the ``.mp4``.

Splits: train and test from the CSV; ``valid_fraction`` (default 0.1) of the train
clips, chosen by a hash of the clip id (the same on every machine), become validation.
Clip id: ``<ytid>_<start:06d>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.registry import Component
from harness.sources._adapter import Adapter
from harness.sources._common import AudioIndex, Clip, MetadataError, read_csv
from harness.schema import Str

# A task file names it in `adapter: vggsound`.
COMPONENT = Component(kind="adapter", name="vggsound", target="VGGSound", version="1")


class VGGSound(Adapter):
    name = "vggsound"
    title = "VGGSound"
    layout = "vggsound.csv and a folder of clips named <ytid>_<start:06d>.<ext>"
    required = ("vggsound.csv",)
    valid_fraction = 0.1
    args = {"audio_dir": Str(".", doc="folder of the clips, relative to root (searched recursively)")}

    def records(self, args, log=print):
        root = Path(args["root"])
        meta = root / "vggsound.csv"
        audio_dir = (root / args.get("audio_dir", ".")).resolve()
        files = AudioIndex(audio_dir, missing_ok=True).paths()
        out, seen, duplicates = [], set(), 0
        for n, row in read_csv(meta, header=False):
            if len(row) < 4:
                raise MetadataError(f"{meta}:{n}: expected 4 fields (ytid, start, label, split), found {len(row)}")
            ytid, start, label, split = (c.strip() for c in row[:4])
            try:
                start_s = int(float(start))
            except ValueError:
                if n == 1:
                    continue  # a header line
                raise MetadataError(f"{meta}:{n}: start: expected seconds, found {start!r}") from None
            if split not in ("train", "test"):
                raise MetadataError(f"{meta}:{n}: split: expected 'train' or 'test', found {split!r}")
            clip_id = f"{ytid}_{start_s:06d}"
            if clip_id in seen:
                duplicates += 1
                continue
            seen.add(clip_id)
            path = next((files[s] for s in (clip_id, f"{ytid}_{start_s}", f"{ytid}_{start}", ytid) if s in files),
                        str(audio_dir / f"{clip_id}.wav"))
            out.append(Clip(id=clip_id, path=path, split=split, label=label))
        if duplicates:
            log(f"VGGSound: {duplicates} repeated (ytid, start) rows in {meta} kept once")
        return out
