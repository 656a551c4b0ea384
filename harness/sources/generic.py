"""A generic source: a CSV or JSONL file listing audio paths and their supervision.

Columns / keys (only ``path`` is required)::

    path               audio file; relative paths are taken from audio_root, else the file's folder
    id                 clip id (default: the audio file's stem)
    caption            the main caption
    captions           (JSONL only) a list of further captions of the same kind
    original_caption   an original / weaker caption
    tags               ';'-separated in CSV; a list (or a ';'-separated string) in JSONL
    labels             class names, the same way as tags

Rows with the same id merge (captions, tags and labels are united) and count as duplicates.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.sources._common import Clip, Clips, Pathlike, SourceReport, build_cuts, read_csv, require_file, split_list
from harness.registry import Component
from harness.schema import PathArg

COMPONENT = Component(
    kind="source",
    target="read_generic",
    version="1",
    doc="any CSV or JSONL of path, caption(s), tags, labels",
    options={
        "path": PathArg(must="file", doc="the CSV (.csv) or JSONL (.jsonl, .jsonl.gz, .json) file"),
        "audio_root": PathArg(None, must="dir", doc="relative audio paths are under this folder (default: the file's)"),
    },
)

WHAT_CSV = "a CSV with a header naming path and optionally id, caption, original_caption, tags, labels"
WHAT_JSONL = "JSON lines, each an object with path and optionally id, caption, captions, original_caption, tags, labels"


def read_generic(path: Pathlike, *, audio_root: Pathlike | None = None, source: str = "generic"):
    """A generic CSV (``.csv``) or JSONL (``.jsonl``, ``.jsonl.gz``, ``.json``) → ``(CutSet, SourceReport)``."""
    path = Path(path).expanduser()
    root = Path(audio_root).expanduser() if audio_root is not None else path.parent
    name = path.name.lower()
    if name.endswith(".csv"):
        rows = [(lineno, row, WHAT_CSV) for lineno, row in read_csv(path, ("path",), WHAT_CSV)]
    elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        rows = [(lineno, row, WHAT_JSONL) for lineno, row in _read_jsonl(path)]
    else:
        raise HarnessError(f"{path}: unknown format (expected a .csv or .jsonl file listing audio paths)")
    report = SourceReport(source)
    clips = Clips(report)
    for lineno, row, what in rows:
        where = f"{path}:{lineno}"
        if not row.get("path"):
            raise HarnessError(f"{where}: empty path; expected {what}")
        audio = Path(str(row["path"]))
        if not audio.is_absolute():
            audio = root / audio
        try:
            tags = split_list(row.get("tags"))
            labels = split_list(row.get("labels"))
            more = row.get("captions")
            captions = [row.get("caption")] + ([more] if isinstance(more, str) else split_list(more))
        except TypeError as e:
            raise HarnessError(f"{where}: {e}; expected {what}") from None
        clips.add(Clip(
            id=str(row.get("id") or audio.stem), path=audio,
            captions=[str(c) for c in captions if c], original_caption=row.get("original_caption") or None,
            tags=tags, labels=labels,
        ))
    return build_cuts(clips, report), report


def _read_jsonl(path: Path):
    from harness.stages.manifests import iter_json_objects

    require_file(path, WHAT_JSONL)
    for lineno, row in iter_json_objects(path, WHAT_JSONL):
        if "path" not in row:
            raise HarnessError(f"{path}:{lineno}: no \"path\" key; expected {WHAT_JSONL}")
        yield lineno, row
