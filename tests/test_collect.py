"""harness/collect.py: the results table as structured data.

A real study graph (objective labels, own captions, init from another arm, two seeds, a
task at version 3), stand-in probe records in its store, then the collector's own code
path: every coordinate is a column, ``arm`` and ``task_version`` too, and each job's
resolved config is stored once, in ``configs.parquet``, not on every row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
name: collect
include: {base}
tagging: {{sizes: [32]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives:
    - {{name: mtc, label: sup}}
    - {{name: contrastive, init: sup}}
    - {{name: contrastive, label: weak, captions: weak_caption}}
  baselines: [random]
  seeds: [0, 1]
  steps: 2
probes:
  tasks: [mini/env_event, env_v3]
  seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """(graph, layout, path of results.parquet) after a stand-in run of the study."""
    from harness.collect import write_results
    from harness.dispatch import Layout
    from harness.graph import expand
    from harness.store import atomic_write_json
    from harness.study import load_study

    root = tmp_path_factory.mktemp("collect")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "env_v3.yaml").write_text(f"include: {ROOT / 'probes/tasks/mini/env_event.yaml'}\nversion: 3\n")
    study = root / "study.yaml"
    study.write_text(STUDY.format(base=ROOT / "studies" / "base" / "mini.yaml"))
    patch = pytest.MonkeyPatch()
    patch.setenv("HARNESS_TASK_PATH", str(tasks))
    try:
        graph = expand(load_study(study).config)
    finally:
        patch.undo()
    layout = Layout(out=root / "out", cache=root / "home")
    for i, node in enumerate(n for n in graph if n.stage == "probe"):  # what a probe job leaves in the store
        folder = layout.store.path("probe", node.key)
        atomic_write_json(folder / "sweep.json", {"metric": "accuracy", "heads": [
            {"head": "linear", "pooling": "mean", "lr": 0.001, "weight_decay": 0.0, "valid": 0.5, "test": 0.01 * i}]})
        atomic_write_json(folder / "_done.json", {"outputs": {"n_test": 40}})
    for node in (n for n in graph if n.stage == "pretrain"):
        record = {"outputs": {"train": {"clips": 300}}}
        atomic_write_json(layout.store.path("pretrain", node.key) / "_done.json", record)
    return graph, layout, write_results(graph, layout, "collect")


def test_arm_and_task_version_are_columns(collected) -> None:
    from results.table import load_results

    graph, _, path = collected
    frame = pd.read_parquet(path)
    assert {"arm", "task_version", "objective_label", "run", "run_id", "probe_key"} <= set(frame.columns)
    assert "config" not in frame.columns  # stored once, beside the table
    probes = [n for n in graph if n.stage == "probe"]
    assert len(frame) == len(probes)  # one head and pooling: one row per probe job
    assert dict(frame.groupby("task")["task_version"].unique().map(list)) == {"mini/env_event": [1], "env_v3": [3]}
    arms = sorted(frame["arm"].unique())
    assert arms == ["mini/contrastive init=sup K=32", "mini/sup K=32", "mini/weak [weak_caption]", "random"]
    assert all(row.run == f"{row.arm} s{row.seed}" for row in frame.itertuples())
    assert set(frame["objective_label"].dropna()) == {"sup", "weak"}
    assert set(frame["init"].dropna()) == {"sup K=32"} and set(frame["captions"].dropna()) == {"weak_caption"}
    assert load_results(path)["arm"].equals(frame["arm"])  # read as written, not rebuilt from the labels


def test_every_coordinate_is_a_column(collected) -> None:
    from harness.collect import COORDINATE_COLUMNS

    graph, _, path = collected
    frame = pd.read_parquet(path).set_index("probe_key")
    for node in (n for n in graph if n.stage == "probe"):
        row = frame.loc[node.key]
        for name, value in node.coords.items():
            assert row[COORDINATE_COLUMNS.get(name, name)] == value, (node.key, name)


def test_each_config_is_stored_once(collected) -> None:
    from harness.collect import CONFIGS
    from results.table import CONFIGS as READ, load_configs, row_config

    graph, layout, path = collected
    assert READ == CONFIGS and path.with_name(CONFIGS) == layout.out / CONFIGS
    side = pd.read_parquet(layout.out / CONFIGS)
    assert list(side.columns) == ["stage", "key", "config"]
    assert not side.duplicated(["stage", "key"]).any()
    frame = pd.read_parquet(path)
    assert set(side.loc[side["stage"] == "pretrain", "key"]) == set(frame["run_id"])
    assert set(side.loc[side["stage"] == "probe", "key"]) == set(frame["probe_key"])
    nodes = {n.key: n for n in graph}
    configs = load_configs(path)
    for row in frame.to_dict("records"):
        probe = nodes[row["probe_key"]]
        assert row_config(configs, row) == {"pretrain": nodes[row["run_id"]].config, "probe": probe.config}
        assert row_config(configs, row)["probe"]["task"]["version"] == row["task_version"]


def test_results_written_before_the_new_columns_still_load(collected, tmp_path) -> None:
    """A table with the old layout: no ``arm``, the config on every row."""
    from results.table import build_table, load_configs, load_results, row_config, to_csv, to_markdown

    graph, _, path = collected
    new = load_results(path)
    nodes = {n.key: n for n in graph}
    old = new.drop(columns=["arm", "task_version", "objective_label"]).assign(config=[
        json.dumps({"pretrain": nodes[r].config, "probe": nodes[p].config}, sort_keys=True)
        for r, p in zip(new["run_id"], new["probe_key"])])
    (tmp_path / "old").mkdir()
    old.to_parquet(tmp_path / "old" / "results.parquet", index=False)
    loaded = load_results(tmp_path / "old" / "results.parquet")
    assert loaded["arm"].tolist() == new["arm"].tolist()  # recovered from the run labels
    assert to_csv(build_table(loaded, "linear-mean")) == to_csv(build_table(new, "linear-mean"))
    assert to_markdown(build_table(loaded, "linear-mean")) == to_markdown(build_table(new, "linear-mean"))
    configs = load_configs(tmp_path / "old" / "results.parquet")
    row = new.iloc[0].to_dict()
    assert row_config(configs, row) == row_config(load_configs(path), row)


def test_report_tables_do_not_depend_on_the_new_columns(collected, tmp_path) -> None:
    """The report of the new table equals that of the same results in the old layout."""
    from results.report import write_report
    from results.table import load_results

    _, _, path = collected
    old = load_results(path).drop(columns=["arm", "task_version", "objective_label"])
    (tmp_path / "old").mkdir()
    old.to_parquet(tmp_path / "old" / "results.parquet", index=False)
    a = write_report(path, tmp_path / "a", title="t").parent
    b = write_report(tmp_path / "old" / "results.parquet", tmp_path / "b", title="t").parent
    assert (a / "index.md").read_text() == (b / "index.md").read_text()
    for file in sorted((a / "tables").iterdir()):
        assert file.read_bytes() == (b / "tables" / file.name).read_bytes(), file.name
    provenance = json.loads((a / "provenance.json").read_text())
    assert provenance["configs"]["sha256"] == hashlib.sha256(path.with_name("configs.parquet").read_bytes()).hexdigest()
    assert "configs" not in json.loads((b / "provenance.json").read_text())  # none beside the old table
