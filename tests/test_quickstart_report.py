"""The quickstart's own report meets the publication rules (slow: it needs a quickstart run).

Uses the fresh quickstart run that ``tests/test_e2e.py::test_quickstart_end_to_end_every_objective``
makes in the same pytest session (CI runs both; this skips, saying so, without it), and
rewrites its report into a scratch folder under umask 022 with every figure checked as it
is saved:

- every figure, at one-column (3.3 in) and two-column (6.9 in) width: no text under 7 pt,
  no overlapping text, no legend over data or another legend (``results.style.text_problems``);
- every LaTeX table compiles in a two-column article with no overfull box;
- one name per arm: the main table, the per-domain table, the heatmap, the bootstrap and
  the results' ``arm`` column agree;
- every file of the report is world-readable (0644).
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest

from figure_checks import checked_saves

ROOT = Path(__file__).resolve().parent.parent


def fresh_quickstart(tmp_path_factory) -> Path | None:
    found = sorted(tmp_path_factory.getbasetemp().glob("*/quickstart/results.parquet"))
    return found[0].parent if found else None


def rebuild_report(run: Path, out: Path, home: str) -> tuple[Path, dict]:
    """The quickstart's report of ``run`` written to ``out``, every figure checked as it is saved."""
    from harness.dispatch import Layout
    from harness.graph import expand
    from harness.study import load_study
    from results.report import write_report

    study = load_study(ROOT / "studies" / "quickstart.yaml")
    layout = Layout(out=run, cache=Path(home))
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_HOME", home)
    old = os.umask(0o022)
    try:
        with checked_saves() as problems:
            index = write_report(run / "results.parquet", out, title="quickstart", study=study,
                                 graph=expand(study.config), layout=layout, log=lambda _m: None)
    finally:
        os.umask(old)
        mp.undo()
    return index, {Path(stem).name: found for stem, found in problems.items()}


@pytest.mark.slow
def test_quickstart_report_is_fit_for_publication(tmp_path_factory, tmp_path, harness_env) -> None:
    run = fresh_quickstart(tmp_path_factory)
    if run is None:
        pytest.skip("no fresh quickstart run in this session: run it with tests/test_e2e.py "
                    "(python -m pytest tests/test_e2e.py tests/test_quickstart_report.py)")
    index, problems = rebuild_report(run, tmp_path / "report", harness_env["HARNESS_HOME"])
    figures = {"objective_domain", "tag_system_size", "wordcloud", "longtail", "tsne_coverage"}
    assert {name for name in problems} == figures | {f"{f}_1col" for f in figures}
    for name, (width, found) in problems.items():
        assert width == (3.3 if name.endswith("_1col") else 6.9), name
        assert not found, (name, found)

    from test_tables import compile_two_column, overfull

    tables = {p.stem: p.read_text() for p in sorted((index.parent / "tables").glob("*.tex"))}
    assert {"main_linear-mean", "objectives", "tag_system_size", "bootstrap"} <= set(tables)
    log = compile_two_column(tables, tmp_path)
    assert not overfull(log), overfull(log)

    import pandas as pd

    def arms(stem: str) -> set[str]:
        with open(index.parent / "tables" / f"{stem}.csv", newline="") as f:
            return {r["arm"] for r in csv.DictReader(f)}

    results = set(pd.read_parquet(run / "results.parquet")["arm"])
    assert arms("main_linear-mean") == arms("objectives") == results
    assert arms("bootstrap") == results - {"random"}
    assert arms("tag_system_size") == {a for a in results if "K=" in a}
    text = index.read_text()
    for arm in results:
        assert f"| {arm} |" in text

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in index.parent.rglob("*") if p.is_file()}
    assert all(m == 0o644 for m in modes.values()), {k: oct(v) for k, v in modes.items() if v != 0o644}
