"""End to end on the mini suite: run, rerun (nothing to do), SIGKILL + resume, report.

The quickstart itself runs once (slow); the kill/resume checks use a smaller study that
includes the same base, so that interrupting and comparing stays cheap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.yaml"

SMALL = """
include: {base}
name: e2e-small
tagging: {{sizes: [16]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  baselines: [random]
  steps: 60
  batch_size: 16
  checkpoint_every: 20
probes:
  tasks: [mini/env_event, mini/music_instrument]
  epochs: 30
"""


def harness(*args: str, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(harness_env):
    return harness_env


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "small.yaml"
    path.write_text(SMALL.format(base=ROOT / "studies" / "base" / "mini.yaml"))
    return path


def results(out: Path):
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    return frame.sort_values(["run", "task", "head"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def small_run(small_study, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    proc = harness("run", str(small_study), "--out", str(out), cwd=small_study.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_small_study_completes_and_covers_every_task(small_run):
    frame = results(small_run)
    assert set(frame["objective"]) == {"mtc", "random"}
    assert set(frame["task"]) == {"mini/env_event", "mini/music_instrument"}
    assert len(frame) == 2 * 2  # runs x tasks (one head)
    row = frame.iloc[0]
    assert row["git_commit"] and '"torch"' in row["versions"] and "config" not in frame.columns
    from results.table import load_configs, row_config

    config = row_config(load_configs(small_run / "results.parquet"), row)  # stored once, beside the table
    assert config["pretrain"]["objective"]["name"] == row["objective"]
    assert (frame["n_test"] > 0).all() and frame["value"].between(0, 1).all()


@pytest.mark.slow
def test_rerun_executes_no_job(small_study, small_run, env):
    before = (small_run / "results.parquet").read_bytes()
    t0 = time.time()
    proc = harness("run", str(small_study), "--out", str(small_run), cwd=small_study.parent, env=env)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr
    assert "0 jobs run" in proc.stderr
    assert elapsed < 15
    assert results(small_run)["value"].tolist() == pd_values(before)


@pytest.mark.slow
def test_changing_only_probe_settings_extracts_no_embedding(small_study, small_run, env, tmp_path):
    """A rerun after a change to the probes (grid, epochs, heads) runs the probe jobs only:
    every embedding comes from the cache, untouched."""
    import shutil

    out = tmp_path / "changed"
    shutil.copytree(small_run, out)
    cache = Path(env["HARNESS_HOME"]) / "embeddings"
    before = {p: p.stat().st_mtime_ns for p in cache.glob("*/*")}
    embed_records = {p: p.read_bytes() for p in (out / "store" / "embed").glob("*/_done.json")}
    changed = small_study.parent / "small_probes_changed.yaml"
    changed.write_text(small_study.read_text().replace(
        "epochs: 30", "epochs: 12\n  lrs: [0.02]\n  weight_decays: [0.0001, 0.01]\n  poolings: [mean, max]"))
    proc = harness("run", str(changed), "--out", str(out), "--no-progress", cwd=small_study.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "4 jobs run, 10 already done" in proc.stderr  # 2 runs x 2 tasks: probes only
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*")} == before  # nothing extracted or rewritten
    assert {p: p.read_bytes() for p in (out / "store" / "embed").glob("*/_done.json")} == embed_records
    frame = results(out)
    assert set(frame["head"]) == {"linear-mean", "linear-max"}
    assert {json.loads(h)["lr"] for h in frame["hparams"]} == {0.02}


def pd_values(parquet_bytes: bytes) -> list[float]:
    import io

    import pandas as pd

    frame = pd.read_parquet(io.BytesIO(parquet_bytes))
    return frame.sort_values(["run", "task", "head"])["value"].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["pretrain-checkpoint", "probe-running"])
def test_sigkill_then_resume_gives_identical_results(small_study, small_run, env, tmp_path, kill_when):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(small_study), "--out", str(out),
                             "--no-progress"], cwd=small_study.parent, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if kill_when == "pretrain-checkpoint" and list((out / "store" / "pretrain").glob("*.work/train_state.pt")):
            break
        if kill_when == "probe-running" and list((out / "store" / "probe").glob("*.work")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every job it started
    proc.wait()
    assert not (out / "results.parquet").exists()  # written only when the graph is through

    resumed = harness("run", str(small_study), "--out", str(out), cwd=small_study.parent, env=env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = results(out), results(small_run)
    assert a["run"].tolist() == b["run"].tolist() and a["task"].tolist() == b["task"].tolist()
    assert a["value"].tolist() == b["value"].tolist()
    # the pre-training itself resumed exactly: same per-step losses, same weights
    for folder in (out / "store" / "pretrain").iterdir():
        if folder.is_dir() and not folder.name.endswith(".work"):
            twin = small_run / "store" / "pretrain" / folder.name
            assert _record(folder)["outputs"]["digest"] == _record(twin)["outputs"]["digest"]
            if (folder / "train_log.csv").exists():
                assert (folder / "train_log.csv").read_text().splitlines()[0] == \
                    (twin / "train_log.csv").read_text().splitlines()[0]
                assert _losses(folder) == _losses(twin)


def _record(folder: Path) -> dict:
    import json

    return json.loads((folder / "_done.json").read_text())


def _losses(folder: Path) -> list[str]:
    import csv

    with open(folder / "train_log.csv") as f:
        return [(row["step"], row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_status_and_report(small_study, small_run, env):
    status = harness("status", str(small_study), "--out", str(small_run), cwd=small_study.parent, env=env)
    assert status.returncode == 0
    # dataset, captions, tags, tagsystem, 2 pretrain, 2 x 2 embed, 2 x 2 probe
    assert status.stdout.splitlines()[0].endswith(": 14 done")
    report = harness("report", str(small_study), "--out", str(small_run), cwd=small_study.parent, env=env)
    assert report.returncode == 0, report.stderr
    text = (small_run / "report" / "index.md").read_text()
    frame = results(small_run)
    from results.table import arm_label

    for run in frame["run"].unique():
        assert f"| {arm_label(run)} | 1 |" in text  # the arm, and the one seed it rests on
    for _, row in frame.iterrows():
        assert f"{row['value']:.3f}" in text


@pytest.mark.slow
def test_quickstart_end_to_end_every_objective(env, tmp_path):
    """The quickstart trains every objective the papers compare and probes each on every task."""
    import csv

    from harness.minisuite.spec import TASKS

    out = tmp_path / "quickstart"
    t0 = time.time()
    proc = harness("run", str(QUICKSTART), "--out", str(out), cwd=ROOT, env=env, timeout=1800)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr
    print(f"quickstart took {elapsed:.1f} s")
    frame = results(out)
    tasks = {f"mini/{name}" for name, task in TASKS.items() if task["kind"] != "retrieval"}  # base/mini.yaml's
    runs = frame.groupby("run")["task"].apply(set)
    # MTC, PAR and multi-task at K = 32 and 64; captioning and contrastive once; the random encoder.
    assert len(runs) == 9 and all(t == tasks for t in runs)
    assert frame.groupby("objective")["run"].nunique().to_dict() == {
        "mtc": 2, "par": 2, "multitask": 2, "captioning": 1, "contrastive": 1, "random": 1}
    # Every probe is well above chance (a wiring error - labels misaligned with clips,
    # embeddings of the wrong clips - drops it to chance).
    for row in frame.itertuples():
        task = TASKS[row.task.split("/")[1]]
        # multiclass: one class in n; multilabel (mAP): random scores reach the mean share of
        # clips a class is in, 2 of 8 for env_mixture's 1-3 events a clip
        chance = 1 / len(task["classes"]) if task["kind"] == "multiclass" else 2 / len(task["classes"])
        assert row.value > 1.5 * chance, (row.run, row.task, row.value)
    # Every objective learned: its training loss fell.
    logs = sorted((out / "store" / "pretrain").glob("*/train_log.csv"))
    assert len(logs) == 8
    for log in logs:
        losses = [float(r["loss"]) for r in csv.DictReader(log.open())]
        assert len(losses) == 200
        assert sum(losses[-20:]) / 20 < 0.9 * sum(losses[:20]) / 20, (log, losses[:3], losses[-3:])

    # The report: every table and figure of the analysis layer, checked by content.
    t0 = time.time()
    report = harness("report", str(QUICKSTART), "--out", str(out), cwd=ROOT, env=env, timeout=600)
    assert report.returncode == 0, report.stderr
    print(f"report took {time.time() - t0:.1f} s")
    folder = out / "report"
    for stem in ("main_linear-mean", "objectives", "tag_system_size", "bootstrap"):
        for ext in ("md", "tex", "csv"):
            assert (folder / "tables" / f"{stem}.{ext}").stat().st_size > 200, (stem, ext)
    main = (folder / "tables" / "main_linear-mean.csv").read_text().splitlines()
    assert len(main) == 1 + 9 * 6  # header + 9 arms x 6 tasks, one cell each
    bootstrap = (folder / "tables" / "bootstrap.csv").read_text().splitlines()
    assert len(bootstrap) == 1 + 8 * 6  # every trained arm against the random encoder, per task
    for stem in ("objective_domain", "tag_system_size", "wordcloud", "longtail", "tsne_coverage"):
        assert (folder / "figures" / f"{stem}.png").stat().st_size > 5000, stem
        assert (folder / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF"), stem
    longtail = json.loads((folder / "figures" / "longtail.json").read_text())
    assert longtail["ks_marked"] == [32, 64] and longtail["head_share"]["32"] < longtail["head_share"]["64"] < 1
    coverage = json.loads((folder / "figures" / "tsne_coverage.json").read_text())
    assert coverage["points"] == {"tags": 64, "audioset": 527}
    text = (folder / "index.md").read_text()
    for heading in ("Main comparison", "Objectives", "Tag-system size", "Paired bootstrap", "Tags and the tag system"):
        assert f"## {heading}" in text
    html = (folder / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<script" not in html
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["study"]["name"] == "quickstart" and len(provenance["files"]) == 4 * 3 + 5 * 4 + 2
