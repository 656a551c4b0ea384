"""Any dataset from one CSV, TSV or JSONL file: no code needed.

Columns (CSV/TSV header) or keys (JSONL objects)::

    path      audio file, absolute or relative to ``args.root`` (default: the file's folder)
    label     one class name                      ┐ at least one of these
    labels    class names separated by ';'        │ (in JSONL also a list)
    caption / captions  text (captions: ';'-separated in CSV, a list in JSONL) ┘
    split     train / valid / test (also val, validation, dev; eval, evaluation)  ┐ one of
    fold      an integer (the task's test_fold / valid_fold pick the test and valid folds) ┘
    id        optional clip id (default: the path without its extension)

Task file::

    adapter: generic
    args: {manifest: ~/data/birds/clips.csv, root: ~/data/birds/audio}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.registry import Component
from harness.adapters.base import Adapter, AdapterError, Record, expand, read_csv, split_alias
from harness.schema import Str

# A task file names it in `adapter: generic`.
COMPONENT = Component(kind="adapter", name="generic", target="Generic", version="1")

PATH_KEYS = ("path", "audio", "file", "filename", "audio_path")
LABEL_KEYS = ("label", "labels", "caption", "captions")
SPLIT_KEYS = ("split", "fold")


def _format(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "tsv" if lower.endswith(".tsv") else "csv"


class Generic(Adapter):
    name = "generic"
    title = "generic"
    layout = "a CSV/TSV/JSONL file with path, label or labels, split or fold"
    kinds = ("multiclass", "multilabel", "retrieval")
    root_required = False
    args = {
        "manifest": Str(doc="the CSV, TSV or JSONL file (relative to the task file, ~ and $VARS expanded)"),
        "root": Str(None, doc="folder that relative audio paths start from (default: the manifest's folder)"),
        "separator": Str(";", doc="separates several labels or captions in one CSV cell"),
    }

    def check(self, args, ctx, path="args"):
        out = super().check(args, ctx, path)
        if not isinstance(out.get("manifest"), str):
            return out
        text, unset = expand(out["manifest"])
        manifest = Path(text) if os.path.isabs(text) else (ctx.base_dir / text).resolve()
        hint = f"; set {' or '.join(unset)}" if unset else ""
        if not manifest.is_file():
            ctx.error(f"{path}.manifest", f"expected a CSV, TSV or JSONL file of clips ({self.layout}), "
                      f"found {out['manifest']!r} -> {str(manifest)!r} (no such file{hint})")
            return out
        out["manifest"] = str(manifest)
        if out.get("root"):
            text, unset = expand(out["root"])
            root = Path(text) if os.path.isabs(text) else (ctx.base_dir / text).resolve()
            if not root.is_dir():
                ctx.error(f"{path}.root", f"expected the folder that relative audio paths start from, found "
                          f"{out['root']!r} -> {str(root)!r} (no such folder)")
            out["root"] = str(root)
        try:
            keys = self._keys(manifest)
        except (OSError, ValueError) as exc:
            ctx.error(f"{path}.manifest", f"cannot read {manifest}: {exc}")
            return out
        for group, what in ((PATH_KEYS, "an audio path"), (LABEL_KEYS, "labels or captions"),
                            (SPLIT_KEYS, "a split or fold")):
            if not any(k in keys for k in group):
                ctx.error(f"{path}.manifest", f"expected a column for {what} ({' / '.join(group)}) in {manifest}; "
                          f"found: {', '.join(keys) or 'nothing'}")
        return out

    def _keys(self, manifest: Path) -> list[str]:
        if _format(str(manifest)) == "jsonl":
            with open(manifest, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise ValueError("expected one JSON object per line")
                        return [str(k) for k in row]
            return []
        with open(manifest, encoding="utf-8-sig") as f:
            first = f.readline()
        import csv

        return [c.strip() for c in next(csv.reader([first], delimiter="\t" if _format(str(manifest)) == "tsv" else ","), [])]

    def metadata_files(self, args):
        return [args["manifest"]]

    def fingerprint(self, args):
        st = Path(args["manifest"]).stat()
        return {args["manifest"]: [st.st_size, st.st_mtime_ns]}

    def _rows(self, manifest: Path):
        fmt = _format(str(manifest))
        if fmt == "jsonl":
            from harness.stages.manifests import iter_json_objects

            yield from iter_json_objects(manifest, "one JSON object per clip (path, label(s), split or fold)",
                                         AdapterError)
        else:
            for n, row in enumerate(read_csv(manifest, delimiter="\t" if fmt == "tsv" else ","), start=2):
                yield n, row

    def records(self, args, log=print):
        manifest = Path(args["manifest"])
        root = Path(args["root"]) if args.get("root") else manifest.parent
        sep = args.get("separator") or ";"

        def many(value):
            if value is None or value == "":
                return None
            if isinstance(value, list):
                return [str(v).strip() for v in value if str(v).strip()]
            return [v.strip() for v in str(value).split(sep) if v.strip()]

        out = []
        for n, row in self._rows(manifest):
            where = f"{manifest}:{n}"
            path = next((row[k] for k in PATH_KEYS if row.get(k) not in (None, "")), None)
            if path is None:
                raise AdapterError(f"{where}: expected an audio path ({' / '.join(PATH_KEYS)}), found none")
            path = os.path.expanduser(str(path).strip())
            full = path if os.path.isabs(path) else str(root / path)
            clip_id = str(row.get("id") or "").strip() or os.path.splitext(path)[0].lstrip("/")
            labels = many(row.get("labels"))
            label = row.get("label")
            label = str(label).strip() if label not in (None, "") else None
            if labels is None and label is not None:
                labels = many(label)
            if label is None and labels:
                label = sep.join(labels)
            captions = many(row.get("captions"))
            if row.get("caption") not in (None, ""):
                captions = (captions or []) + [str(row["caption"]).strip()]
            if label is None and not captions:
                raise AdapterError(f"{where}: clip {clip_id!r} has no label, labels or caption")
            split = fold = None
            if row.get("split") not in (None, ""):
                split = split_alias(row["split"])
                if split is None:
                    raise AdapterError(f"{where}: split: expected train, valid or test (or val, validation, dev, "
                                       f"eval, evaluation), found {row['split']!r}")
            elif row.get("fold") not in (None, ""):
                try:
                    fold = int(str(row["fold"]).strip())
                except ValueError:
                    raise AdapterError(f"{where}: fold: expected an integer, found {row['fold']!r}") from None
            else:
                raise AdapterError(f"{where}: clip {clip_id!r} has no split or fold")
            out.append(Record(id=clip_id, path=full, split=split, fold=fold, label=label, labels=labels,
                              captions=captions))
        return out
