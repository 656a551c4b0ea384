"""Statistics of the results tables: seed intervals, which cell is bold, paired bootstrap.

* :func:`mean_ci` — mean and Student-t confidence half-width of a few seed values.
* :func:`summarise` — that, per group of a results frame (one unit per pre-training seed).
* :func:`best_cells` — which cell of a column is bold: the best one, only when its interval
  lies entirely beyond the runner-up's.
* :func:`paired_bootstrap` — two arms scored on the same test examples, resampled together,
  with a percentile interval and a two-sided p-value (:func:`bootstrap_p_value`).
* :func:`holm` — Holm's step-down adjustment of the p-values of one table (family-wise error).
* :func:`format_p` — a p-value as text, ``< 1/(B+1)`` shown as such at the resolution floor.

Everything here is numpy, scipy and pandas; nothing imports model code.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "mean_ci", "summarise", "best_cells", "column_bold", "bold_rule_text", "paired_bootstrap",
    "bootstrap_p_value", "holm", "format_p", "p_floor", "bold_can_apply", "P_VALUE_DEFINITION", "WITHOUT_INTERVAL",
    "MAX_BOOTSTRAP_ELEMENTS", "REPORT_RESAMPLES",
]

WITHOUT_INTERVAL = ("none", "highest")
"""What :func:`best_cells` does when the best two cells lack an interval (one seed):
``"none"`` bolds nothing (the default: nothing is claimed), ``"highest"`` bolds the best."""

REPORT_RESAMPLES = 9999
"""Bootstrap resamples of the report's paired comparisons: B + 1 = 10,000, so the smallest
p-value is 1/10,000 and a Holm correction over a few dozen tests can still reach 0.05
(with B = 999 the smallest Holm-adjusted p of 40 tests would be 40/1000)."""

P_VALUE_DEFINITION = (
    "p: two-sided paired-bootstrap p-value, p = (1 + #{b: |d_b − d| ≥ |d|}) / (B + 1), where d is "
    "the observed difference and d_b its value on resample b: the share of resamples whose "
    "deviation from d is at least d itself (the resampled differences, centred, stand for the "
    "null distribution). Each resample counts once; d = 0 gives p = 1. The smallest value is "
    "1/(B + 1); a p-value at that floor (no resample as extreme) is printed as \"< 1/(B + 1)\", "
    "e.g. \"< 0.0001\" for B = 9,999.")
"""The definition of :func:`bootstrap_p_value`, for table notes and docs."""

MAX_BOOTSTRAP_ELEMENTS = 50_000_000
"""Largest ``n_boot * n`` drawn as one index array (400 MB of int64); beyond it, chunks of rows."""


# --------------------------------------------------------------------------- seed intervals

def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean, confidence half-width and count of ``values`` (NaNs dropped).

    The half-width is ``t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with the sample standard
    deviation ``s`` (``ddof=1``): the two-sided Student-t interval of the mean, the same as
    ``scipy.stats.t.interval(confidence, n - 1, loc=mean, scale=s / sqrt(n))``.

    With ``n == 1`` there is no interval: the half-width is **NaN** (not 0, which would
    claim a zero-width interval). With ``n == 0`` the mean is NaN too.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, 1
    from scipy.stats import t

    sem = float(x.std(ddof=1)) / math.sqrt(n)
    return mean, float(t.ppf(0.5 + confidence / 2, n - 1) * sem), n


def summarise(frame, by: str | Sequence[str], value: str = "value", unit: str | None = "seed",
              confidence: float = 0.95):
    """Mean, CI half-width and number of units (``mean``, ``ci``, ``n``) per group of ``frame``.

    The unit of replication is the pre-training seed (column ``unit``): rows of one group
    and one seed (several probe seeds, say) are first averaged into one value, so ``n``
    counts pre-training seeds. With ``unit=None`` (or no such column) every row is a unit.
    Groups come out sorted by ``by``; rows with a NaN value are ignored.
    """
    import pandas as pd

    by = [by] if isinstance(by, str) else list(by)
    frame = frame[frame[value].notna()]
    if unit is not None and unit in frame.columns and unit not in by:
        units = frame.groupby(by + [unit], sort=True, dropna=False)[value].mean().reset_index()
    else:
        units = frame[by + [value]]
    rows = []
    for key, group in units.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, ci, n = mean_ci(group[value].to_numpy(), confidence)
        rows.append((*key, mean, ci, n))
    out = pd.DataFrame(rows, columns=by + ["mean", "ci", "n"])
    out["n"] = out["n"].astype("int64")
    return out


# --------------------------------------------------------------------------- bold cells

def best_cells(means: Sequence[float], halfwidths: Sequence[float], ns: Sequence[int],
               higher_is_better: bool = True, without_interval: str = "none") -> list[bool]:
    """Which cells of one column are bold (at most one).

    Rule: order the cells with a finite mean from best to worst. The best cell is bold
    only when it *beats the runner-up beyond the interval*: its interval and the
    runner-up's do not overlap, i.e. (higher is better)
    ``mean_best - ci_best > mean_second + ci_second``. Equal best means are never bold.

    A cell has an interval when ``n >= 2`` and its half-width is finite. When the best or
    the runner-up has none (one seed), ``without_interval`` decides: ``"none"`` (default)
    bolds nothing, since no difference can be claimed; ``"highest"`` bolds the best mean
    (ties excepted), the usual "best in bold" with no significance claimed. A column with
    fewer than two finite cells has nothing to beat and no bold cell.
    """
    if without_interval not in WITHOUT_INTERVAL:
        raise ValueError(f"without_interval must be one of {WITHOUT_INTERVAL}, got {without_interval!r}")
    m = np.asarray(means, dtype=np.float64)
    h = np.asarray(halfwidths, dtype=np.float64)
    k = np.asarray(ns)
    if not (m.shape == h.shape == k.shape) or m.ndim != 1:
        raise ValueError("means, halfwidths and ns must be 1-D sequences of one length")
    bold = [False] * m.size
    sign = 1.0 if higher_is_better else -1.0
    finite = [i for i in range(m.size) if np.isfinite(m[i])]
    if len(finite) < 2:
        return bold
    order = sorted(finite, key=lambda i: (-sign * m[i], i))
    best, second = order[0], order[1]
    if m[best] == m[second]:
        return bold

    def interval(i):
        return bool(k[i] >= 2 and np.isfinite(h[i]))

    if interval(best) and interval(second):
        bold[best] = bool(sign * (m[best] - m[second]) > h[best] + h[second])
    else:
        bold[best] = without_interval == "highest"
    return bold


def bold_rule_text(without_interval: str = "none", confidence: float = 0.95, higher_is_better: bool = True) -> str:
    """One sentence saying what bold means, for a table's note (print it only where a
    cell can be bold: :func:`bold_can_apply`)."""
    level = f"{confidence:.0%}"
    text = (f"Bold: the best value of a column whose {level} interval lies entirely "
            f"{'above' if higher_is_better else 'below'} the runner-up's")
    if without_interval == "highest":
        return text + "; where the best two have one seed (no interval), bold is the best mean, no significance claimed."
    return text + "; where the best two have one seed (no interval), nothing is bold."


def bold_can_apply(ns: Iterable[int], without_interval: str = "none") -> bool:
    """Whether :func:`best_cells` can bold any cell of a table whose cells rest on ``ns``
    seeds: with one seed everywhere and ``without_interval="none"`` it never does, and a
    note about bold would describe nothing."""
    return without_interval == "highest" or any(int(n) >= 2 for n in ns)


# --------------------------------------------------------------------------- paired bootstrap

def _metric_callable(metric: str | Callable) -> tuple[str, Callable]:
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    from probes.metrics import METRICS

    key = str(metric).lower()
    if key not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected a callable or one of {sorted(METRICS)}")
    return key, METRICS[key]


def _index_chunks(rng: np.random.Generator, n: int, n_boot: int, max_elements: int):
    """Resampling indices ``[rows, n]``: one array ``rng.integers(0, n, (n_boot, n))`` when it fits."""
    rows = max(1, min(n_boot, max_elements // max(n, 1)))
    done = 0
    while done < n_boot:
        size = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def paired_bootstrap(y_true, scores_a, scores_b, metric: str | Callable = "accuracy", n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95,
                     max_elements: int = MAX_BOOTSTRAP_ELEMENTS) -> dict:
    """Compare arms A and B scored on the same test examples by a paired bootstrap.

    Each resample draws ``n`` example indices with replacement (all resamples at once:
    ``numpy.random.default_rng(seed).integers(0, n, size=(n_boot, n))``; when
    ``n_boot * n > max_elements`` the rows are drawn in chunks, which numpy gives the same
    indices) and scores *both* arms on the same indices.

    Args:
        y_true: class ids ``[N]`` (accuracy) or a 0/1 matrix ``[N, C]`` (mAP).
        scores_a, scores_b: ``[N, C]`` scores of each arm (for accuracy, 1-D predicted
            class ids are accepted too).
        metric: a name of :data:`probes.metrics.METRICS` (``"accuracy"``: arg-max of the
            scores; ``"map"``/``"mAP"``: macro average precision) or a callable
            ``f(y_true, scores) -> float``, higher is better.

    Returns:
        ``dict(delta, ci_low, ci_high, p_value, n, n_boot, metric, value_a, value_b)``:
        ``delta = metric(A) - metric(B)`` on the full test set; the percentile interval of
        the resampled deltas at ``confidence``; the two-sided p-value of "no difference"
        by :func:`bootstrap_p_value` (:data:`P_VALUE_DEFINITION`). Accuracy is scored
        in one vectorised step (the mean of per-example
        correctness over each resample); other metrics are called once per resample.
        A resample in which a class has no positive example scores AP 0 for it, as
        :func:`probes.metrics.macro_average_precision` does.
    """
    name, fn = _metric_callable(metric)
    y = np.asarray(y_true)
    a = np.asarray(scores_a)
    b = np.asarray(scores_b)
    n = int(y.shape[0]) if y.ndim else 0
    if n == 0:
        raise ValueError("paired bootstrap needs at least one test example")
    if a.shape[0] != n or b.shape[0] != n:
        raise ValueError(f"scores must have one row per example: y {y.shape}, a {a.shape}, b {b.shape}")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    rng = np.random.default_rng(seed)
    if name == "accuracy":
        correct_a = ((a.argmax(axis=1) if a.ndim == 2 else a) == y).astype(np.float64)
        correct_b = ((b.argmax(axis=1) if b.ndim == 2 else b) == y).astype(np.float64)
        diff = correct_a - correct_b
        delta = float(diff.mean())
        value_a, value_b = float(correct_a.mean()), float(correct_b.mean())
        deltas = np.concatenate([diff[idx].mean(axis=1) for idx in _index_chunks(rng, n, n_boot, max_elements)])
    else:
        value_a, value_b = float(fn(y, a)), float(fn(y, b))
        delta = value_a - value_b
        deltas = np.concatenate([
            np.array([fn(y[row], a[row]) - fn(y[row], b[row]) for row in idx], dtype=np.float64)
            for idx in _index_chunks(rng, n, n_boot, max_elements)
        ])
    alpha = 1.0 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    p = bootstrap_p_value(deltas, delta)
    return {"delta": delta, "ci_low": float(low), "ci_high": float(high), "p_value": float(p),
            "n": n, "n_boot": int(n_boot), "metric": name, "value_a": value_a, "value_b": value_b}


def bootstrap_p_value(deltas, observed: float) -> float:
    """Two-sided p-value of "no difference" from bootstrap replicates of a difference.

    ``p = (1 + #{b : |d*_b - d| >= |d|}) / (B + 1)`` with ``d`` = ``observed`` and ``d*_b``
    = ``deltas[b]`` (Davison & Hinkley 1997, eq. 4.11; Efron & Tibshirani 1993, sec. 16.4):
    the resampled differences minus the observed one approximate the distribution of the
    difference under the null, and a resample counts when it lies at least as far from
    ``d`` as ``d`` lies from 0. Every resample is counted at most once, so a resample with
    a difference of exactly 0 is not evidence in both tails (``d*_b = 0`` counts, once,
    as at least as extreme), and ``d = 0`` gives ``p = 1``. With a percentile interval
    that excludes 0, about 2.5% or less of the resamples lie on the far side of 0, and
    p is about 0.05 or less: the two agree. The smallest possible value is ``1/(B+1)``
    (:func:`p_floor`); the "+1" counts the observed sample, so p is never 0.
    Differences are compared after rounding to 12 decimals, so that float noise in a
    resampled mean does not decide a tie.
    """
    d = np.round(np.asarray(deltas, dtype=np.float64).ravel(), 12)
    observed = round(float(observed), 12)
    if d.size == 0:
        raise ValueError("bootstrap_p_value needs at least one resample")
    extreme = int(np.count_nonzero(np.abs(np.round(d - observed, 12)) >= abs(observed)))
    return float(min(1.0, (1 + extreme) / (d.size + 1)))


def p_floor(n_boot: int) -> float:
    """The smallest p-value :func:`bootstrap_p_value` gives with ``n_boot`` resamples: ``1/(B+1)``."""
    return 1.0 / (int(n_boot) + 1)


def format_p(p: float, n_boot: int | None = None, digits: int = 3) -> str:
    """A p-value as text: ``"0.042"``; ``"< 0.0001"`` at the floor ``1/(B+1)`` of ``n_boot``
    resamples (where no resample was as extreme: the true p lies below the resolution);
    ``"< 0.001"`` for a value that rounds to 0 at ``digits``; ASCII text, no sign."""
    if not math.isfinite(p):
        return "–"
    if n_boot is not None and p <= p_floor(n_boot) * (1 + 1e-9):
        return f"< {_floor_text(p_floor(n_boot))}"
    text = f"{p:.{digits}f}"
    if float(text) == 0.0:
        return f"< {10.0 ** -digits:.{digits}f}"
    return text


def _floor_text(floor: float) -> str:
    """``1/(B+1)`` as a short decimal, rounded up (``1/10000`` -> ``0.0001``, ``1/1000`` -> ``0.001``)."""
    exponent = math.floor(math.log10(floor))
    lead = math.ceil(round(floor / 10.0 ** exponent, 9))
    if lead >= 10:
        lead, exponent = 1, exponent + 1
    value = lead * 10.0 ** exponent
    return f"{value:.{max(0, -exponent)}f}"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): control of the family-wise error rate.

    With the m p-values sorted ascending, ``p_(i)`` becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; a hypothesis is rejected at level alpha
    when its adjusted p-value is at most alpha. NaNs are left as they are and not counted
    in m. Equal to ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def column_bold(cells: Mapping, higher_is_better: bool = True, without_interval: str = "none") -> dict:
    """:func:`best_cells` on a mapping ``key -> (mean, ci, n)``; returns ``key -> bold``."""
    keys = list(cells)
    flags = best_cells([cells[k][0] for k in keys], [cells[k][1] for k in keys], [cells[k][2] for k in keys],
                       higher_is_better, without_interval)
    return dict(zip(keys, flags))
