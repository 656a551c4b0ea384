"""Pre-training sources in a study: a corpus reader as the data, the source's own tags,
nested data-scaling subsets; planned, then run end to end and reported."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.errors import StudyError
from harness.graph import expand
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent
SOUNDS = {"low": 220.0, "high": 1760.0}


def corpus(folder: Path, n: int = 32) -> tuple[Path, Path]:
    """A generic source (path, caption, tags, labels) and a generic probe task over the same kind of clips."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows, task = [], []
    for i in range(n):
        kind = "low" if i % 2 else "high"
        t = np.arange(8000) / 16000
        audio = 0.3 * np.sin(2 * np.pi * SOUNDS[kind] * (1 + 0.05 * rng.standard_normal()) * t)
        audio += 0.01 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{i:03d}.wav", audio.astype(np.float32), 16000)
        rows.append([f"clip{i:03d}.wav", f"a {kind} pitched tone", f"{kind};tone", kind])
        task.append([f"clip{i:03d}.wav", kind, ["train", "train", "valid", "test"][i % 4]])
    with open(folder / "source.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "caption", "tags", "labels"], *rows])
    with open(folder / "task.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *task])
    return folder / "source.csv", folder / "task.csv"


STUDY = """
name: sources-study
data:
  sources:
    - {{name: tones, kind: generic, args: {{path: {source}}}, subsets: [12, 24]}}
tagging:
  parser: {{backend: manifest}}
  sizes: [2]
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  steps: 6
  batch_size: 4
  specaugment: false
probes:
  tasks: [tones]
  epochs: 5
  lrs: [0.01]
  weight_decays: [0.0]
"""


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    source, task = corpus(folder / "data")
    tasks = folder / "tasks"
    tasks.mkdir()
    (tasks / "tones.yaml").write_text(f"domain: music\nkind: multiclass\nmetric: accuracy\nadapter: generic\n"
                                      f"args: {{manifest: {task}}}\n")
    path = folder / "study.yaml"
    path.write_text(STUDY.format(source=source))
    return path, tasks


@pytest.fixture
def task_path(study_files, monkeypatch):
    from harness import tasks

    monkeypatch.setenv("HARNESS_TASK_PATH", str(study_files[1]))
    tasks._index.cache_clear()
    yield
    tasks._index.cache_clear()


def test_plan_reads_the_source_once_and_trains_each_subset(study_files, task_path) -> None:
    study = load_study(study_files[0])
    graph = expand(study.config)
    stages = graph.by_stage()
    source = [n for n in stages["dataset"] if n.config["kind"] == "generic" and "files" in n.config]
    assert len(source) == 1 and str(study_files[0].parent / "data" / "source.csv") in source[0].config["files"]
    (tags,) = stages["tags"]
    assert list(tags.inputs) == ["dataset"] and tags.config == {"backend": "manifest", "field": "tags"}
    assert "captions" not in stages  # nothing reads captions: no captioning job
    trained = [n for n in stages["pretrain"] if n.config["objective"]["name"] == "mtc"]
    assert sorted(n.config["subset"]["size"] for n in trained) == [12, 24]
    assert sorted(n.coords["data_size"] for n in trained) == [12, 24]


def test_source_args_are_checked_against_the_reader(tmp_path, task_path, study_files) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(STUDY.format(source="x.csv").replace("args: {path: x.csv}", "args: {paths: x.csv}"))
    with pytest.raises(StudyError) as err:
        load_study(bad)
    text = "\n".join(err.value.problems)
    assert ("data.sources[0].args.paths: not an argument of the 'generic' reader (did you mean 'path'?); "
            "it takes: path, audio_root") in text
    assert "data.sources[0].args.path: missing: the 'generic' reader needs it" in text


@pytest.mark.slow
def test_sources_study_runs_and_reports_data_scaling(study_files, tmp_path, harness_env) -> None:
    env = {**harness_env, "HARNESS_TASK_PATH": str(study_files[1])}
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "harness", "run", str(study_files[0]), "--out", str(out),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    assert sorted(frame["data_size"]) == [12, 24]
    # Tags come from the source: K = 2 keeps "low", "high" or "tone"; every clip has one, so a
    # subset trains on all its clips.
    assert sorted(frame["train_clips"]) == [12, 24]
    record = json.loads(next((out / "store" / "tags").glob("*/_done.json")).read_text())
    assert record["outputs"]["num_clips"] == 32 and record["outputs"]["unique_tags"] == 3
    report = subprocess.run([sys.executable, "-m", "harness", "report", str(study_files[0]), "--out", str(out),
                             "--no-tag-figures"], env=env, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    scaling = (out / "report" / "figures" / "data_scaling.png")
    assert scaling.stat().st_size > 5000
    assert "Not drawn: no objective" not in (out / "report" / "index.md").read_text()


def test_evaluation_clips_are_excluded_from_the_corpus_and_counted(study_files, task_path, tmp_path,
                                                                    monkeypatch) -> None:
    """The probe task's valid and test clips are the corpus's own clips: excluding the task
    removes exactly them (by id) and the dataset record counts them."""
    from harness.dispatch import Layout, run_graph
    from harness.graph import Graph
    from harness.stages.dataset import pool_manifest
    from harness.stages.manifests import iter_cut_dicts

    path = tmp_path / "excl.yaml"
    path.write_text(study_files[0].read_text().replace("subsets: [12, 24]}", "exclude: [tones]}"))
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    graph = expand(load_study(path).config)
    (source,) = [n for n in graph.by_stage()["dataset"] if n.config.get("exclude")]
    assert list(source.inputs) == ["exclude0"] and source.config["exclude"][0]["splits"] == ["test", "valid"]
    sub = Graph()
    sub.add(source)
    layout = Layout(out=tmp_path / "out", cache=tmp_path / "home")
    summary = run_graph(sub, layout, executor_kind="debug", progress=False)
    assert summary.ok, summary.failed
    record = layout.store_for("dataset").record("dataset", source.key)
    assert record["outputs"]["excluded"] == {"tones": 16} and record["outputs"]["pool_clips"] == 16
    kept = [c["id"] for c in iter_cut_dicts(pool_manifest(layout.store_for("dataset").path("dataset", source.key)))]
    assert sorted(kept) == [f"clip{i:03d}" for i in range(32) if i % 4 < 2]  # the task's train clips only


def test_a_weighted_mix_of_two_sources(study_files, task_path, tmp_path, monkeypatch) -> None:
    """Two corpora mixed 3:1 into 16 clips; the ingredients do not train on their own."""
    from harness.dispatch import Layout, run_graph
    from harness.graph import Graph
    from harness.stages.dataset import pool_manifest
    from harness.stages.manifests import iter_cut_dicts

    source = study_files[0].parent / "data" / "source.csv"
    rows = source.read_text().splitlines()
    (tmp_path / "low.csv").write_text("\n".join([rows[0]] + [r for r in rows[1:] if ",a low" in r]) + "\n")
    (tmp_path / "high.csv").write_text("\n".join([rows[0]] + [r for r in rows[1:] if ",a high" in r]) + "\n")
    text = study_files[0].read_text().replace(
        f"    - {{name: tones, kind: generic, args: {{path: {source}}}, subsets: [12, 24]}}",
        f"    - {{name: low, kind: generic, args: {{path: {tmp_path / 'low.csv'}, audio_root: {source.parent}}}, train: false}}\n"
        f"    - {{name: high, kind: generic, args: {{path: {tmp_path / 'high.csv'}, audio_root: {source.parent}}}, train: false}}\n"
        f"    - {{name: tones, kind: mix, args: {{of: {{low: 3, high: 1}}, total: 16, seed: 0}}}}")
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    graph = expand(load_study(path).config)
    stages = graph.by_stage()
    assert {n.coords["source"] for n in stages["pretrain"] if n.coords["objective"] == "mtc"} == {"tones"}
    (mixed,) = [n for n in stages["dataset"] if n.config["kind"] == "mix"]
    sub = Graph()
    sub.add(mixed)
    layout = Layout(out=tmp_path / "out", cache=tmp_path / "home")
    assert run_graph(sub, layout, executor_kind="debug", progress=False).ok
    record = layout.store_for("dataset").record("dataset", mixed.key)
    assert record["outputs"]["counts"] == {"high": 4, "low": 12} and record["outputs"]["pool_clips"] == 16
    cuts = list(iter_cut_dicts(pool_manifest(layout.store_for("dataset").path("dataset", mixed.key))))
    assert sum("low" in c["custom"]["tags"] for c in cuts) == 12

    bad = tmp_path / "badmix.yaml"
    bad.write_text(text.replace("of: {low: 3, high: 1}", "of: {low: 3, nowhere: 1}"))
    with pytest.raises(StudyError) as err:
        load_study(bad)
    assert any("data.sources[2].args.of.nowhere: not a source of this study to mix" in p for p in err.value.problems)
