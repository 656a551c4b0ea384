"""WavCaps: the released JSON files (one per subset) plus the audio by id.

Official layout (huggingface.co/datasets/cvssp/WavCaps)::

    json_files/BBC_Sound_Effects/bbc_final.json
    json_files/SoundBible/sb_final.json
    json_files/FreeSound/fsd_final.json
    json_files/AudioSet_SL/as_final.json

Each is ``{"num_captions_per_audio": 1, "data": [{"id", "caption", "audio", "duration",
...}]}``. ``caption`` is the ChatGPT-written caption; BBC, SoundBible and FreeSound entries
also carry the original ``description`` (kept as ``original_caption``), FreeSound its user
``tags``. ``audio`` (or ``wav_path``) is a placeholder in the release; the audio (the
``Zip_files`` archives, extracted) is found by id: ``<id>.flac`` / ``.wav`` / ... Ids of
AudioSet_SL end in ``.wav`` (``Y<youtube id>.wav``); the extension is dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import HarnessError
from harness.sources._common import (AudioIndex, Clip, Clips, Pathlike, SourceReport, as_paths, build_cuts,
                                     require_file, split_list, youtube_id)
from harness.registry import Component
from harness.schema import PathArg

COMPONENT = Component(
    kind="source",
    target="read_wavcaps",
    version="1",
    doc="WavCaps: the JSON files of its subsets and their audio",
    options={
        "json_files": PathArg(must="file", many=True, doc="the subsets' JSON files"),
        "audio_dir": PathArg(None, must="dir", mapping=True, doc="a folder, or a mapping of subset to folder"),
    },
)

# JSON file stem -> subset name, and subset -> the prefix of its cut ids.
SUBSETS = {"bbc_final": "BBC_Sound_Effects", "sb_final": "SoundBible", "fsd_final": "FreeSound",
           "as_final": "AudioSet_SL"}
ID_PREFIX = {"BBC_Sound_Effects": "bbc", "SoundBible": "soundbible", "FreeSound": "freesound",
             "AudioSet_SL": "audioset_sl"}
WHAT = 'a WavCaps JSON file {"data": [{"id", "caption", ...}]}'


def subset_of(path: Path) -> str:
    """The WavCaps subset a JSON file holds: by its official name, else its folder's, else its stem."""
    if path.stem in SUBSETS:
        return SUBSETS[path.stem]
    if path.parent.name in ID_PREFIX:
        return path.parent.name
    return path.stem


def read_wavcaps(json_files: Pathlike | Sequence[Pathlike], audio_dir: Pathlike | Mapping[str, Pathlike] | None = None,
                 *, source: str = "wavcaps"):
    """WavCaps JSON files + audio → ``(CutSet, SourceReport)``.

    ``audio_dir``: a folder, or ``{subset: folder}``. With one folder, a subfolder whose
    name starts with the subset's name (case-insensitive, e.g. ``BBC_Sound_Effects_flac``)
    is that subset's audio, else the whole folder is searched. Ids of different subsets
    can collide (SoundBible and FreeSound are both numeric), so cut ids are
    ``{prefix}_{id}`` with prefix bbc / soundbible / freesound / audioset_sl. ``custom``:
    the uniform fields plus ``subset``, ``wavcaps_id`` and, for AudioSet_SL, ``youtube_id``.
    """
    report = SourceReport(source)
    per_subset: dict[str, Clips] = {}
    for path in as_paths(json_files):
        subset = subset_of(path)
        clips = per_subset.setdefault(subset, Clips(report))
        for clip in _read_json(path, subset):
            clips.add(clip)
    cuts = []
    for subset, clips in per_subset.items():
        folder = _audio_folder(audio_dir, subset)
        cuts.extend(build_cuts(clips, report, AudioIndex(folder) if folder is not None else None))
    from lhotse import CutSet

    report.kept = len(cuts)
    return CutSet.from_cuts(cuts), report


def _read_json(path: Path, subset: str) -> list[Clip]:
    require_file(path, WHAT)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not JSON ({e}); expected {WHAT}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise HarnessError(f"{path}: no list under \"data\"; expected {WHAT}")
    prefix = ID_PREFIX.get(subset, subset.lower())
    out = []
    for i, entry in enumerate(doc["data"]):
        if not isinstance(entry, dict) or "id" not in entry or "caption" not in entry:
            raise HarnessError(f"{path}: data[{i}] has no \"id\" or no \"caption\"; expected {WHAT}")
        raw_id = str(entry["id"])
        stem = raw_id[:-len(os.path.splitext(raw_id)[1])] if os.path.splitext(raw_id)[1].lower() in (
            ".wav", ".flac", ".mp3") else raw_id
        explicit = entry.get("audio") or entry.get("wav_path")
        try:
            tags = split_list(entry.get("tags"), sep=",")
        except TypeError:
            raise HarnessError(f"{path}: data[{i}].tags is neither a list nor a string; expected {WHAT}") from None
        description = entry.get("description")
        out.append(Clip(
            id=f"{prefix}_{stem}",
            stems=[stem, raw_id],
            path=Path(explicit) if explicit and explicit != "wav_path" and os.path.isabs(explicit) else None,
            captions=[str(entry["caption"])] if entry["caption"] else [],
            original_caption=str(description).strip() if description else None,
            tags=tags,
            extra={"subset": subset, "wavcaps_id": raw_id,
                   "youtube_id": youtube_id(stem, strict=True) if subset == "AudioSet_SL" else None},
        ))
    return out


def _audio_folder(audio_dir, subset: str) -> Path | None:
    if audio_dir is None:
        return None
    if isinstance(audio_dir, Mapping):
        folder = audio_dir.get(subset)
        return Path(folder).expanduser() if folder is not None else None
    audio_dir = Path(audio_dir).expanduser()
    if audio_dir.is_dir():
        for child in sorted(audio_dir.iterdir()):
            if child.is_dir() and child.name.lower().startswith(subset.lower()):
                return child
    return audio_dir
