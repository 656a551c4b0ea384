"""``harness report`` from a results table: every table in three formats, figures, HTML, provenance."""

from __future__ import annotations

import json
import re

import pytest

from results.report import bootstrap_renderings, domain_means, write_report
from synthetic_results import TASKS, expected_value, synthetic_results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    frame = synthetic_results()
    results = root / "results.parquet"
    frame.to_parquet(results, index=False)
    index = write_report(results, root / "a", title="Synthetic study")
    write_report(results, root / "b", title="Synthetic study")
    return root, index


def test_report_writes_every_table_in_three_formats(report) -> None:
    root, index = report
    out = index.parent
    for stem in ("main_linear-mean", "objectives", "tag_system_size"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 100, (stem, ext)
    for stem in ("objective_domain", "tag_system_size"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000
        assert (out / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert not (out / "figures" / "data_scaling.png").exists()  # one data size: said, not drawn
    text = index.read_text()
    for heading in ("## Main comparison", "## Objectives", "## Tag-system size", "## Data scaling"):
        assert heading in text
    assert "no objective was trained on two or more data sizes" in text
    assert "![Objective × domain: mean test metric.](figures/objective_domain.png)" in text


def test_main_table_rests_on_two_seeds_with_intervals(report) -> None:
    _, index = report
    table = (index.parent / "tables" / "main_linear-mean.md").read_text()
    assert "Rests on 2 pre-training seeds per cell" in table
    # mtc uts-128 on speaker: mean of the two seeds is the closed-form value, ± the t interval.
    row = next(line for line in table.splitlines() if line.startswith("| mtc uts-128 "))
    want = expected_value("mtc", 128, "speaker")
    assert f"{want:.3f} ± " in row
    # The seeds differ by ±0.004, so the half-width is t(0.975, 1) * 0.004 = 0.0508.
    assert "± 0.051" in row


def test_objectives_table_averages_a_domain_then_seeds(report) -> None:
    _, index = report
    csv_text = (index.parent / "tables" / "objectives.csv").read_text()
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    speech = {r["arm"]: float(r["mean"]) for r in rows if r["task"] == "mean" and r["domain"] == "speech"}
    for objective, value in speech.items():
        ks = [None] if objective == "random" else [32, 64, 128]
        want = sum(expected_value(objective, k, t) for k in ks for t in ("speaker", "language")) / (2 * len(ks))
        assert value == pytest.approx(want, abs=1e-6)
    assert set(speech) == {"mtc", "par", "random"}


def test_latex_tables_have_booktabs_structure(report) -> None:
    _, index = report
    for path in (index.parent / "tables").glob("*.tex"):
        tex = path.read_text()
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex, path.name
        assert tex.count("{") == tex.count("}"), path.name
        assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex


def test_report_is_deterministic(report) -> None:
    root, _ = report
    a, b = root / "a", root / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "provenance.json")
    assert len(files) >= 15
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_html_is_self_contained(report) -> None:
    _, index = report
    html = index.with_suffix(".html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html
    assert html.count("<table>") == 3  # main, objectives, tag-system size
    assert "<b>" in html  # the bold cells survive


def test_provenance_names_commit_versions_and_digests(report) -> None:
    _, index = report
    record = json.loads((index.parent / "provenance.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", record["git_commit"])
    assert record["versions"]["torch"] and record["versions"]["seaborn"]
    assert len(record["results"]["sha256"]) == 64
    assert "tables/main_linear-mean.tex" in record["files"]
    import hashlib

    tex = (index.parent / "tables" / "main_linear-mean.tex").read_bytes()
    assert record["files"]["tables/main_linear-mean.tex"] == hashlib.sha256(tex).hexdigest()


def test_domain_means_keep_seeds_apart() -> None:
    frame = synthetic_results(ks=(32,))
    means = domain_means(frame, lambda r: str(r.objective))
    assert sorted(set(means["run"])) == ["mtc s0", "mtc s1", "par s0", "par s1", "random s0", "random s1"]
    music = means[(means["run"] == "par s1") & (means["domain"] == "music")]["value"].item()
    assert music == pytest.approx(expected_value("par", 32, "instrument") + 0.004)
    assert len(means) == 6 * len(set(TASKS.values()))


def test_bootstrap_table_marks_intervals_that_exclude_zero() -> None:
    rows = [
        {"run": "mtc s0", "task": "a", "domain": "speech", "metric": "accuracy", "delta": 0.2, "ci_low": 0.1,
         "ci_high": 0.3, "p_value": 0.001, "n": 50, "n_boot": 1000, "value_a": 0.7, "value_b": 0.5},
        {"run": "par s0", "task": "a", "domain": "speech", "metric": "accuracy", "delta": 0.02, "ci_low": -0.05,
         "ci_high": 0.09, "p_value": 0.6, "n": 50, "n_boot": 1000, "value_a": 0.52, "value_b": 0.5},
    ]
    out = bootstrap_renderings(rows)
    assert "| mtc s0 | a | accuracy | **+0.200** | [+0.100, +0.300] | 0.001 | 50 |" in out["md"]
    assert "| par s0 | a | accuracy | +0.020 | [-0.050, +0.090] | 0.600 | 50 |" in out["md"]
    assert "\\textbf{+0.200}" in out["tex"] and out["tex"].count("\\\\") == 3
    assert out["csv"].splitlines()[1].startswith("mtc s0,a,speech,accuracy,0.200000,0.100000,0.300000")


def test_objectives_keep_caption_arms_apart() -> None:
    from results.report import _objective_arm

    frame = synthetic_results(ks=(32,)).assign(captions=None, init=None)
    frame.loc[frame["objective"] == "par", "captions"] = "weak_caption"
    names = {_objective_arm(r) for r in frame.itertuples(index=False)}
    assert names == {"mtc", "par [weak_caption]", "random"}
