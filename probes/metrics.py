"""Probe metrics, implemented in numpy (no scikit-learn at run time), and the captioning
metrics of a maintained implementation (:func:`caption_scores`, ``pycocoevalcap``).

Two families of callables live here:

* the plain metrics, ``accuracy(y_true, y_pred)`` and
  ``macro_average_precision(y_true, scores)``;
* ``METRICS``, which maps a metric name to a function of ``(y_true, scores)``, where
  ``scores`` is the ``[N, C]`` output of a probe head. Every consumer (the head sweep,
  a bootstrap over test items) scores predictions the same way through it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["accuracy", "macro_average_precision", "recall_at_k", "METRICS", "metric_for", "caption_scores",
           "spice_available"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of items whose predicted class id equals the true one."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(y_true == y_pred))


def macro_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Unweighted mean over classes of the average precision (mAP).

    Matches ``sklearn.metrics.average_precision_score(y_true, scores, average="macro")``:
    for each class, AP = sum over distinct score thresholds (descending) of
    ``(R_k - R_{k-1}) * P_k``; items with tied scores enter at one threshold together.
    A class with no positive item gets AP = 0 and still counts in the mean, as in
    scikit-learn (which also warns about it).

    Args:
        y_true: ``[N, C]`` 0/1 indicator matrix (a 1-D vector is one class).
        scores: ``[N, C]`` real scores, higher means more likely positive.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    if y.shape != s.shape or y.ndim != 2:
        raise ValueError(f"expected matching [N, C] arrays, got {y.shape} and {s.shape}")
    n = y.shape[0]
    if n == 0:
        raise ValueError("average precision of an empty set is undefined")
    order = np.argsort(-s, axis=0, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=0)
    y_sorted = np.take_along_axis(y, order, axis=0).astype(np.float64)
    true_pos = np.cumsum(y_sorted, axis=0)
    precision = true_pos / np.arange(1, n + 1, dtype=np.float64)[:, None]
    # Every item takes the precision at the last item of its tie group (its threshold).
    ranks = np.broadcast_to(np.arange(n)[:, None], s.shape)
    group_end = np.ones(s.shape, dtype=bool)
    group_end[:-1] = s_sorted[:-1] != s_sorted[1:]
    end_index = np.where(group_end, ranks, n)
    end_index = np.minimum.accumulate(end_index[::-1], axis=0)[::-1]
    precision_at_threshold = np.take_along_axis(precision, end_index, axis=0)
    n_pos = true_pos[-1]
    per_class = np.divide(
        (y_sorted * precision_at_threshold).sum(axis=0),
        n_pos,
        out=np.zeros_like(n_pos),
        where=n_pos > 0,
    )
    return float(per_class.mean())


def _accuracy_from_scores(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Accuracy of the arg-max class of ``[N, C]`` scores against class ids ``[N]``."""
    return accuracy(y_true, np.asarray(scores).argmax(axis=1))


def recall_at_k(relevant: np.ndarray, similarity: np.ndarray, k: int) -> float:
    """Retrieval recall@k: the share of queries with at least one relevant item in their top ``k``.

    Args:
        relevant: ``[Q, N]`` 0/1 (or bool) matrix, ``relevant[q, n]`` when item ``n``
            answers query ``q``; a query may have several relevant items (a caption
            shared by several clips, a clip with several captions).
        similarity: ``[Q, N]`` scores, higher ranks first. Ties are ranked by item index
            (a stable sort), as a sorted result list would show them.

    Every query must have a relevant item.
    """
    rel = np.asarray(relevant).astype(bool)
    sim = np.asarray(similarity, dtype=np.float64)
    if rel.shape != sim.shape or rel.ndim != 2:
        raise ValueError(f"expected matching [Q, N] arrays, got {rel.shape} and {sim.shape}")
    if rel.shape[0] == 0:
        raise ValueError("recall of an empty query set is undefined")
    if not rel.any(axis=1).all():
        raise ValueError(f"{int((~rel.any(axis=1)).sum())} queries have no relevant item")
    order = np.argsort(-sim, axis=1, kind="stable")
    first_hit = np.take_along_axis(rel, order, axis=1).argmax(axis=1)  # 0-based rank of the best relevant item
    return float(np.mean(first_hit < k))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy_from_scores,
    "map": macro_average_precision,
    **{f"recall@{k}": (lambda relevant, scores, k=k: recall_at_k(relevant, scores, k)) for k in (1, 5, 10)},
}
"""Metric name -> ``f(y_true, scores) -> float`` (higher is better). For the probe metrics
``scores`` is a head's ``[N, C]`` output; for ``recall@k`` it is a ``[Q, N]`` query x item
similarity and ``y_true`` the ``[Q, N]`` relevance matrix (rows are queries, so a
bootstrap over rows resamples queries)."""

_METRIC_OF_KIND = {"multiclass": "accuracy", "multilabel": "map"}


def metric_for(kind: str) -> str:
    """Name of the headline metric (a key of ``METRICS``) for a task kind."""
    try:
        return _METRIC_OF_KIND[kind]
    except KeyError:
        raise ValueError(f"no probe metric for task kind {kind!r}; expected one of {sorted(_METRIC_OF_KIND)}") from None


def spice_available() -> str | None:
    """``None`` when SPICE can run here, else why not. pycocoevalcap's SPICE downloads the
    Stanford CoreNLP 3.6.0 jars into its ``spice/lib`` folder at first use, which fails offline."""
    import importlib.util
    import shutil
    from pathlib import Path

    if shutil.which("java") is None:
        return "no Java runtime (Debian: default-jre-headless)"
    spec = importlib.util.find_spec("pycocoevalcap")
    lib = Path(list(spec.submodule_search_locations)[0]) / "spice" / "lib" if spec else None
    if lib is None or not (lib / "stanford-corenlp-3.6.0.jar").is_file():
        return "SPICE needs the Stanford CoreNLP 3.6.0 jars, which pycocoevalcap downloads at first use (offline here)"
    return None


def caption_scores(references: list[list[str]], candidates: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus captioning metrics of ``candidates`` (one per clip) against each clip's
    ``references``, by pycocoevalcap (the COCO caption evaluation code): captions tokenised by
    its PTB tokenizer (Stanford CoreNLP, Java), then BLEU-4, METEOR 1.5 (Java), ROUGE-L and
    CIDEr-D (pycocoevalcap's ``Cider`` is CIDEr-D: clipped n-gram counts, Gaussian length
    penalty σ = 6, ×10), and SPICE with SPIDEr = (CIDEr-D + SPICE) / 2 where SPICE can run
    (:func:`spice_available`). Returns ``(scores, omitted)``: metric name -> value, and each
    metric left out -> why. Java is required (the tokenizer and METEOR)."""
    import shutil

    if shutil.which("java") is None:
        raise RuntimeError("captioning metrics need Java for the PTB tokenizer and METEOR: install a JRE "
                           "(Debian: apt-get install default-jre-headless)")
    if len(references) != len(candidates) or not candidates:
        raise ValueError(f"expected one candidate per clip, got {len(candidates)} for {len(references)} clips")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(references)})
    # An empty candidate is scored as one (the tokenizer would drop it; METEOR needs a token).
    cands = tokenizer.tokenize({i: [{"caption": c or "."}] for i, c in enumerate(candidates)})
    cands = {i: [c[0] if c and c[0] else "<empty>"] for i, c in cands.items()}
    scores = {"bleu_4": float(Bleu(4).compute_score(refs, cands, verbose=0)[0][3]),
              "meteor": float(Meteor().compute_score(refs, cands)[0]),
              "rouge_l": float(Rouge().compute_score(refs, cands)[0]),
              "cider_d": float(Cider().compute_score(refs, cands)[0])}
    omitted = {}
    why = spice_available()
    if why is None:
        from pycocoevalcap.spice.spice import Spice

        scores["spice"] = float(Spice().compute_score(refs, cands)[0])
        scores["spider"] = 0.5 * (scores["cider_d"] + scores["spice"])
    else:
        omitted = {"spice": why, "spider": "SPIDEr is the mean of CIDEr-D and SPICE"}
    return scores, omitted
