"""What every dataset adapter shares: the clip record, argument checks, split assignment.

An adapter reads one dataset's official layout under a root folder the user gives and
returns one :class:`Record` per clip: id, audio path, split or fold, label, labels or
captions. It reads metadata only (CSV, JSON, file names); the dataset stage then checks
each clip's audio and writes a Lhotse CutSet. Adapters import no torch and no audio
library, so validating a study that names them stays fast.
"""

from __future__ import annotations

import csv
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.schema import Context, Map, Node, Num, Obj, Str, expand  # noqa: F401  (expand: re-exported)

VERSION = "1"

SPLITS = ("train", "valid", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".m4a", ".mp4")
# Spellings of the three splits found in official metadata.
SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "valid",
                 "valid": "valid", "val": "valid", "validation": "valid",
                 "test": "test", "eval": "test", "evaluation": "test"}


class AdapterError(ValueError):
    """Metadata that cannot be read as the dataset's official layout (one line, with file and row)."""


@dataclass
class Record:
    """One clip of a task, before its audio is checked."""

    id: str
    path: str
    split: str | None = None  # train / valid / test
    fold: int | None = None
    label: str | None = None
    labels: list[str] | None = None
    captions: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def custom(self) -> dict[str, Any]:
        """The fields the manifest carries in ``cut.custom`` (the mini suite's names, plus fold and captions)."""
        out: dict[str, Any] = {"split": self.split}
        for key in ("fold", "label", "labels", "captions"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out


# ---------------------------------------------------------------------------------------
# Paths given in task files: ~, $VAR, ${VAR} and ${VAR:-default}.

def split_alias(value: str) -> str | None:
    return SPLIT_ALIASES.get(str(value).strip().lower())


def stable_fraction(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts (same on every machine and run)."""
    return zlib.crc32("/".join(map(str, parts)).encode()) / 2**32


def read_csv(path: Path, delimiter: str = ",", header: bool = True,
             required: Iterable[str] = ()) -> list[dict[str, str]] | list[list[str]]:
    """Rows of a CSV file: dicts (``header``) or lists; a missing column is an AdapterError."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        if not header:
            return [row for row in csv.reader(f, delimiter=delimiter) if row and any(c.strip() for c in row)]
        reader = csv.DictReader(f, delimiter=delimiter)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = fields
        missing = [c for c in required if c not in fields]
        if missing:
            raise AdapterError(f"{path}: missing column(s) {', '.join(missing)}; found: {', '.join(fields) or 'nothing'}")
        return [row for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]


def index_audio(folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> dict[str, str]:
    """Audio files under ``folder`` (recursively) by file stem.

    When a stem exists with several extensions, the earliest in ``extensions`` wins (a
    ``.wav`` or ``.flac`` extracted next to the original ``.mp4`` is the one read).
    """
    found: dict[str, tuple[int, str]] = {}
    if not folder.is_dir():
        return {}
    rank = {e: i for i, e in enumerate(extensions)}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            r = rank.get(ext.lower())
            if r is not None and (stem not in found or r < found[stem][0]):
                found[stem] = (r, os.path.join(dirpath, name))
    return {stem: path for stem, (_, path) in found.items()}


def with_audio_extension(path: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> Path:
    """``path`` if it exists, else the first existing file with its stem and an audio extension
    (``.../00001.wav`` listed, ``.../00001.flac`` on disk), else ``path`` itself (then missing)."""
    if path.is_file():
        return path
    for ext in extensions:
        other = path.with_suffix(ext)
        if other.is_file():
            return other
    return path


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
    def records(self, args: dict[str, Any], log=print) -> list[Record]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, args: dict[str, Any], log=print) -> list[Record]:
        """Records with a split for every clip (folds and carve-outs applied)."""
        return finalize(self.records(args, log=log), args)


def finalize(records: list[Record], args: dict[str, Any]) -> list[Record]:
    """Give every record a split: folds → splits, valid carved out of train, per-split caps."""
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise AdapterError(f"clip id {r.id!r} appears twice")
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
        by_split: dict[str, list[Record]] = {}
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
