"""results/stats.py against independent references: scipy's t interval, pandas group-bys,
a bootstrap written out directly in numpy, and probes.metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from probes.metrics import accuracy, macro_average_precision
from results.stats import best_cells, mean_ci, paired_bootstrap, summarise


# --------------------------------------------------------------------------- mean_ci

@pytest.mark.parametrize("values", [[0.71, 0.74, 0.69], [0.5, 0.52], [0.1, 0.4, 0.35, 0.2, 0.33, 0.31]])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_mean_ci_matches_scipy_t_interval(values, confidence):
    x = np.asarray(values)
    low, high = sps.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    mean, half, n = mean_ci(values, confidence)
    assert n == len(values)
    assert mean == pytest.approx(x.mean(), abs=1e-15)
    assert mean - half == pytest.approx(low, rel=1e-12)
    assert mean + half == pytest.approx(high, rel=1e-12)


def test_mean_ci_known_quantile_and_edge_cases():
    # t_{0.975, 2} = 4.3026527 (printed tables); three values with sd 1 -> half-width t / sqrt(3)
    mean, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.3026527 / math.sqrt(3), rel=1e-7)
    # one seed: a mean, no interval (NaN, not a zero-width interval)
    mean, half, n = mean_ci([0.7])
    assert mean == 0.7 and n == 1 and math.isnan(half)
    # NaNs are dropped; nothing left -> NaN mean
    assert mean_ci([0.5, float("nan"), 0.7])[2] == 2
    mean, half, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)
    # identical values: zero width
    assert mean_ci([0.3, 0.3, 0.3])[1] == 0.0
    with pytest.raises(ValueError):
        mean_ci([1, 2], confidence=1.5)


# --------------------------------------------------------------------------- summarise

def _frame():
    rng = np.random.default_rng(3)
    rows = []
    for arm, base in [("a", 0.8), ("b", 0.6)]:
        for task in ("t1", "t2"):
            for seed in (0, 1, 2):
                for probe_seed in (0, 1, 2, 3):
                    rows.append({"arm": arm, "task": task, "seed": seed, "probe_seed": probe_seed,
                                 "value": base + rng.normal(0, 0.02)})
    rows.append({"arm": "c", "task": "t1", "seed": 0, "probe_seed": 0, "value": 0.5})
    return pd.DataFrame(rows)


def test_summarise_counts_pretraining_seeds_and_matches_pandas():
    frame = _frame()
    out = summarise(frame, ["arm", "task"]).set_index(["arm", "task"])
    per_seed = frame.groupby(["arm", "task", "seed"])["value"].mean()
    means = per_seed.groupby(["arm", "task"]).mean()
    sds = per_seed.groupby(["arm", "task"]).std(ddof=1)
    counts = per_seed.groupby(["arm", "task"]).size()
    assert list(out.index) == sorted(means.index)
    for key in means.index:
        assert out.loc[key, "mean"] == pytest.approx(means[key], abs=1e-12)
        assert out.loc[key, "n"] == counts[key]
        if counts[key] > 1:
            expected = sps.t.ppf(0.975, counts[key] - 1) * sds[key] / math.sqrt(counts[key])
            assert out.loc[key, "ci"] == pytest.approx(expected, rel=1e-10)
    assert out.loc[("c", "t1"), "n"] == 1 and math.isnan(out.loc[("c", "t1"), "ci"])


def test_summarise_without_unit_counts_rows():
    frame = _frame()
    out = summarise(frame, "arm", unit=None).set_index("arm")
    assert out.loc["a", "n"] == 24
    assert out.loc["a", "mean"] == pytest.approx(frame[frame.arm == "a"]["value"].mean())


# --------------------------------------------------------------------------- best_cells

def test_best_cells_bolds_only_beyond_the_interval():
    # a beats b beyond both intervals: 0.80 - 0.02 > 0.70 + 0.03
    assert best_cells([0.70, 0.80, 0.50], [0.03, 0.02, 0.01], [3, 3, 3]) == [False, True, False]
    # overlapping: 0.80 - 0.05 < 0.78 + 0.01 -> nothing is bold
    assert best_cells([0.78, 0.80], [0.01, 0.05], [3, 3]) == [False, False]
    # the best's mean above the runner-up's upper bound is not enough: intervals must not overlap
    assert best_cells([0.75, 0.80], [0.04, 0.04], [3, 3]) == [False, False]
    # equal best means: never bold, even with zero-width intervals
    assert best_cells([0.8, 0.8, 0.1], [0.0, 0.0, 0.0], [3, 3, 3]) == [False, False, False]
    # lower is better
    assert best_cells([0.10, 0.30], [0.01, 0.01], [3, 3], higher_is_better=False) == [True, False]
    # NaN cells (no result) take no part; a lone cell has nothing to beat
    assert best_cells([float("nan"), 0.9, 0.5], [0.0, 0.01, 0.01], [0, 3, 3]) == [False, True, False]
    assert best_cells([0.9], [0.01], [3]) == [False]


def test_best_cells_without_interval():
    means, half, ns = [0.6, 0.9, 0.7], [float("nan")] * 3, [1, 1, 1]
    assert best_cells(means, half, ns) == [False, False, False]
    assert best_cells(means, half, ns, without_interval="highest") == [False, True, False]
    # the runner-up has one seed: no interval to compare with
    assert best_cells([0.9, 0.5], [0.01, float("nan")], [3, 1]) == [False, False]
    with pytest.raises(ValueError):
        best_cells(means, half, ns, without_interval="max")


# --------------------------------------------------------------------------- paired bootstrap

def _classification(n=400, classes=5, noise_a=0.3, noise_b=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    onehot = np.eye(classes)[y]
    a = onehot + rng.normal(0, noise_a * 3, (n, classes))
    b = onehot + rng.normal(0, noise_b * 3, (n, classes))
    return y, a, b


def test_identical_arms_give_zero_delta():
    y, a, _ = _classification()
    result = paired_bootstrap(y, a, a.copy(), "accuracy", n_boot=500, seed=1)
    assert result["delta"] == 0.0
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert result["p_value"] == 1.0
    assert result["n"] == len(y) and result["n_boot"] == 500


def test_clearly_better_arm_excludes_zero():
    y, a, b = _classification(noise_a=0.1, noise_b=1.0)
    result = paired_bootstrap(y, a, b, "accuracy", n_boot=1000, seed=0)
    assert result["delta"] > 0.2
    assert result["ci_low"] > 0
    assert result["p_value"] < 0.01
    assert result["delta"] == pytest.approx(accuracy(y, a.argmax(1)) - accuracy(y, b.argmax(1)))
    flipped = paired_bootstrap(y, b, a, "accuracy", n_boot=1000, seed=0)
    assert flipped["ci_high"] < 0
    assert flipped["delta"] == pytest.approx(-result["delta"])


def test_accuracy_bootstrap_equals_direct_numpy_bootstrap():
    y, a, b = _classification(n=150, noise_a=0.4, noise_b=0.5, seed=2)
    n_boot, seed = 300, 7
    result = paired_bootstrap(y, a, b, "accuracy", n_boot=n_boot, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    deltas = np.array([accuracy(y[i], a[i].argmax(1)) - accuracy(y[i], b[i].argmax(1)) for i in idx])
    low, high = np.quantile(deltas, [0.025, 0.975])
    assert result["ci_low"] == pytest.approx(low, abs=1e-12)
    assert result["ci_high"] == pytest.approx(high, abs=1e-12)
    delta = accuracy(y, a.argmax(1)) - accuracy(y, b.argmax(1))
    extreme = sum(abs(d - delta) >= abs(delta) - 1e-12 for d in deltas)  # the documented definition, written out
    assert result["p_value"] == pytest.approx((1 + extreme) / (n_boot + 1))
    # drawing the indices in row chunks (small max_elements) gives the same resamples
    chunked = paired_bootstrap(y, a, b, "accuracy", n_boot=n_boot, seed=seed, max_elements=len(y) * 7)
    assert chunked == result


def test_map_bootstrap_equals_direct_loop_and_callable():
    rng = np.random.default_rng(5)
    n, classes = 120, 6
    y = (rng.random((n, classes)) < 0.3).astype(int)
    a = y + rng.normal(0, 0.5, (n, classes))
    b = y + rng.normal(0, 1.5, (n, classes))
    result = paired_bootstrap(y, a, b, "mAP", n_boot=200, seed=3)
    idx = np.random.default_rng(3).integers(0, n, size=(200, n))
    deltas = np.array([macro_average_precision(y[i], a[i]) - macro_average_precision(y[i], b[i]) for i in idx])
    assert result["metric"] == "map"
    assert result["delta"] == pytest.approx(macro_average_precision(y, a) - macro_average_precision(y, b))
    assert result["ci_low"] == pytest.approx(np.quantile(deltas, 0.025))
    assert result["ci_high"] == pytest.approx(np.quantile(deltas, 0.975))
    assert result["ci_low"] > 0
    by_callable = paired_bootstrap(y, a, b, macro_average_precision, n_boot=200, seed=3)
    assert by_callable["ci_low"] == result["ci_low"] and by_callable["delta"] == result["delta"]


def test_paired_bootstrap_rejects_bad_input():
    y, a, b = _classification(n=20)
    with pytest.raises(ValueError):
        paired_bootstrap(y, a[:10], b, "accuracy")
    with pytest.raises(ValueError):
        paired_bootstrap(y, a, b, "f1")


# --------------------------------------------------------------------------- p-values, Holm

def test_p_value_counts_a_tie_once_not_in_both_tails():
    """The defect the definition fixes: an interval [+0.000, +0.104] came with p = 0.272,
    because every resample with a difference of exactly 0 was counted in both tails."""
    from results.stats import bootstrap_p_value

    observed = 0.05
    # 1000 resamples: 30 at exactly 0, 10 below 0, the rest above (the interval's 2.5% point is 0)
    deltas = np.array([-0.02] * 10 + [0.0] * 30 + [0.05] * 560 + [0.104] * 400)
    low = np.quantile(deltas, 0.025)
    assert low == 0.0
    old = min(1.0, 2 * min(np.sum(deltas <= 0) + 1, np.sum(deltas >= 0) + 1) / (len(deltas) + 1))
    assert old == pytest.approx(0.0819, abs=1e-3)  # what the old two-tail count gave here
    p = bootstrap_p_value(deltas, observed)
    # |d* - 0.05| >= 0.05: the 10 below 0, the 30 at 0, and the 400 at 0.104 (|0.054| >= 0.05)
    assert p == pytest.approx((1 + 10 + 30 + 400) / 1001)
    assert bootstrap_p_value(deltas, 0.0) == 1.0  # no observed difference: no evidence at all
    assert bootstrap_p_value([0.1] * 99, 0.1) == pytest.approx(1 / 100)  # nothing as extreme: the floor


def test_p_value_agrees_with_the_percentile_interval():
    """Where the 95% percentile interval excludes 0, p is about 0.05 or less, and where it
    includes 0 with room to spare, p is well above 0.05."""
    from results.stats import bootstrap_p_value

    rng = np.random.default_rng(0)
    for shift in (0.0, 0.01, 0.02, 0.05, 0.08):
        deltas = rng.normal(shift, 0.02, 9999)
        low, high = np.quantile(deltas, [0.025, 0.975])
        p = bootstrap_p_value(deltas, shift)
        if low > 0.002:
            assert p < 0.06, (shift, p)
        if low < -0.01:
            assert p > 0.1, (shift, p)


def test_holm_matches_the_step_down_definition():
    from results.stats import holm

    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    adjusted = holm(p)
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), each at least the previous
    assert adjusted[3] == pytest.approx(0.02) and adjusted[0] == pytest.approx(0.03)
    assert adjusted[2] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    assert np.isnan(adjusted[4])
    assert holm([0.2, 0.9]) == [pytest.approx(0.4), pytest.approx(0.9)]
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return
    rng = np.random.default_rng(1)
    values = rng.random(40) ** 3
    assert holm(values) == pytest.approx(list(multipletests(values, method="holm")[1]))


def test_format_p_shows_the_floor_as_an_upper_bound():
    from results.stats import format_p, p_floor

    assert p_floor(9999) == pytest.approx(1e-4)
    assert format_p(1 / 10000, 9999) == "< 0.0001"
    assert format_p(1 / 1001, 1000) == "< 0.001"
    assert format_p(2 / 1001, 1000) == "0.002"
    assert format_p(0.0423) == "0.042" and format_p(1.0, 9999) == "1.000"
    assert format_p(0.00004) == "< 0.001"
    assert format_p(float("nan")) == "–"
