"""VoxCeleb1 and VoxCeleb2 speaker identification (label: the speaker id, e.g. ``id10001``).

VoxCeleb1 (official identification split, 1,251 speakers)::

    root/iden_split.txt           lines "<1|2|3> idXXXXX/<video>/<clip>.wav"  (1 train, 2 valid, 3 test)
    root/wav/idXXXXX/<video>/<clip>.wav

VoxCeleb2 has no official identification split (its dev and test sets have disjoint
speakers, made for verification). The adapter reads, in order:

1. a split list in the VoxCeleb1 format, when ``split_list`` names one (relative to root);
2. otherwise it builds one from the audio tree ``root/<audio_dir>/idXXXXX/<video>/<clip>.<ext>``
   (default ``audio_dir: dev/aac``, the official dev set): for every speaker, its videos are
   ordered by a hash of ``speaker/video``; with 3 or more videos, about 10% of them
   (at least one) go to test, as many to valid, the rest to train, so train and test
   clips of a speaker never share a video. Speakers with fewer than 3 videos are train only.

VoxCeleb2 audio is ``.m4a`` (AAC), which soundfile cannot decode: convert it to ``.wav``
or ``.flac`` in place (same paths, new extension); a listed ``.wav`` is also found as
``.flac`` and vice versa. Undecodable files are reported, never fatal. Clip id: the path
``idXXXXX/<video>/<clip>`` without extension.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.registry import Component
from harness.schema import Str
from harness.sources._adapter import Adapter
from harness.sources._common import AUDIO_EXTENSIONS, Clip, MetadataError, stable_fraction, with_audio_extension

COMPONENTS = [  # task files name them in `adapter:`
    Component(kind="adapter", name="voxceleb1", target="VoxCeleb1", version="1"),
    Component(kind="adapter", name="voxceleb2", target="VoxCeleb2", version="1"),
]

SPLIT_CODES = {"1": "train", "2": "valid", "3": "test"}


def read_split_list(path: Path, audio: Path) -> list[Clip]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[0] not in SPLIT_CODES:
                raise MetadataError(f"{path}:{n}: expected '<1|2|3> idXXXXX/<video>/<clip>.wav', found {line.strip()!r}")
            rel = parts[1]
            clip_id = os.path.splitext(rel)[0]
            out.append(Clip(id=clip_id, path=str(with_audio_extension(audio / rel)), split=SPLIT_CODES[parts[0]],
                            label=rel.split("/")[0]))
    return out


def split_from_tree(audio: Path, valid_share: float = 0.1, test_share: float = 0.1) -> list[Clip]:
    """Video-disjoint per-speaker splits from an ``id/video/clip`` tree (see the module docstring)."""
    out = []
    for speaker in sorted(p for p in audio.iterdir() if p.is_dir()):
        videos = sorted((v for v in speaker.iterdir() if v.is_dir()),
                        key=lambda v: stable_fraction(speaker.name, v.name))
        n = len(videos)
        n_test = max(1, round(test_share * n)) if n >= 3 else 0
        n_valid = max(1, round(valid_share * n)) if n >= 3 else 0
        for i, video in enumerate(videos):
            split = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
            for clip in sorted(video.iterdir()):
                if clip.suffix.lower() in AUDIO_EXTENSIONS:
                    out.append(Clip(id=f"{speaker.name}/{video.name}/{clip.stem}", path=str(clip), split=split,
                                    label=speaker.name))
    return out


class VoxCeleb1(Adapter):
    name = "voxceleb1"
    title = "VoxCeleb1"
    layout = "iden_split.txt and wav/idXXXXX/<video>/<clip>.wav"
    required = ()  # split_list and audio_dir are checked instead (both can be moved)
    args = {"split_list": Str("iden_split.txt", doc="the identification split list, relative to root"),
            "audio_dir": Str("wav", doc="folder the split list's paths start from, relative to root")}

    def check(self, args, ctx, path="args"):
        before = len(ctx.problems)
        out = super().check(args, ctx, path)
        if len(ctx.problems) > before or not out.get("root"):
            return out
        root = Path(out["root"])
        if out.get("split_list") and not (root / out["split_list"]).is_file():
            ctx.error(f"{path}.split_list", f"expected the {self.title} identification split list (lines "
                      f"'<1|2|3> idXXXXX/<video>/<clip>.wav') under {root}, found {out['split_list']!r} (no such file)")
        if not (root / out["audio_dir"]).is_dir():
            ctx.error(f"{path}.audio_dir", f"expected the folder of idXXXXX/<video>/<clip> audio under {root}, "
                      f"found {out['audio_dir']!r} (no such folder)")
        return out

    def metadata_files(self, args):
        return [args["split_list"]] if args.get("split_list") else []

    def records(self, args, log=print):
        root = Path(args["root"])
        audio = root / args["audio_dir"]
        if args.get("split_list"):
            return read_split_list(root / args["split_list"], audio)
        records = split_from_tree(audio)
        if not records:
            raise MetadataError(f"{audio}: no audio files in idXXXXX/<video>/<clip>.<ext> folders")
        return records


class VoxCeleb2(VoxCeleb1):
    name = "voxceleb2"
    title = "VoxCeleb2"
    layout = "dev/aac/idXXXXX/<video>/<clip>.<ext> (converted to wav/flac), optionally a split list"
    args = {"split_list": Str(None, doc="a split list in the VoxCeleb1 format; none: video-disjoint split from the tree"),
            "audio_dir": Str("dev/aac", doc="the speaker folders' parent, relative to root")}
