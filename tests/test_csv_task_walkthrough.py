"""docs/tasks.md, "A new dataset from a CSV or JSONL, no code", followed to the letter.

The CSV and the task file are read out of the page itself, so the page and this test
cannot drift apart: a newcomer who copies them gets a task that runs and a report that
shows it.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tasks.md"


def doc_blocks() -> dict[str, str]:
    """The code blocks of the walkthrough, by the file name given just above each."""
    text = DOC.read_text()
    section = text[text.index("## A new dataset from a CSV or JSONL, no code"):]
    section = section[: section.index("\n## ", 10)]
    return dict(re.findall(r"`([^`]+)`:\s*\n\s*```\w*\n(.*?)```", section, flags=re.S))


@pytest.mark.slow
def test_the_csv_walkthrough_gives_rows_in_the_report(tmp_path, harness_env):
    blocks = doc_blocks()
    assert set(blocks) == {"~/data/birds/clips.csv", "~/my-tasks/birds.yaml"}, blocks.keys()
    home = tmp_path / "home"  # the page writes under ~: give it a home of its own
    data, tasks = home / "data" / "birds", home / "my-tasks"
    data.mkdir(parents=True)
    tasks.mkdir()
    (data / "clips.csv").write_text(blocks["~/data/birds/clips.csv"])
    (tasks / "birds.yaml").write_text(blocks["~/my-tasks/birds.yaml"])
    rng = np.random.default_rng(0)
    for row in csv.DictReader((data / "clips.csv").open()):  # an owl hoots low, a crow caws high
        pitch = 300.0 if row["label"] == "owl" else 1200.0
        t = np.arange(16000) / 16000
        wave = 0.4 * np.sin(2 * np.pi * pitch * t) + 0.02 * rng.standard_normal(t.size)
        (data / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        sf.write(data / row["path"], wave.astype(np.float32), 16000)

    study = tmp_path / "my_study.yaml"
    study.write_text(f"""
include: {ROOT / 'studies' / 'base' / 'mini.yaml'}
name: my_study
tagging: {{sizes: [8]}}
pretrain: {{encoder: {{name: transformer, size: tiny}}, objectives: [mtc], steps: 4, batch_size: 8}}
probes: {{tasks: [birds, mini/env_event], epochs: 5}}
""")
    env = {**harness_env, "HOME": str(home), "HARNESS_TASK_PATH": "~/my-tasks".replace("~", str(home))}
    out = tmp_path / "out"
    for command in (["run", study, "--out", out, "--no-progress"], ["report", study, "--out", out, "--no-tag-figures"]):
        proc = subprocess.run([sys.executable, "-m", "harness", *map(str, command)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    birds = frame[frame["task"] == "birds"]
    assert len(birds) == 1 and birds["n_test"].iloc[0] == 1 and birds["domain"].iloc[0] == "environment"
    report = (out / "report" / "index.md").read_text()
    assert "birds" in report and f"{birds['value'].iloc[0]:.3f}" in report
