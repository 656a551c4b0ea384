"""What every probe-dataset adapter shares: argument checks, folds and splits.

An adapter reads one dataset's official layout under a root folder the user gives and
returns one :class:`~harness.sources._common.Clip` per clip: id, audio path, split or
fold, label, labels or captions — the same record, CSV reader and audio index as the
pre-training corpora (:mod:`harness.sources._common`), and for a corpus that is both
(AudioCaps, Clotho, a generic CSV) the same parsing code. It reads metadata only (CSV,
JSON, file names); the dataset stage then checks each clip's audio and writes a Lhotse
CutSet. Adapters import no torch and no audio library, so validating a study that names
them stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.schema import Context, Map, Node, Num, Obj, Str, expand
from harness.sources._common import SPLITS, Clip, MetadataError, stable_fraction

VERSION = "2"  # shared checks, splits, audio checks (2: truncated clips): part of every adapter version


# ---------------------------------------------------------------------------------------
# Adapters.

# Arguments every adapter accepts (an adapter may leave some out, see ``COMMON``).
COMMON: dict[str, Node] = {
    "test_fold": Num(1, integer=True, min=1, doc="k-fold tasks: the fold that is the test split"),
    "valid_fold": Num(2, integer=True, min=1, doc="k-fold tasks: the fold that is the validation split"),
    "valid_fraction": Num(None, min=0.0, max=0.5,
                          doc="datasets with no validation split: share of train moved to valid (by clip id hash)"),
    "max_per_split": Map(Num(None, integer=True, min=1), default={},
                         doc="keep at most N clips of a split (by clip id hash), e.g. {train: 20000}"),
}


class Adapter:
    """A dataset's official layout → records. Subclasses set the class attributes and ``records``."""

    name = ""
    title = ""  # the dataset's name as people write it
    layout = ""  # what the root holds, one line, for error messages
    required: tuple[str, ...] = ()  # paths under root that must exist ('/' at the end: a folder)
    args: dict[str, Node] = {}  # adapter-specific arguments (besides root and COMMON)
    kinds: tuple[str, ...] = ("multiclass",)  # task kinds its clips serve
    folds: int | None = None  # the official number of folds, for k-fold datasets
    valid_fraction: float | None = None  # default share of train carved out as valid
    root_required = True

    # -- validation -----------------------------------------------------------------------
    def schema(self) -> Obj:
        fields: dict[str, Node] = {}
        if self.root_required:
            fields["root"] = Str(doc=f"the {self.title} folder: {self.layout}")
        fields.update(self.args)
        fields.update(COMMON)
        return Obj(fields, default={})

    def check(self, args: dict[str, Any], ctx: Context, path: str = "args") -> dict[str, Any]:
        """Validated args (root expanded to an absolute folder); problems go to ``ctx``."""
        out = self.schema().validate(args, path, ctx)
        if not isinstance(out, dict):
            return {}
        if self.root_required and isinstance(out.get("root"), str):
            out["root"] = self.check_root(out["root"], ctx, f"{path}.root")
        if self.folds and isinstance(out.get("test_fold"), int) and isinstance(out.get("valid_fold"), int):
            for key in ("test_fold", "valid_fold"):
                if out[key] > self.folds:
                    ctx.error(f"{path}.{key}", f"expected a fold in 1..{self.folds}, found {out[key]}")
            if out["test_fold"] == out["valid_fold"]:
                ctx.error(f"{path}.valid_fold", f"expected a fold other than test_fold, found {out['valid_fold']}")
        if out.get("valid_fraction") is None:
            out["valid_fraction"] = self.valid_fraction
        for split in out.get("max_per_split") or {}:
            if split not in SPLITS:
                ctx.error(f"{path}.max_per_split.{split}", f"expected one of {', '.join(SPLITS)}")
        return out

    def check_root(self, value: str, ctx: Context, path: str) -> str:
        text, unset = expand(value)
        expected = f"expected the {self.title} folder ({self.layout})"
        if unset:
            names = list(dict.fromkeys(unset))
            ctx.error(path, f"{expected}, found {value!r} with {' and '.join(names)} not set "
                      f"(set {' or '.join(names)}, or give args.root)")
            return text
        root = (ctx.base_dir / text).resolve() if not os.path.isabs(text) else Path(text)
        if not root.is_dir():
            shown = repr(value) if value == str(root) else f"{value!r} -> {str(root)!r}"
            ctx.error(path, f"{expected}, found {shown} (no such folder)")
            return str(root)
        lacking = [r for r in self.required if not (root / r.rstrip("/")).exists()]
        if lacking:
            ctx.error(path, f"{expected}, found {str(root)!r} without {', '.join(lacking)}")
        return str(root)

    def fingerprint(self, args: dict[str, Any]) -> dict[str, Any]:
        """Size and modification time of the metadata files, so an updated dataset gets a new key."""
        out = {}
        for rel in self.metadata_files(args):
            p = Path(args["root"]) / rel if "root" in args else Path(rel)
            try:
                st = p.stat()
                out[str(rel)] = [st.st_size, st.st_mtime_ns]
            except OSError:
                out[str(rel)] = None
        return out

    def metadata_files(self, args: dict[str, Any]) -> list[str]:
        return [r for r in self.required if not r.endswith("/")]

    # -- reading --------------------------------------------------------------------------
    def records(self, args: dict[str, Any], log=print) -> list[Clip]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, args: dict[str, Any], log=print) -> list[Clip]:
        """Records with a split for every clip (folds and carve-outs applied)."""
        return finalize(self.records(args, log=log), args)


def finalize(records: list[Clip], args: dict[str, Any]) -> list[Clip]:
    """Give every record a split: folds → splits, valid carved out of train, per-split caps."""
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise MetadataError(f"clip id {r.id!r} appears twice")
        seen.add(r.id)
        if r.split is None and r.fold is not None:
            r.split = ("test" if r.fold == args.get("test_fold", 1)
                       else "valid" if r.fold == args.get("valid_fold", 2) else "train")
    fraction = args.get("valid_fraction")
    if fraction and not any(r.split == "valid" for r in records):
        for r in records:
            if r.split == "train" and stable_fraction("valid", r.id) < fraction:
                r.split = "valid"
    caps = args.get("max_per_split") or {}
    if caps:
        by_split: dict[str, list[Clip]] = {}
        for r in records:
            by_split.setdefault(r.split or "", []).append(r)
        keep: set[str] = set()
        for split, rows in by_split.items():
            cap = caps.get(split)
            if cap is not None and len(rows) > cap:
                rows = sorted(rows, key=lambda r: stable_fraction("cap", r.id))[:cap]
            keep.update(r.id for r in rows)
        records = [r for r in records if r.id in keep]
    return records
