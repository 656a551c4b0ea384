"""End to end (slow): studies/external.yaml on the mini suite with a tiny random wav2vec 2.0
folder and a tiny HEAR module, through ``harness run`` alone: every arm has rows on every
task; a rerun runs nothing; new weights in the folder re-run only that arm; the report
shows the external encoders as arms (bootstrap against random included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from external_models import save_wav2vec2, write_hear_module

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
include: {external}
name: external-e2e
pretrain:
  objectives: [mtc]
  steps: 10
  batch_size: 16
  checkpoint_every: 10
probes:
  tasks: [mini/env_event, mini/music_pitch]
  epochs: 10
  lrs: [0.003]
  weight_decays: [0.0]
"""


def harness(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def embed_records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "store" / "embed").glob("*/_done.json")}


@pytest.mark.slow
def test_external_arms_run_rerun_and_rekey(tmp_path, harness_env):
    import pandas as pd

    folder = save_wav2vec2(tmp_path / "models" / "wav2vec2-tiny")
    hear = write_hear_module(tmp_path / "models" / "hear")
    env = {**harness_env, "EXTERNAL_HF": str(folder), "EXTERNAL_HEAR": str(hear)}
    study = tmp_path / "small.yaml"
    study.write_text(SMALL.format(external=ROOT / "studies" / "external.yaml"))
    out = tmp_path / "out"

    proc = harness("run", str(study), "--out", str(out), "--no-progress", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    arms = {"mini/mtc K=32", "random", "wav2vec2-tiny", "hear_api"}
    assert set(frame["arm"]) == arms
    for arm in arms:  # every arm, every task, both poolings
        rows = frame[frame["arm"] == arm]
        assert set(rows["task"]) == {"mini/env_event", "mini/music_pitch"}, arm
        assert len(rows) == 4 and rows["value"].notna().all(), arm
    assert set(frame.loc[frame["arm"] == "wav2vec2-tiny", "encoder"]) == {"wav2vec2"}
    first = embed_records(out)

    proc = harness("run", str(study), "--out", str(out), "--no-progress", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 jobs run" in proc.stdout + proc.stderr, proc.stderr  # nothing embedded, nothing probed again

    save_wav2vec2(folder, seed=1)  # new weights in the same folder
    proc = harness("run", str(study), "--out", str(out), "--no-progress", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 jobs run" in proc.stdout + proc.stderr, proc.stderr  # its external node, 2 embeddings, 2 probes
    second = embed_records(out)
    new = [r for key, r in second.items() if key not in first]
    assert len(new) == 2 and {r["coords"]["objective"] for r in new} == {"wav2vec2-tiny"}
    assert not any(r["outputs"]["reused"] for r in new)  # embedded afresh: the weights' digest changed
    assert all(second[key]["finished_at"] == r["finished_at"] for key, r in first.items())  # the rest untouched

    proc = harness("report", str(study), "--out", str(out), "--no-tag-figures", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "report" / "index.md").read_text()
    assert "wav2vec2-tiny" in report and "hear_api" in report
    bootstrap = pd.read_csv(next((out / "report" / "tables").glob("bootstrap*.csv")))
    assert {"wav2vec2-tiny", "hear_api"} <= set(bootstrap["arm"])
