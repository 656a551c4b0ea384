"""Dispatch through submitit: failures carry their cause and log, the rest of the graph goes on,
and the debug executor (in-process) computes exactly what the local executor computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY = """
include: {base}
name: tiny
tagging: {{sizes: [8], files: {files}}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  baselines: [random]
  steps: 4
  batch_size: 8
probes: {{tasks: [mini/env_event], epochs: 5, lrs: [0.01], weight_decays: [0.0]}}
"""


def harness(*args, cwd, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def study(tmp_path: Path, files: list[str]) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(base=ROOT / "studies" / "base" / "mini.yaml", files=json.dumps(files)))
    return path


def values(out: Path) -> list[tuple]:
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet").sort_values(["run", "task"])
    return list(frame[["run", "task", "value"]].itertuples(index=False, name=None))


@pytest.mark.slow
def test_failed_job_reports_cause_and_log_and_the_rest_completes(tmp_path, harness_env):
    bad = tmp_path / "label_bad.json"
    bad.write_text('{"0": "rain", "2": "wind"}')  # indices must be 0..K-1
    path = study(tmp_path, [bad.name])
    out = tmp_path / "out"
    proc = harness("run", str(path), "--out", str(out), "--no-progress", cwd=tmp_path, env=harness_env)
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED tagsystem/")]
    assert len(failed) == 1 and "ValueError" in failed[0] and "label_bad.json" in failed[0]
    log = Path(proc.stderr.split("log: ")[1].split()[0])
    assert log.is_file() and "Traceback" in log.read_text()
    # the branch that does not depend on the bad tag system, and the baseline, completed
    assert {run for run, _, _ in values(out)} == {"mini/mtc K=8 s0", "random s0"}

    status = harness("status", str(path), "--out", str(out), cwd=tmp_path, env=harness_env)
    assert status.returncode == 1
    lines = status.stdout.splitlines()
    assert "1 failed" in lines[0] and "3 pending" in lines[0]  # the failed node's pretrain, embed, probe
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("failed"))
    assert lines[i + 1].strip().startswith("cause: ") and "label_bad.json" in lines[i + 1]
    assert lines[i + 2].strip() == f"log:   {log}"


@pytest.mark.slow
def test_debug_executor_matches_local(tmp_path, harness_env):
    path = study(tmp_path, [])
    local, debug = tmp_path / "local", tmp_path / "debug"
    a = harness("run", str(path), "--out", str(local), cwd=tmp_path, env=harness_env)
    b = harness("run", str(path), "--out", str(debug), "--executor", "debug", cwd=tmp_path, env=harness_env)
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert values(local) == values(debug) and len(values(local)) == 2
    # local jobs leave submitit logs per job; debug jobs ran in this process
    assert any((local / "logs").iterdir())
