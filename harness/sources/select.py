"""Choosing pre-training clips: nested data-scaling subsets, weighted mixing of sources,
evaluation-set exclusion, and a deterministic manifest writer.

All of it is pure and deterministic, and imports neither lhotse nor torch: cuts may be
Lhotse cuts or the plain dicts of a manifest (anything with ``id`` and ``custom``).

- **Order.** Every choice follows one fixed order of clip ids per seed: ids sorted by
  ``sha256(f"{seed}:{id}")`` (:func:`rank`). A clip's place depends only on the seed and
  its own id, so adding clips to a pool never reorders the clips already there.
- **Nested subsets.** The subset of size n is the first n clips of that order, so with one
  seed 400K ⊂ 1M ⊂ 2M, and growing the pool only lets new clips in where they rank.
- **Mixing** is without replacement: each clip appears at most once. Each source's count
  is its weighted share of ``total`` by the D'Hondt method (floor of the exact share, then
  the remainder to the largest ``weight / (count + 1)``; ties to the source named first),
  which never lowers a source's count when ``total`` grows, so mixes are nested too.
- **Exclusion** matches clip ids exactly or, by default, on the YouTube id where both
  sides have one (see :func:`exclude`).
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import HarnessError
from harness.sources._common import youtube_id


def cut_id(cut: Any) -> str:
    return cut["id"] if isinstance(cut, Mapping) else cut.id


def _custom(cut: Any) -> dict:
    return (cut.get("custom") if isinstance(cut, Mapping) else getattr(cut, "custom", None)) or {}


def rank(clip_id: str, seed: int) -> tuple[bytes, str]:
    """The sort key of a clip in the fixed order of ``seed`` (hash first, id to break ties)."""
    return hashlib.sha256(f"{seed}:{clip_id}".encode("utf-8")).digest()[:8], clip_id


def order(ids: Iterable[str], seed: int) -> list[str]:
    """``ids`` in the fixed order of ``seed``; duplicate ids are an error."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3] if len(ids) < 10000 else []
        raise HarnessError(f"the pool repeats clip ids{' (e.g. ' + ', '.join(dup) + ')' if dup else ''}; "
                           "ids must be unique")
    return sorted(ids, key=lambda i: rank(i, seed))


def nested_subsets(ids: Iterable[str], sizes: Iterable[int], seed: int) -> dict[int, list[str]]:
    """Subsets of the pool ``ids`` of each size in ``sizes``, each contained in the next.

    Returns ``{size: ids}`` by increasing size, every list in the fixed order of ``seed``
    (the first ``size`` ids of :func:`order`). A size larger than the pool, or negative,
    is an error.
    """
    ranked = order(ids, seed)
    out: dict[int, list[str]] = {}
    for size in sorted(set(sizes)):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise HarnessError(f"subset size {size!r}: expected a whole number of clips >= 0")
        if size > len(ranked):
            raise HarnessError(f"subset size {size} exceeds the pool of {len(ranked)} clips")
        out[size] = ranked[:size]
    return out


def subset(cuts: Iterable[Any], size: int, seed: int) -> list[Any]:
    """The ``size`` cuts of ``cuts`` that :func:`nested_subsets` picks, in the seed's order."""
    cuts = list(cuts)
    by_id = {cut_id(c): c for c in cuts}
    if len(by_id) != len(cuts):
        raise HarnessError(f"{len(cuts) - len(by_id)} repeated clip id(s) among {len(cuts)} cuts; ids must be unique")
    return [by_id[i] for i in nested_subsets(list(by_id), [size], seed)[size]]


def apportion(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split ``total`` clips among sources in proportion to ``weights`` (D'Hondt; house-monotone)."""
    if total < 0:
        raise HarnessError(f"mix total {total}: expected a number of clips >= 0")
    w = {}
    for name, value in weights.items():
        if value is None or float(value) < 0:
            raise HarnessError(f"mix weight of {name!r} is {value!r}; expected a number >= 0")
        w[name] = Fraction(value)
    weight_sum = sum(w.values())
    if weight_sum == 0:
        raise HarnessError("mix weights are all zero; give at least one source a positive weight")
    counts = {name: int(x * total // weight_sum) for name, x in w.items()}
    names = list(w)
    for _ in range(total - sum(counts.values())):
        best = max(names, key=lambda n: (w[n] / (counts[n] + 1), -names.index(n)))
        counts[best] += 1
    return counts


def mix(sources: Mapping[str, tuple[Iterable[Any], float]], total: int | None = None,
        seed: int = 0) -> tuple[list[Any], dict[str, int]]:
    """Sample ``total`` cuts from several sources in proportion to their weights, without replacement.

    ``sources``: ``{name: (cuts, weight)}``. Each source gives its :func:`apportion`
    share, taken as the first clips of its own fixed order (the seed hashed with the
    source name), so a larger ``total`` (or a larger source) keeps every clip already
    chosen. ``total=None`` takes the largest total that every source can supply at its
    weight. A source too small for its share, or the same clip id chosen from two sources,
    is an error (use :func:`exclude` to drop one source's clips from another first).
    Returns the cuts (source by source, in the order given, each in its fixed order) and
    ``{name: count}``.
    """
    pools = {name: list(cuts) for name, (cuts, _) in sources.items()}
    weights = {name: weight for name, (_, weight) in sources.items()}
    if not pools:
        raise HarnessError("mix needs at least one source")
    if total is None:
        total = _largest_total(weights, {n: len(p) for n, p in pools.items()})
    counts = apportion(weights, total)
    short = [f"{n} has {len(pools[n])} clips, its share is {counts[n]}" for n in pools if counts[n] > len(pools[n])]
    if short:
        raise HarnessError(f"cannot mix {total} clips at these weights: {'; '.join(short)} "
                           "(lower the total or the weight, or leave total unset for the largest mix)")
    out: list[Any] = []
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for name, cuts in pools.items():
        chosen = subset(cuts, counts[name], seed=_source_seed(seed, name)) if counts[name] else []
        for cut in chosen:
            cid = cut_id(cut)
            if cid in seen:
                clashes.append(f"{cid} ({seen[cid]}, {name})")
            seen[cid] = name
        out.extend(chosen)
    if clashes:
        raise HarnessError(f"{len(clashes)} clip id(s) chosen from two sources, e.g. {', '.join(clashes[:3])}; "
                           "exclude one source's ids from the other first")
    return out, counts


def _source_seed(seed: int, name: str) -> str:
    return f"{seed}/{name}"


def _largest_total(weights: Mapping[str, float], sizes: Mapping[str, int]) -> int:
    def fits(h: int) -> bool:
        return all(c <= sizes[n] for n, c in apportion(weights, h).items())

    lo, hi = 0, sum(sizes.values())
    while lo < hi:  # the largest h with fits(h); fits is monotone because apportion is
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def exclude(cuts: Iterable[Any], id_sets: Mapping[str, Iterable[str]],
            match: str = "youtube") -> tuple[list[Any], dict[str, int]]:
    """Drop every cut whose id is in one of ``id_sets`` (``{name: ids}``, e.g. an evaluation set).

    Returns the kept cuts (in order) and ``{name: number of cuts that set removed}``; a cut
    in several sets counts in each. ``match="exact"`` compares cut ids as given.
    ``match="youtube"`` (default) first reduces both sides to a YouTube id where one can
    be read: the cut's ``custom["youtube_id"]`` (set by the AudioSet, AudioCaps, UTS and
    WavCaps AudioSet_SL readers), else its id, and each listed id, through
    :func:`~harness.sources._common.youtube_id`, which reads ``ID``, ``YID``, ``ID_30``,
    ``ID_30.000_40.000`` and ``YID_30000_40000``; ids that are not YouTube ids compare as
    they are. So AudioCaps test ids (``youtube_id`` column) remove the same videos from
    AudioSet (``YTID``), the UTS manifests (``Y<YTID>``) and WavCaps AudioSet_SL.
    """
    if match not in ("youtube", "exact"):
        raise HarnessError(f"exclude match {match!r}: expected 'youtube' or 'exact'")

    def key(value: str) -> str:
        return (youtube_id(value) or value) if match == "youtube" else value

    sets = {name: {key(str(i)) for i in ids} for name, ids in id_sets.items()}
    removed = {name: 0 for name in sets}
    kept = []
    for cut in cuts:
        cid = cut_id(cut)
        k = (_custom(cut).get("youtube_id") or key(cid)) if match == "youtube" else cid
        hit = [name for name, s in sets.items() if k in s or (match == "youtube" and cid in s)]
        for name in hit:
            removed[name] += 1
        if not hit:
            kept.append(cut)
    return kept, removed


class _DictCut:
    def __init__(self, d: Mapping[str, Any]):
        self._d = d

    def to_dict(self) -> dict:
        return dict(self._d)


def write_cutset(cuts: Iterable[Any], path: str | os.PathLike) -> Path:
    """Write cuts (Lhotse cuts or their dicts) as a manifest, byte-identical for identical cuts.

    ``.jsonl.gz`` goes through the mini suite's writer (gzip with mtime 0); any other name
    is written as plain JSON lines. The file is written to a temporary name and renamed.
    """
    from harness.minisuite.builder import _write_cutset

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [_DictCut(c) if isinstance(c, Mapping) else c for c in cuts]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if path.name.endswith(".gz"):
            _write_cutset(items, tmp)
        else:
            import json

            with open(tmp, "w", encoding="utf-8") as f:
                for cut in items:
                    f.write(json.dumps(cut.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
