"""The released UTS manifests (Hugging Face ``AudenAI/UTS``, MIT), read as they are.

Layout: ``manifest/*.jsonl.gz`` (or ``.jsonl``), one Lhotse ``MonoCut`` per line, for the
CaptionStew 400K subset. Each cut carries, in ``custom`` (the dataset card shows them on
the cut's supervision; both places are read, the cut's first)::

    audio_tag          list of UTS tags        -> tags
    caption            strong Qwen3-Omni caption -> caption, captions
    original_caption   the source corpus's caption -> original_caption

The cuts are kept as released (id, start, duration, supervisions, every custom key); the
uniform fields are added to ``custom``. Audio is not part of the release: recording paths
that are relative are joined to ``audio_root``; absolute ones that begin with
``strip_prefix`` have it replaced by ``audio_root``. A cut with no ``recording`` is given
one from ``<audio_root>/**/<cut id>.<ext>`` (header decoded with Lhotse).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.sources._common import (AudioIndex, Pathlike, SourceReport, as_paths, recording_from_file,
                                     require_file, split_list, uniform_custom, youtube_id)
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
        "strip_prefix": Str(None, doc="a recording path prefix replaced by audio_root"),
        "check_audio": Bool(True, doc="drop (and count) cuts whose audio file is missing"),
    },
)

WHAT = "a Lhotse MonoCut manifest (.jsonl or .jsonl.gz, one cut per line)"


def read_uts(manifests: Pathlike | Sequence[Pathlike], *, audio_root: Pathlike | None = None,
             strip_prefix: str | None = None, check_audio: bool = True, source: str = "uts"):
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
    index: AudioIndex | None = None
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
                missing = _reroot(rec, root, strip_prefix, check_audio)
                if missing is not None:
                    report.missing(missing)
                    continue
            elif rec is None:
                found = None
                if root is not None:
                    index = index or AudioIndex(root)
                    found = index.find([d["id"], Path(d["id"]).name])
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
    return CutSet.from_cuts(cuts), report


def _reroot(rec: dict, root: Path | None, strip_prefix: str | None, check: bool) -> str | None:
    """Rewrite the recording's file paths in place; the first missing path, or None."""
    for src in rec.get("sources") or []:
        if src.get("type") != "file":
            continue
        p = str(src.get("source", ""))
        if strip_prefix and p.startswith(strip_prefix) and root is not None:
            p = str(root / p[len(strip_prefix):].lstrip("/"))
        elif not os.path.isabs(p) and root is not None:
            p = str(root / p)
        src["source"] = os.path.abspath(p) if root is not None else p
        if check and not os.path.isfile(src["source"]):
            return src["source"]
    return None


def _iter_lines(path: Path):
    from harness.stages.manifests import iter_json_objects

    require_file(path, WHAT)
    yield from iter_json_objects(path, WHAT)
