"""The df·idf tag system: rank tags, keep the top K, read and write label files.

The UTS paper (arXiv 2603.25767) ranks every tag t of a corpus of N clips by

    s(t) = df(t) · log((N + 1) / (df(t) + 1))

where df(t) is the number of clips whose tags include t, and keeps the top K tags
(K = 800, 1k, 1.5k, 2k, 3k) as its Unified Tag System. A tag system is stored as a
label file in the released format: a JSON object mapping the class index as a string
to one tag, ``{"0": "electronic", "1": "studio", ...}``, rank 0 first.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from harness.errors import HarnessError

TAGSYSTEM_VERSION = "1"
"""Version of the ranking and label-file code; part of every tag-system node's key."""


def score(df: int, n: int) -> float:
    """The paper's tag score s = df · log((n + 1) / (df + 1)), natural log.

    ``df`` is the number of clips having the tag, ``n`` the number of clips.
    """
    if not 0 <= df <= n:
        raise ValueError(f"need 0 <= df <= n, got df={df}, n={n}")
    return df * math.log((n + 1) / (df + 1))


@dataclass(frozen=True)
class TagStats:
    """Document frequency, score and rank of every tag of a corpus.

    ``ranked`` lists all tags best first: by score descending, ties broken by df
    descending and then by tag ascending, so the order is deterministic.
    """

    ranked: list[str]
    df: dict[str, int]
    score: dict[str, float]
    n_clips: int
    best_ranks: list[int] = field(repr=False)
    """For every clip with at least one tag, the best rank among its tags; sorted."""

    @functools.cached_property
    def rank(self) -> dict[str, int]:
        """Tag -> rank (0 = best)."""
        return {t: i for i, t in enumerate(self.ranked)}

    def top(self, k: int) -> list[str]:
        """The best ``k`` tags (all tags when there are fewer than ``k``)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return self.ranked[:k]

    def coverage(self, k: int) -> float:
        """Share of clips having at least one tag in the top ``k`` (0.0 with no clips)."""
        if self.n_clips == 0:
            return 0.0
        return bisect.bisect_left(self.best_ranks, k) / self.n_clips

    def occurrence_coverage(self, k: int) -> float:
        """Share of all (clip, tag) pairs whose tag is in the top ``k``."""
        total = sum(self.df.values())
        if total == 0:
            return 0.0
        return sum(self.df[t] for t in self.top(k)) / total

    def to_rows(self) -> list[dict[str, object]]:
        """One dict per tag, best first: ``{"tag", "df", "score", "rank"}``."""
        return [
            {"tag": t, "df": self.df[t], "score": self.score[t], "rank": i}
            for i, t in enumerate(self.ranked)
        ]


def build_tag_system(clip_tags: Sequence[Iterable[str]]) -> TagStats:
    """Count, score and rank the tags of a corpus; one entry of ``clip_tags`` per clip.

    A tag repeated within one clip counts once. Clips with no tags count in N.
    """
    df: Counter[str] = Counter()
    clip_sets = [set(tags) for tags in clip_tags]
    for tags in clip_sets:
        df.update(tags)
    n = len(clip_sets)
    scores = {t: score(d, n) for t, d in df.items()}
    ranked = sorted(df, key=lambda t: (-scores[t], -df[t], t))
    rank = {t: i for i, t in enumerate(ranked)}
    best = sorted(min(rank[t] for t in tags) for tags in clip_sets if tags)
    return TagStats(ranked=ranked, df=dict(df), score=scores, n_clips=n, best_ranks=best)


def size_name(k: int) -> str:
    """Short name of a tag-system size: 800 -> "800", 1500 -> "1.5k", 1250 -> "1.25k".

    Sizes below 1000 are written in full; from 1000 on, in thousands with a "k".
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"tag-system size must be a positive integer, got {k!r}")
    if k < 1000:
        return str(k)
    thousands = format((Decimal(k) / 1000).normalize(), "f")
    return f"{thousands}k"


def parse_size_name(name: str) -> int:
    """Inverse of :func:`size_name`: "1.5k" -> 1500, "800" -> 800 (also accepts "1.5K")."""
    text = name.strip().lower()
    try:
        value = Decimal(text[:-1]) * 1000 if text.endswith("k") else Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a tag-system size: {name!r}") from None
    if not value.is_finite() or value != value.to_integral_value() or value <= 0:
        raise ValueError(f"not a tag-system size: {name!r} (need a positive whole number)")
    return int(value)


class EmptyTagSystem(HarnessError, ValueError):
    """A tag system with no tags: one line (the CLI prints it; a job fails with it)."""


def _check_tags(tags: Sequence[str], where: str, allow_duplicates: bool) -> None:
    """Raise ValueError unless ``tags`` is a non-empty list of non-empty, unique strings."""
    if not tags:
        raise EmptyTagSystem(f"{where}: no tags (built from parsed captions, this means every clip's tag list "
                             "was empty: see the parse report, parse_report.json)")
    seen: dict[str, int] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag.strip():
            raise ValueError(f"{where}: entry {i} is not a non-empty string: {tag!r}")
        if tag in seen and not allow_duplicates:
            raise ValueError(
                f"{where}: tag {tag!r} appears twice (indices {seen[tag]} and {i}); "
                "pass allow_duplicates=True to accept it"
            )
        seen.setdefault(tag, i)


def write_label_file(
    path: str | os.PathLike[str], tags: Sequence[str], *, allow_duplicates: bool = False
) -> None:
    """Write ``tags`` (rank 0 first) as a label file in the released format.

    The bytes match the released UTS files exactly: ``json.dumps(obj, indent=2)`` with
    ASCII escapes and no trailing newline. The file is written to a temporary file in
    the same folder and renamed into place, so readers never see a partial file.
    """
    path = Path(path)
    _check_tags(tags, str(path), allow_duplicates)
    data = json.dumps({str(i): t for i, t in enumerate(tags)}, indent=2).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_label_file(
    path: str | os.PathLike[str], *, allow_duplicates: bool = False
) -> list[str]:
    """Read a label file; return its tags in index order (rank 0 first).

    Checks that the file is a JSON object whose keys are exactly "0".."K-1" and whose
    values are non-empty strings, all different unless ``allow_duplicates`` (the
    released UTS 1.5k, 2k and 3k files each repeat a tag, e.g. "instructional" at 89
    and 1348). Raises ValueError with a one-line message naming the file and the problem.
    """
    where = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: not a JSON label file ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object of index -> tag, got {type(obj).__name__}")
    expected = {str(i) for i in range(len(obj))}
    if set(obj) != expected:
        bad = sorted(set(obj) - expected, key=lambda k: (len(k), k))[:3]
        raise ValueError(
            f"{where}: keys must be the indices 0..{len(obj) - 1} as strings; "
            f"unexpected keys {bad}"
        )
    tags = [obj[str(i)] for i in range(len(obj))]
    _check_tags(tags, where, allow_duplicates)
    return tags


def tag_index(tags: Sequence[str]) -> dict[str, int]:
    """Tag -> index in a tag system (its rank); a repeated tag keeps its first index."""
    index: dict[str, int] = {}
    for i, t in enumerate(tags):
        index.setdefault(t, i)
    return index


def filter_clips(
    clip_tags: Sequence[Sequence[str]], vocab: Collection[str]
) -> tuple[list[int], list[list[str]]]:
    """Keep only tags in ``vocab``; drop the clips left with none.

    Returns the indices of the kept clips and their filtered tags (original order).
    """
    vocab = vocab if isinstance(vocab, (set, frozenset, dict)) else set(vocab)
    kept: list[int] = []
    filtered: list[list[str]] = []
    for i, tags in enumerate(clip_tags):
        inside = [t for t in tags if t in vocab]
        if inside:
            kept.append(i)
            filtered.append(inside)
    return kept, filtered


def multi_hot(tags: Iterable[str], index: Mapping[str, int], size: int | None = None) -> list[int]:
    """MTC target: a 0/1 list of length ``size`` (default: largest index + 1).

    Position ``index[t]`` is 1 for every tag ``t`` in ``tags``; other tags are ignored.
    """
    n = size if size is not None else max(index.values(), default=-1) + 1
    target = [0] * n
    for t in tags:
        i = index.get(t)
        if i is not None:
            target[i] = 1
    return target


def tag_sequence(tags: Iterable[str], vocab_rank: Mapping[str, int]) -> str:
    """PAR target: the clip's tags that are in the tag system, as one string.

    Order: by tag-system rank, most important (rank 0) first, so the sequence does not
    depend on the order the caption parser emitted them in. Tags outside the tag system
    are dropped, repeats are removed, and the rest are joined by ", ".
    """
    inside = {t for t in tags if t in vocab_rank}
    return ", ".join(sorted(inside, key=lambda t: vocab_rank[t]))


def write_stats_csv(path: str | os.PathLike, stats: "TagStats") -> None:
    """Per-tag statistics, best first: ``rank,tag,df,score`` (written atomically)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["rank", "tag", "df", "score"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(stats.to_rows(), key=lambda r: r["rank"]))
    from harness.store import atomic_write_text

    atomic_write_text(path, buffer.getvalue())
