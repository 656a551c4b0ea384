"""``harness report`` from a results table: every table in three formats, figures at both
print widths, a self-contained HTML page, provenance, file modes, one name per arm."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat

import pytest

from figure_checks import checked_saves, with_problems
from results.report import ONE_COLUMN, bootstrap_renderings, bootstrap_summary, domain_means, write_report
from synthetic_results import N_TEST, TASKS, expected_value, synthetic_results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The synthetic report, written twice under umask 022; every figure drawn is checked
    for small or overlapping text (results.style.text_problems) as it is saved."""
    root = tmp_path_factory.mktemp("report")
    frame = synthetic_results()
    results = root / "results.parquet"
    frame.to_parquet(results, index=False)
    old = os.umask(0o022)
    try:
        with checked_saves() as problems:
            index = write_report(results, root / "a", title="Synthetic study")
            write_report(results, root / "b", title="Synthetic study")
    finally:
        os.umask(old)
    return root, index, problems


def _csv(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_report_writes_every_table_in_three_formats(report) -> None:
    root, index, _ = report
    out = index.parent
    for stem in ("main_linear-mean", "objectives", "tag_system_size"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 100, (stem, ext)
    for stem in ("objective_domain", "tag_system_size"):
        for variant in (stem, stem + ONE_COLUMN):
            assert (out / "figures" / f"{variant}.png").stat().st_size > 1000
            assert (out / "figures" / f"{variant}.pdf").read_bytes().startswith(b"%PDF")
    assert not (out / "figures" / "data_scaling.png").exists()  # one data size: said, not drawn
    text = index.read_text()
    for heading in ("## Main comparison", "## Objectives", "## Tag-system size", "## Data scaling"):
        assert heading in text
    assert "no objective was trained on two or more data sizes" in text
    assert "](figures/objective_domain.png)" in text and f"(figures/objective_domain{ONE_COLUMN}.pdf)" in text


def test_figures_are_printed_at_column_widths_with_clean_text(report) -> None:
    """Acceptance: at one-column (3.3 in) and two-column (6.9 in) width, no text under
    7 pt, no overlapping text, no legend over data or another legend."""
    root, index, problems = report
    assert len(problems) == 2 * 2 * 2  # two figures, two widths, two reports
    assert with_problems(problems) == {}
    from PIL import Image

    for stem, inches in (("tag_system_size", 6.9), (f"tag_system_size{ONE_COLUMN}", 3.3),
                         (f"objective_domain{ONE_COLUMN}", 3.3)):
        with Image.open(index.parent / "figures" / f"{stem}.png") as image:
            assert image.size[0] == round(inches * 300), stem  # saved at its print size, 300 dpi


def test_page_states_study_commit_date_and_seeds(report) -> None:
    _, index, _ = report
    text = index.read_text()
    top = text.split("## ", 1)[0]
    assert "**Commit** `0123456789abcdef0123456789abcdef01234567`" in top
    assert "**Completed** 2026-01-02 10:33 UTC" in top  # the latest finished_at of the results
    assert "**Pre-training seeds** 0, 1" in top and "**Probe seeds** 0" in top
    assert "**Study** `synthetic`" in top
    assert "6 pre-trained arms and the randomly initialised encoder (arm `random`), probed on 4 tasks" in top


def test_main_table_rests_on_two_seeds_with_intervals(report) -> None:
    _, index, _ = report
    table = (index.parent / "tables" / "main_linear-mean.md").read_text()
    assert "Rests on 2 pre-training seeds per cell" in table
    # mtc uts-128 on speaker: mean of the two seeds is the closed-form value, ± the t interval.
    row = next(line for line in table.splitlines() if line.startswith("| mtc uts-128 "))
    want = expected_value("mtc", 128, "speaker")
    assert f"{want:.3f} ± " in row
    # The seeds differ by ±0.004, so the half-width is t(0.975, 1) * 0.004 = 0.0508.
    assert "± 0.051" in row
    sizes = next(line for line in table.splitlines() if line.startswith("| *n test* |"))
    assert sizes == "| *n test* |  | " + " | ".join(str(N_TEST[t]) for t in ("language", "speaker", "instrument",
                                                                           "event")) + " |"
    chance = next(line for line in table.splitlines() if line.startswith("| *chance* |"))
    assert "0.200 | 0.125 | 0.125 | 0.125" in chance
    rows = _csv(index.parent / "tables" / "main_linear-mean.csv")
    assert {r["n_test"] for r in rows if r["task"] == "event"} == {"64"}


def test_objectives_table_is_each_arm_by_domain(report) -> None:
    _, index, _ = report
    rows = _csv(index.parent / "tables" / "objectives.csv")
    speech = {r["arm"]: float(r["mean"]) for r in rows if r["task"] == "mean" and r["domain"] == "speech"}
    for arm, value in speech.items():
        objective, _, k = arm.partition(" uts-")
        k = int(k) if k else None
        want = sum(expected_value(objective, k, t) for t in ("speaker", "language")) / 2
        assert value == pytest.approx(want, abs=1e-6)
    assert set(speech) == {f"{o} uts-{k}" for o in ("mtc", "par") for k in (32, 64, 128)} | {"random"}


def test_one_name_per_arm_in_every_table_and_figure(report) -> None:
    _, index, _ = report
    out = index.parent
    main = {r["arm"] for r in _csv(out / "tables" / "main_linear-mean.csv")}
    assert main == {r["arm"] for r in _csv(out / "tables" / "objectives.csv")}
    assert {r["arm"] for r in _csv(out / "tables" / "tag_system_size.csv")} == main - {"random"}
    assert set(synthetic_results()["arm"]) == main  # the results' own arm column, unchanged
    heatmap = index.read_text()
    assert "Arms as in the tables" in heatmap


def test_latex_tables_fit_a_two_column_paper(report, tmp_path) -> None:
    from test_tables import compile_two_column, overfull

    _, index, _ = report
    tables = {}
    for path in sorted((index.parent / "tables").glob("*.tex")):
        tex = path.read_text()
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex, path.name
        assert tex.count("{") == tex.count("}"), path.name
        assert tex.index("\\caption{") < tex.index("\\begin{tabular}"), path.name  # caption above, always
        tables[path.stem] = tex
    log = compile_two_column(tables, tmp_path)
    assert not overfull(log), overfull(log)


def test_report_is_deterministic(report) -> None:
    root, _, _ = report
    a, b = root / "a", root / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "provenance.json")
    assert len(files) >= 19
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_report_files_are_readable_under_the_umask(report) -> None:
    """Under umask 022 every file of the report is 0644 (the temporary files were 0600)."""
    root, index, _ = report
    modes = {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in (root / "a").rglob("*") if p.is_file()}
    assert modes and all(mode == 0o644 for mode in modes.values()), {k: oct(v) for k, v in modes.items() if v != 0o644}


def test_atomic_writes_follow_any_umask(tmp_path) -> None:
    from harness.store import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o640


def test_html_is_self_contained(report) -> None:
    _, index, _ = report
    html = index.with_suffix(".html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    links = re.findall(r'<a href="([^"]+)"', html)
    assert links and all(link.startswith("data:") for link in links)  # every table file and PDF embedded
    assert len(re.findall(r'download="[^"]+\.tex"', html)) == 3 and len(re.findall(r'download="[^"]+\.pdf"', html)) == 4
    import base64

    tex = next(link for link in links if link.startswith("data:application/x-tex"))
    assert base64.b64decode(tex.split(",", 1)[1]).decode().startswith("\\begin{table")
    assert "<script" not in html
    assert html.count("<table>") == 3  # main, objectives, tag-system size
    assert "<b>" in html  # the bold cells survive
    assert "0123456789ab" in html and "2026-01-02 10:33 UTC" in html


def test_provenance_names_commit_versions_and_digests(report) -> None:
    _, index, _ = report
    record = json.loads((index.parent / "provenance.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", record["git_commit"])
    assert record["versions"]["torch"] and record["versions"]["seaborn"]
    assert len(record["results"]["sha256"]) == 64
    assert "tables/main_linear-mean.tex" in record["files"]
    assert f"figures/tag_system_size{ONE_COLUMN}.pdf" in record["files"]
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
    assert set(domain_means(frame)["arm"]) == set(frame["arm"])  # default: the arm column


def _comparisons():
    return [
        {"arm": "mtc K=32", "seed": 0, "task": "mini/speech_speaker", "domain": "speech", "metric": "accuracy",
         "delta": 0.2, "ci_low": 0.1, "ci_high": 0.3, "p_value": 1 / 10000, "n_test": 50, "n_boot": 9999,
         "value_a": 0.7, "value_b": 0.5},
        {"arm": "par K=32", "seed": 0, "task": "mini/speech_speaker", "domain": "speech", "metric": "accuracy",
         "delta": 0.02, "ci_low": -0.05, "ci_high": 0.09, "p_value": 0.6, "n_test": 50, "n_boot": 9999,
         "value_a": 0.52, "value_b": 0.5},
        {"arm": "par K=32", "seed": 0, "task": "mini/music_pitch", "domain": "music", "metric": "accuracy",
         "delta": -0.1, "ci_low": -0.16, "ci_high": -0.04, "p_value": 0.012, "n_test": 72, "n_boot": 9999,
         "value_a": 0.4, "value_b": 0.5},
    ]


def test_bootstrap_table_holm_floor_minus_and_one_column_name() -> None:
    out = bootstrap_renderings(_comparisons())
    md = out["md"]
    # Holm over 3: 0.0001 x 3 = 0.0003; 0.012 x 2 = 0.024; 0.6 x 1 = 0.6
    assert "| mtc K=32 | speech_speaker | **+0.200** | [+0.100, +0.300] | < 0.0001 | 0.000 | 50 |" not in md
    assert "| mtc K=32 | speech_speaker | **+0.200** | [+0.100, +0.300] | < 0.0001 | < 0.001 | 50 |" in md
    zero = bootstrap_renderings([{**_comparisons()[1], "delta": 0.0, "ci_low": -0.0001, "p_value": 1.0}])["md"]
    assert "| par K=32 | speech_speaker | 0.000 | [0.000, +0.090] | 1.000 | 1.000 | 50 |" in zero  # no sign on 0
    assert "| par K=32 | music_pitch | **\u22120.100** | [\u22120.160, \u22120.040] | 0.012 | 0.024 | 72 |" in md
    assert "| par K=32 | speech_speaker | +0.020 | [\u22120.050, +0.090] | 0.600 | 0.600 | 50 |" in md
    head = md.splitlines()[0]
    assert head == "| arm | task | Δ vs random | 95% interval | p | p (Holm) | n test |"
    assert "Holm's step-down adjustment over the 3 comparisons" in md and "2 of 3" in md
    assert "1/(B + 1)" in md and "Pre-training seed 0." in md
    tex = out["tex"]
    assert "\\textbf{$+$0.200}" in tex and "$-$0.160" in tex and "$<$ 0.0001" in tex
    assert tex.index("\\caption{") < tex.index("\\begin{tabular}")
    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert list(rows[0]) == ["arm", "seed", "task", "domain", "metric", "delta", "ci_low", "ci_high", "p_value",
                             "p_holm", "n_test", "n_boot", "value_a", "value_b"]
    assert rows[0]["arm"] == "mtc K=32" and float(rows[0]["p_holm"]) == pytest.approx(0.0003)
    assert rows[2]["delta"] == "-0.100000"  # CSV stays ASCII (rows: by arm, then domain)


def test_bootstrap_summary_reads_its_claims_off_the_table() -> None:
    text = bootstrap_summary(_comparisons())
    assert text == ("Of the 3 differences from the random encoder, 2 are significant at 0.05 after Holm's "
                    "correction: 1 above random (mtc K=32 on speech_speaker (+0.200, p (Holm) < 0.001)) and 1 below "
                    "it (par K=32 on music_pitch (\u22120.100, p (Holm) 0.024)). The other 1 is not separated from "
                    "the random encoder at this test-set size.")
    below = bootstrap_summary(_comparisons()[1:])
    assert "1 is significant at 0.05 after Holm's correction, all below random: par K=32 on music_pitch" in below
    none = bootstrap_summary([{**r, "p_value": 0.5} for r in _comparisons()])
    assert "no arm is separated from the random encoder" in none


def test_data_scaling_table_shows_initialised_arms_beside_training_from_scratch(tmp_path) -> None:
    """CaptionStew's second axis: each objective from scratch and from a supervised encoder,
    at every data size. The section draws both as lines and tabulates every (arm, N)."""
    import pandas as pd

    from harness.labels import arm_label, run_label

    frame = synthetic_results(ks=(32,), clips=[100, 1000])
    frame["data_size"] = frame["train_clips"]
    init = frame[frame["objective"] == "mtc"].copy()
    init["init"] = "audioset/sl"
    init["value"] += 0.05  # a known gain from the supervised start
    frame = pd.concat([frame, init], ignore_index=True)
    coords = frame.drop(columns=["arm", "run"]).to_dict("records")
    frame["arm"] = [arm_label(c) for c in coords]
    frame["run"] = [run_label(c) for c in coords]
    results = tmp_path / "results.parquet"
    frame.to_parquet(results, index=False)
    index = write_report(results, tmp_path / "report", title="Scaling")
    rows = _csv(index.parent / "tables" / "data_scaling.csv")
    speech = {r["arm"]: float(r["mean"]) for r in rows if r["task"] == "mean" and r["domain"] == "speech"}
    assert set(speech) == {f"{o} uts-32{i} N={n}" for o in ("mtc", "par") for n in (100, 1000)
                           for i in ([""] if o == "par" else ["", " init=audioset/sl"])}
    for n in (100, 1000):
        scratch = sum(expected_value("mtc", 32, t) for t in ("speaker", "language")) / 2 + 0.02 * (n == 1000)
        assert speech[f"mtc uts-32 N={n}"] == pytest.approx(scratch, abs=1e-6)
        assert speech[f"mtc uts-32 init=audioset/sl N={n}"] == pytest.approx(scratch + 0.05, abs=1e-6)
    text = index.read_text()
    assert "](figures/data_scaling.png)" in text and "Data scaling: mean test" in text
