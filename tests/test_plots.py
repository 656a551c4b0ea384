"""Figures drawn from results: the plotted content (points, axes, labels), not just files."""

from __future__ import annotations

import numpy as np
import pytest

from results import plots

from synthetic_results import OBJECTIVE_GAIN, TASKS, expected_value, synthetic_results


@pytest.fixture
def captured(monkeypatch):
    """The figures as drawn: ``save`` is wrapped to keep each figure's axes for inspection."""
    kept = {}
    real_save = plots.save

    def keep(fig, stem):
        kept[str(stem).rsplit("/", 1)[-1]] = fig
        return real_save(fig, stem)

    monkeypatch.setattr(plots, "save", keep)
    return kept


def test_size_figure_plots_mean_metric_against_k_per_task(tmp_path, captured) -> None:
    frame = synthetic_results()
    out = plots.size_figure(frame, tmp_path / "size")
    assert (tmp_path / "size.png").stat().st_size > 1000 and (tmp_path / "size.pdf").exists()
    assert list(out["series"]) == ["speech", "music", "environment"]
    for domain, lines in out["series"].items():
        for name, points in lines.items():
            objective, task = name.split(" / ")
            assert [k for k, _ in points] == [32, 64, 128]
            for k, v in points:
                assert v == pytest.approx(expected_value(objective, k, task), abs=1e-12)
    assert out["baselines"]["music"]["instrument"] == pytest.approx(expected_value("random", None, "instrument"))

    fig = captured["size"]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["speech", "music", "environment"]
    speech = axes[0]
    solid = [line for line in speech.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in speech.get_lines() if line.get_linestyle() == "--"]
    assert len(solid) == 4 and len(dashed) == 2  # 2 objectives x 2 speech tasks; the random encoder per task
    assert all(list(line.get_xdata()) == [32, 64, 128] for line in solid)
    assert speech.get_xscale() == "log" and speech.get_xlabel() == "tag-system size K"
    assert speech.get_ylabel() == "accuracy (test)"
    assert sorted(t.get_text() for t in speech.get_legend().get_texts()) == sorted(
        f"{o} / {t}" for o in OBJECTIVE_GAIN for t in ("speaker", "language"))


def test_size_figure_needs_two_sizes(tmp_path) -> None:
    assert plots.size_figure(synthetic_results(ks=(32,)), tmp_path / "size") is None
    assert not (tmp_path / "size.png").exists()


def test_scaling_figure_averages_tasks_within_a_domain(tmp_path, captured) -> None:
    frame = synthetic_results(ks=(32,), clips=[100, 1000, 10000])
    out = plots.scaling_figure(frame, tmp_path / "scaling")
    speech = out["series"]["speech"]
    assert set(speech) == {"mtc uts-32", "par uts-32"}  # random has no pre-training clips
    for arm, points in speech.items():
        objective = arm.split()[0]
        assert [n for n, _ in points] == [100, 1000, 10000]
        for n, v in points:
            want = np.mean([expected_value(objective, 32, t) for t in ("speaker", "language")]) + 0.02 * np.log10(n / 100)
            assert v == pytest.approx(want, abs=1e-12)
    ax = captured["scaling"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "pre-training clips"
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [3, 3]
    assert plots.scaling_figure(synthetic_results(), tmp_path / "none") is None
    # Clips that differ only because a smaller tag system keeps fewer: not a scaling study.
    by_k = synthetic_results().assign(train_clips=lambda f: f["tag_system_size"].map({32: 900, 64: 950, 128: 990}))
    assert plots.scaling_figure(by_k, tmp_path / "by_k") is None


def test_heatmap_rows_objectives_columns_domains(tmp_path, captured) -> None:
    frame = synthetic_results()
    out = plots.objective_domain_heatmap(frame, tmp_path / "heatmap")
    assert out["rows"] == ["mtc", "par", "random"] and out["columns"] == ["speech", "music", "environment"]
    # Independent: average the closed-form values over K, then over a domain's tasks.
    for i, objective in enumerate(out["rows"]):
        for j, domain in enumerate(out["columns"]):
            tasks = [t for t, d in TASKS.items() if d == domain]
            ks = [None] if objective == "random" else [32, 64, 128]
            want = np.mean([np.mean([expected_value(objective, k, t) for k in ks]) for t in tasks])
            assert out["values"][i][j] == pytest.approx(want, abs=1e-6)
    ax = captured["heatmap"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mtc", "par", "random"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["speech", "music", "environment"]
    assert len(ax.texts) == 9  # one annotation per cell


def test_figures_are_byte_stable(tmp_path) -> None:
    frame = synthetic_results()
    plots.size_figure(frame, tmp_path / "a")
    plots.size_figure(frame, tmp_path / "b")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
