"""What every data reader shares — pre-training corpora and probe datasets alike: the one
clip record (:class:`Clip`), the one CSV reader, the one audio index, splits, YouTube ids,
the report, the uniform supervision fields, and turning clip records into a Lhotse cut.

Nothing here imports lhotse or torch at import time; :func:`build_cuts` imports lhotse
when it runs, so listing or validating readers stays fast.
"""

from __future__ import annotations

import csv
import os
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from harness.errors import HarnessError

# Extensions the readers look for, in order of preference when one clip has several files
# (a .wav or .flac extracted next to the original .mp4 is the one read). libsndfile
# (through soundfile, which lhotse uses first) decodes the first five; the others need one
# of lhotse's other backends. A file no backend decodes is reported as unreadable, never
# skipped silently.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".m4a", ".mp4")

SPLITS = ("train", "valid", "test")
# Spellings of the three splits found in official metadata.
SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "valid",
                 "valid": "valid", "val": "valid", "validation": "valid",
                 "test": "test", "eval": "test", "evaluation": "test"}
EXAMPLES = 5  # ids / paths kept in a report per kind of problem

# The fields every cut of every source carries in ``cut.custom``.
UNIFORM_FIELDS = ("caption", "captions", "original_caption", "tags", "labels", "source")

Pathlike = str | os.PathLike


class MetadataError(HarnessError, ValueError):
    """Metadata that cannot be read as the corpus's layout: one line, naming the file and row."""


def split_alias(value: str) -> str | None:
    """``train``, ``valid`` or ``test`` for any of their usual spellings, else None."""
    return SPLIT_ALIASES.get(str(value).strip().lower())


def stable_fraction(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts (same on every machine and run)."""
    return zlib.crc32("/".join(map(str, parts)).encode()) / 2**32


@dataclass
class SourceReport:
    """What reading one source did: every row is accounted for.

    ``rows`` counts metadata rows read (caption lines, segments, JSON entries, cuts);
    ``duplicates`` counts rows that named a clip already read (their captions, tags and
    labels were merged into that clip); every remaining clip is either ``kept``,
    ``missing_audio`` (no file found) or ``unreadable_audio`` (a file whose header could
    not be decoded). So ``rows == kept + missing_audio + unreadable_audio + duplicates``.
    """

    source: str
    rows: int = 0
    kept: int = 0
    missing_audio: int = 0
    missing_examples: list[str] = field(default_factory=list)
    unreadable_audio: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def missing(self, what: str) -> None:
        self.missing_audio += 1
        if len(self.missing_examples) < EXAMPLES:
            self.missing_examples.append(what)

    def unreadable(self, what: str) -> None:
        self.unreadable_audio += 1
        if len(self.unreadable_examples) < EXAMPLES:
            self.unreadable_examples.append(what)

    def summary(self) -> str:
        """One line for logs: ``audiocaps: 5 rows, 2 clips kept, 1 missing audio (e.g. x), ...``."""
        parts = [f"{self.rows} rows", f"{self.kept} clips kept"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate rows merged")
        if self.missing_audio:
            parts.append(f"{self.missing_audio} missing audio (e.g. {', '.join(self.missing_examples[:3])})")
        if self.unreadable_audio:
            parts.append(f"{self.unreadable_audio} unreadable audio (e.g. {self.unreadable_examples[0]})")
        for key, value in self.notes.items():
            parts.append(f"{key}: {value}")
        return f"{self.source}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def uniform_custom(source: str, *, caption: str | None = None, captions: Sequence[str] = (),
                   original_caption: str | None = None, tags: Iterable[str] = (),
                   labels: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """The ``cut.custom`` of a source clip: the uniform fields, then ``extra`` (split, youtube_id, ...).

    ``caption`` defaults to the first of ``captions``; ``captions`` always holds ``caption``.
    """
    captions = [c for c in captions if c]
    if caption is None and captions:
        caption = captions[0]
    if caption and caption not in captions:
        captions.insert(0, caption)
    out = {"caption": caption or None, "captions": captions, "original_caption": original_caption or None,
           "tags": _unique(tags), "labels": _unique(labels), "source": source}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        item = str(item).strip()
        if item:
            seen.setdefault(item, None)
    return list(seen)


def split_list(value: Any, sep: str = ";") -> list[str]:
    """A list field given as a list, or as a ``sep``-separated string (empty parts dropped)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(sep) if p.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    raise TypeError(f"expected a list or a {sep!r}-separated string, found {type(value).__name__}")


def as_paths(value: Pathlike | Sequence[Pathlike]) -> list[Path]:
    if isinstance(value, (str, os.PathLike)):
        return [Path(value).expanduser()]
    return [Path(v).expanduser() for v in value]


def require_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise MetadataError(f"{path}: no such file (expected {what})")


# ---------------------------------------------------------------------------------------
# CSV files with a header row.

def read_csv(path: Path, required: Sequence[str] = (), what: str = "a CSV file", *, delimiter: str = ",",
             header: bool = True) -> list[tuple[int, Any]]:
    """The rows of a CSV (or, with ``delimiter="\\t"``, TSV) file as ``(line number, row)``:
    with ``header``, a dict of stripped values keyed by the stripped column names, else the
    list of stripped fields. Blank rows are skipped. A missing file or column, a row with
    more fields than the header, bad text or bad quoting is a :class:`MetadataError` naming
    the file (and line) and ``what`` was expected."""
    require_file(path, what)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if not header:
                reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
                return [(reader.line_num, [c.strip() for c in row]) for row in reader
                        if any(c.strip() for c in row)]
            reader = csv.DictReader(f, delimiter=delimiter, skipinitialspace=True)
            columns = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = columns
            absent = [c for c in required if c not in columns]
            if absent:
                raise MetadataError(
                    f"{path}: missing column(s) {', '.join(absent)}; expected {what} with columns "
                    f"{', '.join(required)} (found: {', '.join(columns) or 'nothing'})")
            rows = []
            for row in reader:
                if None in row:  # more fields than the header names
                    raise MetadataError(f"{path}:{reader.line_num}: {len(columns) + len(row[None])} fields, "
                                        f"the header names {len(columns)}; expected {what}")
                values = {k: (v or "").strip() for k, v in row.items()}
                if any(values.values()):
                    rows.append((reader.line_num, values))
            return rows
    except UnicodeDecodeError as e:
        raise MetadataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected {what}") from None
    except csv.Error as e:
        raise MetadataError(f"{path}: malformed CSV ({e}); expected {what}") from None


# ---------------------------------------------------------------------------------------
# YouTube ids: AudioSet, AudioCaps, VGGSound and the UTS manifests spell the same clip as
# ``abcdefghijk``, ``Yabcdefghijk``, ``abcdefghijk_30``, ``abcdefghijk_30.000_40.000`` ...

_YTID = re.compile(r"^Y?([A-Za-z0-9_-]{11})(?:_-?[0-9.]+(?:_-?[0-9.]+)?)?$")
_YTID_STRICT = re.compile(r"^Y([A-Za-z0-9_-]{11})$")


def youtube_id(value: str, strict: bool = False) -> str | None:
    """The 11-character YouTube id inside a clip id or file stem, or None.

    Accepts ``ID``, ``YID`` (AudioSet's file names), ``ID_start``, ``ID_start_end`` and
    ``YID_start[_end]`` with start/end in seconds or milliseconds. With ``strict`` only
    ``YID`` counts (how the UTS manifests spell AudioSet-derived clips), so that other
    corpora's 11-character ids are not mistaken for YouTube ids.
    """
    m = (_YTID_STRICT if strict else _YTID).match(str(value))
    return m.group(1) if m else None


def _spell(x: float) -> list[str]:
    """Common spellings of a time in seconds in file names: ``30``, ``30.0``, ``30.000``, ``30.5``."""
    out = [str(int(x))] if x.is_integer() else [repr(x)]
    out += [f"{x:.1f}", f"{x:.3f}"]
    return out


def youtube_stems(ytid: str, start: str | float | None = None, end: str | float | None = None) -> list[str]:
    """File stems under which a YouTube clip's audio is commonly stored (see docs/sources.md):
    ``ID``, ``YID``, then ``ID_start``, ``ID_start_end`` and their ``Y`` forms with the start and
    end spelt ``30``, ``30.0``, ``30.000``, ``000030`` or in milliseconds (``30000_40000``). Without an end,
    the end is start + 10 s (AudioSet's segment length)."""
    stems = [ytid, f"Y{ytid}"]
    try:
        s = float(start) if start not in (None, "") else None
        e = float(end) if end not in (None, "") else (s + 10.0 if s is not None else None)
    except ValueError:
        return stems
    if s is None:
        return stems
    pairs = list(zip(_spell(s), _spell(e)))
    pairs.append((str(int(round(s * 1000))), str(int(round(e * 1000)))))
    if s.is_integer() and e.is_integer():  # zero-padded seconds, as VGGSound-style names have them
        pairs.append((f"{int(s):06d}", f"{int(e):06d}"))
    for prefix in (ytid, f"Y{ytid}"):
        for a, b in pairs:
            stems += [f"{prefix}_{a}", f"{prefix}_{a}_{b}"]
    return list(dict.fromkeys(stems))


# ---------------------------------------------------------------------------------------
# Finding audio files.

class AudioIndex:
    """The audio files under some folders (recursive), found by file stem or by relative path.

    One walk of each folder; when a stem has several files (``x.wav`` and ``x.flac``),
    the extension earlier in :data:`AUDIO_EXTENSIONS` wins, then the path that sorts first.
    """

    def __init__(self, folders: Pathlike | Sequence[Pathlike] | None, missing_ok: bool = False):
        self.folders = [] if folders is None else as_paths(folders)
        self.by_stem: dict[str, Path] = {}
        rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
        best: dict[str, tuple[int, str]] = {}
        for folder in self.folders:
            if not folder.is_dir():
                if missing_ok:  # clips are then counted as missing, one by one
                    continue
                raise MetadataError(f"{folder}: no such folder (expected the audio folder)")
            visited: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in visited:  # a symlink loop, or a folder linked twice
                    dirnames[:] = []
                    continue
                visited.add(real)
                dirnames.sort()
                for name in filenames:
                    stem, ext = os.path.splitext(name)
                    ext = ext.lower()
                    if ext not in rank:
                        continue
                    path = os.path.join(dirpath, name)
                    key = (rank[ext], path)
                    if stem not in best or key < best[stem]:
                        best[stem] = key
        self.by_stem = {stem: Path(path) for stem, (_, path) in best.items()}

    def __len__(self) -> int:
        return len(self.by_stem)

    def paths(self) -> dict[str, str]:
        """Stem -> path of every audio file found."""
        return {stem: str(path) for stem, path in self.by_stem.items()}

    def find(self, stems: Iterable[str]) -> Path | None:
        """The first of ``stems`` that has a file (stems without extension)."""
        for stem in stems:
            path = self.by_stem.get(stem)
            if path is not None:
                return path
        return None


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
# Clip records -> cuts.

@dataclass
class Clip:
    """One clip of a corpus or of a probe dataset, as its metadata describes it (before its
    audio is checked); rows naming the same clip merge into it.

    ``path`` is the audio file if the metadata names it, ``stems`` the file stems to look
    for in an :class:`AudioIndex` otherwise. Probe datasets give each clip a ``split``
    (train / valid / test) or a ``fold``, and a ``label`` (multiclass), ``labels``
    (multilabel) or ``captions`` (retrieval); pre-training corpora give ``captions``,
    ``original_caption``, ``tags`` and ``labels``. ``extra``: per-corpus fields.
    """

    id: str
    path: str | Path | None = None
    stems: list[str] = field(default_factory=list)
    split: str | None = None
    fold: int | None = None
    label: str | None = None
    labels: list[str] | None = None
    captions: list[str] | None = None
    original_caption: str | None = None
    tags: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: "Clip") -> None:
        self.captions = _union(self.captions, other.captions)
        self.tags = _union(self.tags, other.tags)
        self.labels = _union(self.labels, other.labels)
        self.stems = _union(self.stems, other.stems) or []
        self.original_caption = self.original_caption or other.original_caption
        self.path = self.path or other.path
        for key, value in other.extra.items():
            mine = self.extra.get(key)
            if isinstance(mine, list) and isinstance(value, list):
                mine += [v for v in value if v not in mine]
            else:
                self.extra.setdefault(key, value)

    def custom(self) -> dict[str, Any]:
        """A probe dataset's ``cut.custom``: the split, then fold, label, labels and captions
        where set, then ``extra``."""
        out: dict[str, Any] = {"split": self.split}
        for key in ("fold", "label", "labels", "captions"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out


def _union(mine: list | None, theirs: list | None) -> list | None:
    if theirs is None:
        return mine
    return (mine or []) + [x for x in theirs if x not in (mine or [])]


class Clips:
    """Clips by id in first-seen order; adding an id already seen merges and counts a duplicate."""

    def __init__(self, report: SourceReport):
        self.report = report
        self.by_id: dict[str, Clip] = {}

    def add(self, clip: Clip) -> None:
        self.report.rows += 1
        if clip.id in self.by_id:
            self.report.duplicates += 1
            self.by_id[clip.id].merge(clip)
        else:
            self.by_id[clip.id] = clip

    def __iter__(self):
        return iter(self.by_id.values())


def recording_from_file(path: Path, recording_id: str, report: SourceReport):
    """``lhotse.Recording.from_file`` (a real header decode), or None with the failure reported."""
    from lhotse import Recording

    try:
        rec = Recording.from_file(path, recording_id=recording_id)
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable", reported
        report.unreadable(f"{path} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
        return None
    if not rec.duration or rec.duration <= 0:
        report.unreadable(f"{path} (no samples)")
        return None
    return rec


def build_cuts(clips: Iterable[Clip], report: SourceReport, index: AudioIndex | None = None,
               resolve: Callable[[Clip], Path | None] | None = None):
    """A ``CutSet`` of the clips whose audio was found and decodes, in first-seen order.

    Each clip's audio is ``resolve(clip)`` if given, else ``clip.path`` if it exists, else the
    first of ``clip.stems`` in ``index``. Missing and unreadable audio is counted in ``report``.
    """
    from lhotse import CutSet

    cuts = []
    for clip in clips:
        path = resolve(clip) if resolve is not None else None
        if path is None and clip.path is not None and Path(clip.path).is_file():
            path = Path(clip.path)
        if path is None and index is not None:
            path = index.find(clip.stems)
        if path is None:
            report.missing(str(clip.path) if clip.path is not None else clip.id)
            continue
        rec = recording_from_file(Path(os.path.abspath(path)), clip.id, report)
        if rec is None:
            continue
        cut = rec.to_cut()
        cut.custom = uniform_custom(report.source, captions=clip.captions or [],
                                    original_caption=clip.original_caption, tags=clip.tags or [],
                                    labels=clip.labels or [], **clip.extra)
        cuts.append(cut)
    report.kept = len(cuts)
    return CutSet.from_cuts(cuts)
