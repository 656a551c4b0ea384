"""The released UTS manifests (Hugging Face ``eureka1500/UTS``, MIT), read as they are.

Layout: ``manifest/*.jsonl.gz`` (or ``.jsonl``), one Lhotse ``MonoCut`` per line, for the
CaptionStew 400K subset. Each cut carries, in ``custom`` (the dataset card shows them on
the cut's supervision; both places are read, the cut's first)::

    audio_tag          list of UTS tags        -> tags
    caption            strong Qwen3-Omni caption -> caption, captions
    original_caption   the source corpus's caption -> original_caption

The cuts are kept as released (id, start, duration, supervisions, every custom key); the
uniform fields are added to ``custom``. Audio is not part of the release: in it,
``recording.sources[0].source`` holds the *name* of the corpus the clip comes from
(``"audioset"``, ``"vggsound"``, ...), and the authors' README tells users to point it at
their own audio. Each recording's file is found, in this order:

1. in ``index``, a CSV of ``recording_id,path`` for any other layout;
2. a source that is already an existing absolute path is kept; one that begins with
   ``strip_prefix`` has it replaced by ``audio_root``;
3. a corpus name: ``<audio_root>/<corpus>/<recording id>.<ext>`` (wav, flac, mp3, ogg or
   opus), else a file of that stem anywhere under ``<audio_root>/<corpus>/``;
4. any other relative path is joined to ``audio_root``.

A cut with no ``recording`` is given one from ``<audio_root>/**/<cut id>.<ext>`` (header
decoded with Lhotse). Missing audio is counted per corpus in the report
(``notes.missing_by_corpus``); when no cut has audio, reading fails with one line saying
what was looked for, and where.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.sources._common import (AUDIO_EXTENSIONS, AudioIndex, Pathlike, SourceReport, as_paths, read_csv,
                                     recording_from_file, require_file, split_list, uniform_custom, youtube_id)
from harness.registry import Component
from harness.schema import Bool, PathArg, Str

COMPONENT = Component(
    kind="source",
    target="read_uts",
    version="1",
    doc="the UTS release: Lhotse cut manifests with caption, original_caption and audio_tag",
    options={
        "manifests": PathArg(must="file", many=True, doc="the released cut manifests (JSONL, .jsonl.gz)"),
        "audio_root": PathArg(None, must="dir", doc="the folder the recordings are found under"),
        "index": PathArg(None, must="file", doc="a CSV of recording_id,path: where each recording is, any layout"),
        "strip_prefix": Str(None, doc="a recording path prefix replaced by audio_root"),
        "check_audio": Bool(True, doc="drop (and count) cuts whose audio file is missing"),
    },
)

WHAT = "a Lhotse MonoCut manifest (.jsonl or .jsonl.gz, one cut per line)"


def read_uts(manifests: Pathlike | Sequence[Pathlike], *, audio_root: Pathlike | None = None,
             index: Pathlike | None = None, strip_prefix: str | None = None, check_audio: bool = True,
             source: str = "uts"):
    """UTS manifests → ``(CutSet, SourceReport)``.

    ``check_audio``: drop (and count as missing) cuts whose recording files do not exist;
    with False, every cut is kept as released (e.g. for the text-only caption → tag
    pipeline). Repeated cut ids keep the first and count as duplicates. ``custom`` gains
    the uniform fields, plus ``original_captions`` when the release has a list there and
    ``youtube_id`` for ids spelt ``Y<youtube id>``.
    """
    from lhotse import MonoCut, CutSet

    report = SourceReport(source)
    root = Path(audio_root).expanduser() if audio_root is not None else None
    finder = _Finder(root, _read_index(Path(index).expanduser()) if index is not None else {}, strip_prefix)
    audio_index: AudioIndex | None = None
    seen: set[str] = set()
    cuts = []
    for path in as_paths(manifests):
        for lineno, d in _iter_lines(path):
            where = f"{path}:{lineno}"
            report.rows += 1
            kind = d.pop("type", "MonoCut")
            if kind not in ("MonoCut", "Cut") or not isinstance(d.get("id"), str):
                raise HarnessError(f"{where}: a {kind} without a string id; expected {WHAT}")
            if d["id"] in seen:
                report.duplicates += 1
                continue
            seen.add(d["id"])
            custom = dict(d.get("custom") or {})
            sups = d.get("supervisions") or []
            fields = {**((sups[0].get("custom") or {}) if sups and isinstance(sups[0], dict) else {}), **custom}
            try:
                tags = split_list(fields.get("audio_tag"), sep=",")
            except TypeError:
                raise HarnessError(f"{where}: custom audio_tag is neither a list nor a string; expected {WHAT}") from None
            original = fields.get("original_caption")
            originals = [str(o) for o in original if o] if isinstance(original, list) else None
            extra: dict[str, Any] = {"original_captions": originals, "youtube_id": youtube_id(d["id"], strict=True)}
            caption = fields.get("caption")
            d["custom"] = {**custom, **uniform_custom(
                source, captions=[str(caption)] if caption else [],
                original_caption=originals[0] if originals else (str(original) if original else None),
                tags=tags, **extra)}

            rec = d.get("recording")
            if isinstance(rec, dict):
                missing = finder.place(rec, check_audio)
                if missing is not None:
                    report.missing(missing)
                    continue
            elif rec is None:
                found = None
                if root is not None:
                    audio_index = audio_index or AudioIndex(root)
                    found = audio_index.find([d["id"], Path(d["id"]).name])
                if found is not None:
                    recording = recording_from_file(Path(os.path.abspath(found)), d["id"], report)
                    if recording is None:
                        continue
                    d["recording"] = recording.to_dict()
                    d.setdefault("start", 0.0)
                    d.setdefault("duration", recording.duration)
                    d.setdefault("channel", 0)
                elif check_audio:
                    report.missing(d["id"])
                    continue
            try:
                cuts.append(MonoCut.from_dict(d))
            except (TypeError, KeyError, ValueError, AttributeError) as e:
                raise HarnessError(f"{where}: not a Lhotse MonoCut ({type(e).__name__}: {e}); expected {WHAT}") from None
    report.kept = len(cuts)
    if finder.missing:
        report.notes["missing_by_corpus"] = dict(sorted(finder.missing.items()))
    if check_audio and report.rows and not cuts:
        raise HarnessError(f"{source}: none of the {report.rows - report.duplicates} cuts has its audio: "
                           f"looked for {finder.looked_for()}; set audio_root to the folder holding one folder "
                           "per corpus, or give index (a CSV of recording_id,path)")
    return CutSet.from_cuts(cuts), report


class _Finder:
    """Where each released recording's file is (see the module docstring), with what was
    missed counted per corpus."""

    def __init__(self, root: Path | None, index: dict[str, str], strip_prefix: str | None):
        self.root, self.index, self.strip_prefix = root, index, strip_prefix
        self.corpora: dict[str, AudioIndex | None] = {}
        self.missing: dict[str, int] = {}
        self.example: str | None = None

    def place(self, rec: dict, check: bool) -> str | None:
        """Rewrite the recording's file sources in place; the first missing one, or None."""
        for src in rec.get("sources") or []:
            if src.get("type") != "file":
                continue
            given = str(src.get("source", ""))
            corpus, path = self._find(str(rec.get("id", "")), given)
            src["source"] = path
            if check and not os.path.isfile(path):
                self.missing[corpus] = self.missing.get(corpus, 0) + 1
                self.example = self.example or path
                return path
        return None

    def _find(self, recording_id: str, given: str) -> tuple[str, str]:
        """(the corpus it counts under, the path) of one recording source."""
        if recording_id in self.index:
            return "index", self.index[recording_id]
        if os.path.isabs(given) and (self.root is None or os.path.exists(given)):
            return "paths", given
        if self.strip_prefix and given.startswith(self.strip_prefix) and self.root is not None:
            return "paths", os.path.abspath(self.root / given[len(self.strip_prefix):].lstrip("/"))
        if self.root is None:
            return "paths", given
        if _is_corpus_name(given):
            folder = self.root / given
            for ext in AUDIO_EXTENSIONS:
                candidate = folder / f"{recording_id}{ext}"
                if candidate.is_file():
                    return given, str(candidate.resolve())
            if given not in self.corpora:  # one recursive walk per corpus, only when needed
                self.corpora[given] = AudioIndex(folder) if folder.is_dir() else None
            found = self.corpora[given].find([recording_id]) if self.corpora[given] is not None else None
            return given, str((found or folder / f"{recording_id}.wav").resolve())
        return "paths", os.path.abspath(self.root / given)

    def looked_for(self) -> str:
        if self.root is None:
            return f"the paths in the manifests (e.g. {self.example}), with no audio_root set"
        corpora = ", ".join(f"{c}: {n}" for c, n in sorted(self.missing.items())) or "none"
        return (f"{self.root}/<corpus>/<recording id>.{{{','.join(e[1:] for e in AUDIO_EXTENSIONS)}}} "
                f"(e.g. {self.example}; missing per corpus: {corpora})")


def _is_corpus_name(value: str) -> bool:
    """A release's source field naming a corpus (``audioset``), not a path to a file."""
    return bool(value) and "/" not in value and "\\" not in value and not Path(value).suffix


def _read_index(path: Path) -> dict[str, str]:
    """A CSV of ``recording_id,path`` (relative paths are relative to the CSV's folder)."""
    rows = read_csv(path, ("recording_id", "path"), "a CSV of recording_id,path")
    return {row["recording_id"]: str((path.parent / Path(row["path"]).expanduser()).resolve())
            for _, row in rows}


def _iter_lines(path: Path):
    from harness.stages.manifests import iter_json_objects

    require_file(path, WHAT)
    yield from iter_json_objects(path, WHAT)
