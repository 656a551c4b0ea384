"""The README's quickstart numbers are generated, and they are a fresh run's.

``python benchmarks/quickstart_readme.py`` runs the quickstart, keeps the numbers in
``benchmarks/quickstart_readme.json`` and renders the README's blocks from them
(``results/readme.py``). Fast: the README's blocks are exactly that rendering (so nobody
edits a number by hand), the table has every arm × task of the quickstart named as the
report names them, and every claim is read off the bootstrap table with its Holm
correction. Slow: the snapshot equals the results of the fresh quickstart run that
``tests/test_e2e.py::test_quickstart_end_to_end_every_objective`` makes in the same pytest
session (CI runs both; this one skips, saying so, when that run is not there), so a
README left behind by a change to an objective fails CI until the command is rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from results.readme import read_blocks, render_blocks, results_table

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "benchmarks" / "quickstart_readme.json"
REGENERATE = "python benchmarks/quickstart_readme.py"


@pytest.fixture(scope="module")
def snap() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_readme_blocks_are_the_rendering_of_the_snapshot(snap) -> None:
    have = read_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    want = render_blocks(snap)
    assert set(have) == set(want), f"README lacks generated blocks {sorted(set(want) - set(have))}"
    for name in want:
        assert have[name] == want[name], f"README block {name} was edited by hand or is stale: run `{REGENERATE}`"


def test_snapshot_covers_every_quickstart_arm_and_task_by_its_report_name(snap) -> None:
    from harness.graph import expand
    from harness.labels import arm_label
    from harness.study import load_study

    study = load_study(ROOT / "studies" / "quickstart.yaml")
    graph = expand(study.config)
    arms = {arm_label(n.coords) for n in graph if n.stage == "pretrain"}
    tasks = {n.coords["task"] for n in graph if n.stage == "probe"}
    assert set(snap["arms"]) == arms and set(snap["tasks"]) == tasks
    assert all(set(snap["values"][a]) == tasks for a in arms)  # 9 arms x 5 tasks, no gap
    table = results_table(snap)
    for arm in arms:
        assert f"| {arm} |" in table
    assert "| *n test* |" in table and "| *chance* |" in table


def test_claims_are_read_off_the_bootstrap_with_holm(snap) -> None:
    from results.report import bootstrap_summary
    from results.stats import holm

    rows = snap["bootstrap"]
    assert len(rows) == (len(snap["arms"]) - 1) * len(snap["tasks"])  # every trained arm x task vs random
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p_value"] for r in rows]), abs=1e-6)
    block = render_blocks(snap)["quickstart-results"]
    assert bootstrap_summary(rows) in block
    significant = [r for r in rows if r["p_holm"] < 0.05]
    for r in significant:
        assert f"{r['arm']} on " in block
    assert f"{len(significant)} are significant" in block


def _fresh_quickstart(tmp_path_factory) -> Path | None:
    """The quickstart run test_e2e made in this session, if it did."""
    base = tmp_path_factory.getbasetemp()
    found = sorted(base.glob("*/quickstart/results.parquet"))
    return found[0].parent if found else None


@pytest.mark.slow
def test_readme_table_equals_a_fresh_quickstart_run(snap, tmp_path_factory) -> None:
    out = _fresh_quickstart(tmp_path_factory)
    if out is None:
        pytest.skip("no fresh quickstart run in this session: run it with tests/test_e2e.py "
                    "(python -m pytest tests/test_e2e.py tests/test_readme.py)")
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    frame = frame[frame["head"] == snap["head"]]
    fresh = frame.groupby(["arm", "task"])["value"].mean()
    stale = []
    for arm in snap["arms"]:
        for task in snap["tasks"]:
            claimed = f"{snap['values'][arm][task]:.3f}"
            measured = f"{fresh.get((arm, task), float('nan')):.3f}"
            if claimed != measured:
                stale.append(f"{arm} / {task}: README {claimed}, fresh run {measured}")
    assert not stale, f"{len(stale)} README cells differ from a fresh run (run `{REGENERATE}`): {stale}"
    boot = out / "report" / "tables" / "bootstrap.csv"
    if boot.is_file():
        import csv

        rows = list(csv.DictReader(boot.open()))
        claimed = {(r["arm"], r["task"]) for r in snap["bootstrap"] if r["p_holm"] < 0.05}
        measured = {(r["arm"], r["task"]) for r in rows if float(r["p_holm"]) < 0.05}
        assert claimed == measured, f"the README's claims differ from a fresh run's bootstrap: run `{REGENERATE}`"
