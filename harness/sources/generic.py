"""Any corpus or task from one CSV, TSV or JSONL file: no code needed. One reader serves
both a pre-training source (``kind: generic``) and a probe task (``adapter: generic``).

Columns (CSV/TSV header) or keys (JSONL objects)::

    path               audio file (also ``audio``, ``file``, ``filename``, ``audio_path``);
                       relative paths start from the audio root (default: the file's folder)
    id                 clip id (source default: the audio file's stem; task default: the
                       path without its extension)
    caption            the main caption
    captions           further captions: a list in JSONL, ``separator``-separated in CSV
    original_caption   an original / weaker caption
    tags, labels       ``separator``-separated in CSV; a list (or such a string) in JSONL
    label              one class name (tasks)
    split              train / valid / test (also val, validation, dev; eval, evaluation)  ┐ tasks:
    fold               an integer (the task's test_fold / valid_fold pick test and valid)   ┘ one of

A source uses captions, original caption, tags and labels, and merges rows with the same
id (counted as duplicates). A task needs a label, labels or captions, and a split or a
fold for every row; both are checked when the study is planned.

Task file::

    adapter: generic
    args: {manifest: ~/data/birds/clips.csv, root: ~/data/birds/audio}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.manifest_io import iter_json_objects
from harness.registry import Component
from harness.schema import PathArg, Str
from harness.sources._adapter import Adapter
from harness.sources._common import (Clip, Clips, MetadataError, Pathlike, SourceReport, build_cuts, read_csv,
                                     split_alias, split_list)

VERSION = "1"  # the reader: both uses below

COMPONENTS = [
    Component(kind="source", target="read_generic", versions_of=("harness.sources.generic",),
              doc="any CSV or JSONL of path, caption(s), tags, labels",
              options={
                  "path": PathArg(must="file", doc="the CSV (.csv, .tsv) or JSONL (.jsonl, .jsonl.gz, .json) file"),
                  "audio_root": PathArg(None, must="dir",
                                        doc="relative audio paths are under this folder (default: the file's)"),
              }),
    # A task file names it in `adapter: generic`.
    Component(kind="adapter", target="Generic", versions_of=("harness.sources.generic",)),
]

PATH_KEYS = ("path", "audio", "file", "filename", "audio_path")
LABEL_KEYS = ("label", "labels", "caption", "captions")
SPLIT_KEYS = ("split", "fold")
WHAT = ("a CSV/TSV with a header, or JSON lines of objects, naming an audio path "
        f"({' / '.join(PATH_KEYS)}) and its caption(s), tags, label(s), split or fold")


def file_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``jsonl``, from the file name; an unknown suffix is a MetadataError."""
    name = str(path).lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    raise MetadataError(f"{path}: unknown format; expected {WHAT} (.csv, .tsv, .jsonl, .jsonl.gz or .json)")


def rows(path: Path, separator: str = ";") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row as ``(where, fields)``: ``path`` (as written), ``id``, ``caption``,
    ``original_caption``, ``label``, ``split`` and ``fold`` (as written, or None), and the
    lists ``more_captions`` (the ``captions`` column), ``tags`` and ``labels``. A row without an audio path, or with a list field that is neither
    a list nor a string, is a MetadataError naming the file and line."""
    fmt = file_format(path)
    if fmt == "jsonl":
        raw: Iterator[tuple[int, dict]] = iter_json_objects(path, WHAT, MetadataError)
    else:
        raw = iter(read_csv(path, (), WHAT, delimiter="\t" if fmt == "tsv" else ","))
    for lineno, row in raw:
        where = f"{path}:{lineno}"
        audio = next((row[k] for k in PATH_KEYS if row.get(k) not in (None, "")), None)
        if audio is None:
            raise MetadataError(f"{where}: no audio path ({' / '.join(PATH_KEYS)}); expected {WHAT}")
        try:
            fields = {"more_captions": split_list(row.get("captions"), separator),
                      "tags": split_list(row.get("tags"), separator),
                      "labels": split_list(row.get("labels"), separator)}
        except TypeError as e:
            raise MetadataError(f"{where}: {e}; expected {WHAT}") from None
        label = row.get("label")
        yield where, {
            "path": os.path.expanduser(str(audio).strip()),
            "id": str(row.get("id") or "").strip() or None,
            "caption": str(row["caption"]).strip() if str(row.get("caption") or "").strip() else None,
            "original_caption": row.get("original_caption") or None,
            "label": str(label).strip() if label not in (None, "") else None,
            "split": row.get("split") if row.get("split") not in (None, "") else None,
            "fold": row.get("fold") if row.get("fold") not in (None, "") else None,
            **fields,
        }


def columns(path: Path) -> list[str]:
    """The column names of a CSV/TSV file, or the keys of a JSONL file's first object."""
    if file_format(path) == "jsonl":
        for _, row in iter_json_objects(path, WHAT, MetadataError):
            return [str(k) for k in row]
        return []
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f, delimiter="\t" if file_format(path) == "tsv" else ","), [])
    return [c.strip() for c in header]


def read_generic(path: Pathlike, *, audio_root: Pathlike | None = None, source: str = "generic"):
    """A generic CSV, TSV or JSONL file → ``(CutSet, SourceReport)``."""
    path = Path(path).expanduser()
    root = Path(audio_root).expanduser() if audio_root is not None else path.parent
    report = SourceReport(source)
    clips = Clips(report)
    for _, row in rows(path):
        audio = Path(row["path"])
        if not audio.is_absolute():
            audio = root / audio
        captions = ([row["caption"]] if row["caption"] else []) + row["more_captions"]
        clips.add(Clip(id=row["id"] or audio.stem, path=audio, captions=captions,
                       original_caption=row["original_caption"], tags=row["tags"], labels=row["labels"]))
    return build_cuts(clips, report), report


def task_split(where: str, row: dict[str, Any]) -> tuple[str | None, int | None]:
    """A task row's ``(split, fold)``; a bad or missing value is a MetadataError."""
    if row["split"] is not None:
        split = split_alias(row["split"])
        if split is None:
            raise MetadataError(f"{where}: split: expected train, valid or test (or val, validation, dev, eval, "
                                f"evaluation), found {row['split']!r}")
        return split, None
    if row["fold"] is not None:
        try:
            return None, int(str(row["fold"]).strip())
        except ValueError:
            raise MetadataError(f"{where}: fold: expected an integer, found {row['fold']!r}") from None
    raise MetadataError(f"{where}: no split or fold")


class Generic(Adapter):
    """Any labelled or captioned clips as a probe task (``adapter: generic``)."""

    name = "generic"
    title = "generic"
    layout = "a CSV/TSV/JSONL file with path, label or labels, split or fold"
    kinds = ("multiclass", "multilabel", "retrieval")
    root_required = False
    args = {
        "manifest": PathArg(must="file", doc="the CSV, TSV or JSONL file (relative to the task file)"),
        "root": PathArg(None, must="dir", doc="folder that relative audio paths start from (default: the manifest's)"),
        "separator": Str(";", doc="separates several labels or captions in one CSV cell"),
    }

    def check(self, args, ctx, path="args"):
        """The arguments, then every row of the file, so that a bad split or a row without a
        label is one line when the study is planned, not a failed job."""
        before = len(ctx.problems)
        out = super().check(args, ctx, path)
        if len(ctx.problems) > before or not isinstance(out.get("manifest"), str):
            return out
        manifest = out["manifest"]
        try:
            keys = columns(Path(manifest))
        except HarnessError as exc:
            ctx.error(f"{path}.manifest", str(exc))
            return out
        lacking = [(group, what) for group, what in ((PATH_KEYS, "an audio path"), (LABEL_KEYS, "labels or captions"),
                                                    (SPLIT_KEYS, "a split or fold")) if not set(group) & set(keys)]
        for group, what in lacking:
            ctx.error(f"{path}.manifest", f"expected a column for {what} ({' / '.join(group)}) in {manifest}; "
                      f"found: {', '.join(keys) or 'nothing'}")
        if not lacking:
            try:
                self.records(out)
            except HarnessError as exc:
                ctx.error(f"{path}.manifest", str(exc))
        return out

    def metadata_files(self, args):
        return [args["manifest"]]

    def fingerprint(self, args):
        st = Path(args["manifest"]).stat()
        return {args["manifest"]: [st.st_size, st.st_mtime_ns]}

    def records(self, args, log=print):
        manifest = Path(args["manifest"])
        root = Path(args["root"]) if args.get("root") else manifest.parent
        sep = args.get("separator") or ";"
        out = []
        for where, row in rows(manifest, sep):
            path = row["path"]
            clip_id = row["id"] or os.path.splitext(path)[0].lstrip("/")
            labels = row["labels"] or None
            label = row["label"]
            if labels is None and label is not None:
                labels = split_list(label, sep)
            if label is None and labels:
                label = sep.join(labels)
            captions = row["more_captions"] + ([row["caption"]] if row["caption"] else [])
            if label is None and not captions:
                raise MetadataError(f"{where}: clip {clip_id!r} has no label, labels or caption")
            split, fold = task_split(f"{where}: clip {clip_id!r}", row)
            out.append(Clip(id=clip_id, path=path if os.path.isabs(path) else str(root / path), split=split,
                            fold=fold, label=label, labels=labels, captions=captions or None))
        return out
