"""The study's ``search:`` block: validation, paths, trials as jobs, resume, best values recorded."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import StudyError
from harness.search import LIST_SETTINGS, get_path, set_path
from harness.study import load_study, revalidate

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "studies" / "base" / "mini.yaml"

STUDY = """
include: {base}
name: {name}
tagging: {{sizes: [16]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc, {{name: captioning, options: {{layers: 1, dim: 64, heads: 2, ffn_dim: 128, vocab: targets}}}}]
  baselines: [random]
  steps: 8
  batch_size: 16
probes:
  tasks: [mini/env_event, mini/music_instrument]
  epochs: 10
  lrs: [0.01]
search: {search}
"""


def write(folder: Path, search: dict, name: str = "searchtest") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(base=BASE, name=name, search=json.dumps(search)))
    return path


PROBE_SEARCH = {"trials": 3, "parallel": 2, "objective": "mtc", "tasks": ["mini/env_event"],
                "space": {"probes.weight_decays": {"low": 1e-4, "high": 1e-1, "log": True},
                          "probes.epochs": {"low": 5, "high": 15, "step": 5}}}


# ---------------------------------------------------------------------------- validation


def test_every_problem_of_a_search_block_is_one_line_naming_its_key(tmp_path):
    path = write(tmp_path, {"trials": 2, "parallel": 3, "tasks": ["mini/speech_speaker"], "objective": "par",
                            "space": {"pretrain.lrr": {"low": 0.1, "high": 1}, "probes.epochs": {"low": 0, "high": 5},
                                      "pretrain.lr": {"low": 1, "high": 0.1}, "pretrain.steps": "many",
                                      "probes.heads": ["linear", "transformer"], "pretrain[": [1],
                                      "pretrain.objectives": [1, 2]}})
    with pytest.raises(StudyError) as err:
        load_study(path)
    lines = err.value.problems
    expected = {
        "search.space.pretrain.lrr": "pretrain.lrr: no such setting in the study; keys there:",
        "search.space.probes.epochs": "the value 0 makes the study invalid: probes.epochs: expected",
        "search.space.pretrain.lr": "expected low <= high",
        "search.space.pretrain.steps": "expected {low, high}",
        "search.space.probes.heads": "the value 'transformer' makes the study invalid: probes.heads[0]",
        "search.space.pretrain[": "expected a dotted path",
        "search.space.pretrain.objectives": "expected a single setting, found a list there",
        "search.tasks[0]": "not one of probes.tasks",
        "search.objective": "no objective called 'par'",
        "search.parallel": "expected at most trials (2), found 3",
    }
    for key, text in expected.items():
        assert any(f": {key}: " in line and text in line for line in lines), (key, lines)
    assert len(lines) == len(expected)
    assert all(line.startswith(os.path.relpath(path)) for line in lines)


def test_a_retrieval_task_cannot_score_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOTHO_ROOT", str(tmp_path))
    for split in ("development", "evaluation"):  # the layout the task checks for (no audio is read)
        (tmp_path / f"clotho_captions_{split}.csv").write_text("file_name,caption_1\n")
    path = write(tmp_path, {"trials": 2, "tasks": ["paper/clotho"], "space": {"pretrain.lr": [0.001, 0.01]}})
    text = path.read_text().replace("tasks: [mini/env_event, mini/music_instrument]",
                                    "tasks: [mini/env_event, paper/clotho]")
    path.write_text(text)
    with pytest.raises(StudyError, match=r"search.tasks\[0\]: a search maximises a probe's validation score; "
                                         r"'paper/clotho' is a retrieval task"):
        load_study(path)


def test_a_study_without_search_keeps_its_config_and_revalidation_is_idempotent():
    for name in ("quickstart.yaml", "data_quality.yaml", "uts_llm_tagging.yaml"):
        study = load_study(ROOT / "studies" / name)
        assert "search" not in study.config  # digests of studies without a search are unchanged
        assert revalidate(study.config, study.path) == study.config


def test_paths_get_and_set_values_lists_and_free_options(tmp_path):
    study = load_study(write(tmp_path, PROBE_SEARCH))
    config = copy.deepcopy(study.config)
    assert get_path(config, "pretrain.objectives[1].options.dim") == 64
    assert get_path(config, "pretrain.objectives[1].options.dropout") is None  # an option not set yet
    set_path(config, "pretrain.objectives[1].options.dropout", 0.2)
    set_path(config, "probes.poolings", "attention")
    set_path(config, "pretrain.lr", 0.05)
    assert config["pretrain"]["objectives"][1]["options"]["dropout"] == 0.2
    assert config["probes"]["poolings"] == ["attention"] and "probes.poolings" in LIST_SETTINGS
    assert config["pretrain"]["lr"] == 0.05
    with pytest.raises(KeyError, match=r"pretrain.objectives\[5\]: no such item \(the list has 2\)"):
        get_path(config, "pretrain.objectives[5].options.dim")
    with pytest.raises(KeyError, match="pretrain.nope: no such setting"):
        set_path(config, "pretrain.nope", 1)


def test_a_trial_runs_only_the_scored_arm_and_tasks(tmp_path):
    from harness.search import trial_config, trial_graph

    study = load_study(write(tmp_path, PROBE_SEARCH))
    config = trial_config(study, {"probes.weight_decays": 0.01, "probes.epochs": 10})
    graph = trial_graph(config, study.config["search"])
    probes = [n for n in graph if n.stage == "probe"]
    assert [(n.coords["objective"], n.coords["task"]) for n in probes] == [("mtc", "mini/env_event")]
    assert probes[0].config["weight_decays"] == [0.01] and probes[0].config["epochs"] == 10
    assert {n.stage for n in graph} == {"dataset", "captions", "tags", "tagsystem", "pretrain", "embed", "probe"}


# ----------------------------------------------------------------------------- running


def harness(*args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_interrupted_search_resumes_and_the_best_values_are_recorded(tmp_path, harness_env):
    """The run dies after the first round's jobs, before it records their trials; the next
    `harness run` evaluates those trials again from the store, completes the search, runs
    the study with the best values and records them with the results and in the report."""
    import optuna
    import pandas as pd

    from harness.dispatch import Layout, run_graph
    from harness.search import run_search, search_dir
    from harness.slurm import journal_storage

    path = write(tmp_path, PROBE_SEARCH)
    study = load_study(path)
    out = tmp_path / "out"
    layout = Layout(out=out, cache=Path(harness_env["HARNESS_HOME"]))

    def dies(graph):
        run_graph(graph, layout, executor_kind="local", progress=False)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(study, layout, dies)
    journal = search_dir(layout) / "journal.log"
    (name,) = optuna.get_all_study_names(journal_storage(journal))
    interrupted = optuna.load_study(study_name=name, storage=journal_storage(journal)).trials
    assert [t.state.name for t in interrupted] == ["RUNNING", "RUNNING"]
    embeds = {p: p.stat().st_mtime_ns for p in (out / "store" / "embed").glob("*/_done.json")}
    assert len(embeds) == 1  # one run (mtc) x one task, shared by both trials

    proc = harness("run", path, "--out", out, "--no-progress", env=harness_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "search: 2 trial(s) interrupted earlier are evaluated again" in proc.stderr
    trials = optuna.load_study(study_name=name, storage=journal_storage(journal)).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [t.params for t in trials[:2]] == [t.params for t in interrupted]  # the same trials, not new ones
    # probe-only search: the trials' embeddings were extracted once, whatever the trials changed
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in embeds.items())

    # a trial's value is the validation score of its probe, read back independently
    best = json.loads((search_dir(layout) / "best.json").read_text())
    top = max(trials, key=lambda t: t.value)
    assert best["trial"] == top.number and best["value"] == pytest.approx(top.value)
    assert best["params"] == top.params and best["complete"] == 3
    table = pd.read_csv(search_dir(layout) / "trials.csv")
    assert list(table["number"]) == [0, 1, 2] and table["value"].max() == pytest.approx(best["value"])

    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["run"]) == {"mini/mtc K=16 s0", "mini/captioning s0", "random s0"}  # the whole study
    assert {json.loads(s)["params"] == best["params"] for s in frame["search"]} == {True}
    row = frame[(frame["run"] == "mini/mtc K=16 s0") & (frame["task"] == "mini/env_event")].iloc[0]
    assert row["valid_value"] == pytest.approx(best["value"])  # the best trial's probe is the study's
    assert json.loads(row["hparams"])["weight_decay"] == pytest.approx(best["params"]["probes.weight_decays"])
    from results.table import load_configs

    probe_config = load_configs(out / "results.parquet")[("probe", row["probe_key"])]
    assert probe_config["epochs"] == best["params"]["probes.epochs"]

    again = harness("run", path, "--out", out, "--no-progress", env=harness_env, cwd=tmp_path)
    assert again.returncode == 0 and "0 jobs run" in again.stderr, again.stderr
    assert "search: trials" not in again.stderr  # nothing left to try
    report = harness("report", path, "--out", out, "--no-tag-figures", env=harness_env, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = (out / "report" / "index.md").read_text()
    assert "## Hyperparameter search" in text and f"{best['value']:.4f}" in text


def test_trials_whose_jobs_fail_are_recorded_failed_and_a_search_without_any_success_stops(tmp_path):
    import optuna

    from harness.dispatch import Layout
    from harness.errors import HarnessError
    from harness.search import run_search, search_dir
    from harness.slurm import journal_storage

    study = load_study(write(tmp_path, PROBE_SEARCH))
    layout = Layout(out=tmp_path / "out", cache=tmp_path / "home")
    rounds, lines = [], []
    with pytest.raises(HarnessError, match="search: all 3 trials failed"):
        run_search(study, layout, run=rounds.append, log=lines.append)  # jobs "ran" and left no result
    assert [sum(1 for n in g if n.stage == "probe") for g in rounds] == [2, 1]  # rounds of `parallel` trials
    journal = search_dir(layout) / "journal.log"
    (name,) = optuna.get_all_study_names(journal_storage(journal))
    trials = optuna.load_study(study_name=name, storage=journal_storage(journal)).trials
    assert [t.state.name for t in trials] == ["FAIL"] * 3
    assert sum("failed (see the failed jobs above)" in line for line in lines) == 3
