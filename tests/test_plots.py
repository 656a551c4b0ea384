"""Figures drawn from results: the plotted content (points, axes, labels), not just files,
and the print rules (fonts >= 7 pt, no overlapping text, one legend clear of the data)."""

from __future__ import annotations

import numpy as np
import pytest

from results import plots
from results.style import text_problems

from synthetic_results import N_TEST, TASKS, expected_value, synthetic_results


@pytest.fixture
def captured(monkeypatch):
    """The figures as drawn: ``save`` is wrapped to keep each figure for inspection."""
    kept = {}
    real_save = plots.save

    def keep(fig, stem):
        kept[str(stem).rsplit("/", 1)[-1]] = fig
        return real_save(fig, stem)

    monkeypatch.setattr(plots, "save", keep)
    return kept


def test_size_figure_plots_the_domain_mean_per_series_against_k(tmp_path, captured) -> None:
    frame = synthetic_results()
    out = plots.size_figure(frame, tmp_path / "size", one_column=tmp_path / "size_1col")
    assert (tmp_path / "size.png").stat().st_size > 1000 and (tmp_path / "size_1col.pdf").exists()
    assert list(out["series"]) == ["speech", "music", "environment"]
    for domain, lines in out["series"].items():
        tasks = [t for t, d in TASKS.items() if d == domain]
        assert set(lines) == {"mtc", "par"}  # the arm "mtc uts-32" without its tag system
        for objective, points in lines.items():
            assert [k for k, _ in points] == [32, 64, 128]
            for k, v in points:  # the mean over the domain's tasks (two seeds, whose noise cancels)
                assert v == pytest.approx(np.mean([expected_value(objective, k, t) for t in tasks]), abs=1e-12)
    assert out["baselines"]["music"] == pytest.approx(expected_value("random", None, "instrument"))
    assert out["band"] == "seeds"
    # two seeds at +-0.004 around the mean: the t half-width t(.975, 1) * 0.004 = 0.0508
    assert out["bands"]["speech"]["mtc"][0] == pytest.approx(12.7062 * 0.004, rel=1e-3)

    for name in ("size", "size_1col"):
        fig = captured[name]
        axes = fig.axes
        assert [ax.get_title() for ax in axes] == ["speech", "music", "environment"]
        speech = axes[0]
        solid = [line for line in speech.get_lines() if line.get_linestyle() == "-"]
        dashed = [line for line in speech.get_lines() if line.get_linestyle() == "--"]
        assert len(solid) == 2 and len(dashed) == 1  # one line per series; the random encoder once
        for line in solid:  # nudged apart by a few hundredths of a decade at most
            assert np.allclose(np.log10(line.get_xdata()), np.log10([32, 64, 128]), atol=0.02)
        assert speech.get_xscale() == "log" and fig.get_supxlabel() == "tag-system size K"
        assert speech.get_ylabel() == "accuracy (test), task mean"
        assert all(ax.get_ylim() == speech.get_ylim() for ax in axes)  # one y-range: equal gaps look equal
        assert not any(ax.get_legend() for ax in axes) and len(fig.legends) == 1
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["mtc", "par", "random (reference)"]
        assert text_problems(fig) == [], name
    assert captured["size"].get_size_inches()[0] == pytest.approx(6.9)
    assert captured["size_1col"].get_size_inches()[0] == pytest.approx(3.3)


def test_one_seed_bands_come_from_the_test_set_size(tmp_path) -> None:
    frame = synthetic_results(seeds=(0,))
    out = plots.size_figure(frame, tmp_path / "size")
    assert out["band"] == "test clips"
    p = [expected_value("mtc", 32, t) - 0.004 for t in ("speaker", "language")]
    want = 1.96 * np.sqrt(sum(x * (1 - x) / N_TEST[t] for x, t in zip(p, ("speaker", "language")))) / 2
    assert out["bands"]["speech"]["mtc"][0] == pytest.approx(want)


def test_size_figure_needs_two_sizes(tmp_path) -> None:
    assert plots.size_figure(synthetic_results(ks=(32,)), tmp_path / "size") is None
    assert not (tmp_path / "size.png").exists()


def test_scaling_figure_averages_tasks_within_a_domain(tmp_path, captured) -> None:
    frame = synthetic_results(ks=(32,), clips=[100, 1000, 10000])
    out = plots.scaling_figure(frame, tmp_path / "scaling", one_column=tmp_path / "scaling_1col")
    speech = out["series"]["speech"]
    assert set(speech) == {"mtc uts-32", "par uts-32"}  # random has no pre-training clips
    for arm, points in speech.items():
        objective = arm.split()[0]
        assert [n for n, _ in points] == [100, 1000, 10000]
        for n, v in points:
            want = np.mean([expected_value(objective, 32, t) for t in ("speaker", "language")]) + 0.02 * np.log10(n / 100)
            assert v == pytest.approx(want, abs=1e-12)
    fig = captured["scaling"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and fig.get_supxlabel() == "pre-training clips"
    assert [len(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "-"] == [3, 3]
    assert text_problems(fig) == [] and text_problems(captured["scaling_1col"]) == []
    assert plots.scaling_figure(synthetic_results(), tmp_path / "none") is None
    # Clips that differ only because a smaller tag system keeps fewer: not a scaling study.
    by_k = synthetic_results().assign(train_clips=lambda f: f["tag_system_size"].map({32: 900, 64: 950, 128: 990}))
    assert plots.scaling_figure(by_k, tmp_path / "by_k") is None


def test_heatmap_is_the_difference_from_random_per_arm_and_domain(tmp_path, captured) -> None:
    frame = synthetic_results()
    out = plots.objective_domain_heatmap(frame, tmp_path / "heatmap", one_column=tmp_path / "heatmap_1col")
    arms = [f"{o} uts-{k}" for o in ("mtc", "par") for k in (32, 64, 128)]
    assert out["rows"] == arms and out["columns"] == ["speech", "music", "environment"]
    assert out["mode"] == "difference"
    for i, arm in enumerate(out["rows"]):
        objective, k = arm.split(" uts-")
        for j, domain in enumerate(out["columns"]):
            tasks = [t for t, d in TASKS.items() if d == domain]
            want = np.mean([expected_value(objective, int(k), t) - expected_value("random", None, t) for t in tasks])
            assert out["values"][i][j] == pytest.approx(want, abs=1e-6)
    assert out["baseline"]["speech"] == pytest.approx(np.mean([expected_value("random", None, t)
                                                               for t in ("speaker", "language")]))
    for name in ("heatmap", "heatmap_1col"):
        fig = captured[name]
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == arms + ["random (accuracy)"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["speech", "music", "environment"]
        assert len(ax.texts) == 7 * 3  # a value per cell, and the random encoder's own row
        image = ax.get_images()[0]
        low, high = image.get_clim()
        assert low == -high  # a diverging scale centred at 0
        assert "+0.100" in [t.get_text() for t in ax.texts]
        assert text_problems(fig) == [], name


def test_heatmap_without_random_marks_chance(tmp_path, captured) -> None:
    frame = synthetic_results()
    out = plots.objective_domain_heatmap(frame[frame["objective"] != "random"], tmp_path / "metric")
    assert out["mode"] == "metric" and out["baseline"] is None
    labels = [t.get_text() for t in captured["metric"].axes[0].get_yticklabels()]
    assert labels[-1] == "chance"


def test_figures_are_byte_stable(tmp_path) -> None:
    frame = synthetic_results()
    plots.size_figure(frame, tmp_path / "a")
    plots.size_figure(frame, tmp_path / "b")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_text_problems_finds_small_overlapping_and_covering_text() -> None:
    """The checker itself: it must see what the figures must avoid."""
    from results.style import figure

    with figure(width="one", height=2.0) as (fig, ax):
        ax.plot([0, 1], [0, 1], label="a line")
        ax.set_title("title")
        ax.text(0.5, 0.5, "small", fontsize=5)
        ax.text(0.5, 0.5, "on top", fontsize=8)
        ax.legend(loc="center")
        problems = text_problems(fig)
    assert any("font 5.0 pt" in p for p in problems)
    assert any("texts overlap" in p and "on top" in p for p in problems)
    assert any("legend overlaps the axes" in p for p in problems)
