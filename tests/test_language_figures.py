"""UTS Fig. 3's retrieval and captioning panels against K, beside the probe panel
(results/plots.py language_size_figure): the panel means against a direct computation."""

from __future__ import annotations

import pandas as pd
import pytest

from figure_checks import checked_saves, with_problems
from results import plots
from synthetic_results import synthetic_results


def _with_language(frame: pd.DataFrame) -> pd.DataFrame:
    """Add trained-retrieval rows (R@1 both ways, R@5) and captioning rows (CIDEr-D, BLEU-4)
    with known values for every run of ``frame``."""
    runs = frame.drop_duplicates(["arm", "seed"])
    rows = []
    for r in runs.to_dict("records"):
        k = r["tag_system_size"] if pd.notna(r["tag_system_size"]) else 16
        base = {**r, "domain": "environment", "n_test": 30, "n_classes": None, "chance": None}
        rows += [{**base, "task": "caps_retrieval", "head": "trained-text-to-audio", "metric": "recall@1", "value": k / 1000},
                 {**base, "task": "caps_retrieval", "head": "trained-audio-to-text", "metric": "recall@1", "value": k / 500},
                 {**base, "task": "caps_retrieval", "head": "trained-text-to-audio", "metric": "recall@5", "value": 0.9},
                 {**base, "task": "caps_captioning", "head": "greedy", "metric": "cider_d", "value": k / 100},
                 {**base, "task": "caps_captioning", "head": "greedy", "metric": "bleu_4", "value": 0.7}]
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)


def test_language_panels_against_k(tmp_path) -> None:
    frame = _with_language(synthetic_results())
    out = plots.language_size_figure(frame, tmp_path / "lang", "linear-mean", one_column=tmp_path / "lang_1col")
    assert (tmp_path / "lang.png").stat().st_size > 1000 and (tmp_path / "lang_1col.pdf").exists()
    assert list(out["series"]) == ["linear probe", "retrieval R@1", "captioning CIDEr-D"]
    for k, v in out["series"]["retrieval R@1"]["mtc"]:  # the mean of both directions' R@1
        assert v == pytest.approx(0.5 * (k / 1000 + k / 500))
    for k, v in out["series"]["captioning CIDEr-D"]["par"]:
        assert v == pytest.approx(k / 100)
    probe = frame[(frame["head"] == "linear-mean") & (frame["objective"] == "mtc") & (frame["tag_system_size"] == 64)]
    assert dict(out["series"]["linear probe"]["mtc"])[64] == pytest.approx(probe["value"].mean())
    assert out["baselines"]["captioning CIDEr-D"] == pytest.approx(0.16)


def test_language_panels_need_language_rows_and_two_sizes(tmp_path) -> None:
    assert plots.language_size_figure(synthetic_results(), tmp_path / "a", "linear-mean") is None
    assert plots.language_size_figure(_with_language(synthetic_results(ks=(32,))), tmp_path / "b", "linear-mean") is None
    assert not list(tmp_path.iterdir())


def test_report_draws_the_language_panels_and_tables_them(tmp_path) -> None:
    from results.report import write_report

    results = tmp_path / "results.parquet"
    _with_language(synthetic_results()).to_parquet(results, index=False)
    with checked_saves() as problems:
        index = write_report(results, tmp_path / "report", title="Language panels")
    figures = tmp_path / "report" / "figures"
    assert (figures / "tag_system_size_language.png").exists() and (figures / "tag_system_size.png").exists()
    assert problems and with_problems(problems) == {}
    text = index.read_text() if hasattr(index, "read_text") else (tmp_path / "report" / "index.md").read_text()
    assert "retrieval R@1" in text and "captioning CIDEr-D" in text
