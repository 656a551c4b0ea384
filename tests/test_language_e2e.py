"""End to end on the mini suite (slow): ``studies/mini_language.yaml``, shrunk (fewer
pre-training steps, a third of the held-out scenes, fewer head epochs), gets result rows
for recall@1/5/10 and the caption metrics for MTC, contrastive and the random encoder from
``harness run`` alone; the own-tower retrieval only for contrastive; decoded captions kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("scene_retrieval", "scene_captioning", "scene_retrieval_clap")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java (default-jre-headless)")
def test_mini_language_study_gives_retrieval_and_caption_rows_for_every_encoder(harness_env, tmp_path) -> None:
    import pandas as pd

    tasks = tmp_path / "tasks" / "small"
    tasks.mkdir(parents=True)
    for name in TASKS:
        epochs = "" if name.endswith("clap") else "head: {epochs: 6}\n"
        (tasks / f"{name}.yaml").write_text(f"include: {ROOT / 'probes/tasks/mini' / name}.yaml\n"
                                            "args: {task: scene_captions, seed: 0, scale: 0.3}\n" + epochs)
    study = tmp_path / "small.yaml"
    study.write_text(f"include: {ROOT / 'studies/mini_language.yaml'}\nname: language-small\n"
                     "pretrain: {steps: 30, checkpoint_every: 30, batch_size: 16}\n"
                     f"probes: {{tasks: [{', '.join('small/' + t for t in TASKS)}]}}\n")
    out = tmp_path / "out"
    env = {**harness_env, "HARNESS_TASK_PATH": str(tmp_path / "tasks")}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(study), "--out", str(out), "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    for objective in ("mtc", "contrastive", "random"):
        rows = frame[frame["objective"] == objective]
        retrieval = rows[rows["task"] == "small/scene_retrieval"]
        assert {(h, m) for h, m in zip(retrieval["head"], retrieval["metric"])} == {
            (f"trained-{d}", f"recall@{k}") for d in ("text-to-audio", "audio-to-text") for k in (1, 5, 10)}
        captioning = rows[rows["task"] == "small/scene_captioning"]
        assert {"bleu_4", "meteor", "rouge_l", "cider_d"} <= set(captioning["metric"])
        assert set(captioning["head"]) == {"greedy"}
        assert rows["value"].between(0, 10).all() and (rows["n_test"] > 0).all()
    own = frame[frame["task"] == "small/scene_retrieval_clap"]
    assert set(own["objective"]) == {"contrastive"} and set(own["head"]) == {"text-to-audio", "audio-to-text"}
    key = frame[(frame["task"] == "small/scene_captioning") & (frame["objective"] == "mtc")]["probe_key"].iloc[0]
    written = out / "store" / "probe" / key / "captions.jsonl"
    captions = [json.loads(line) for line in written.read_text().splitlines()]
    assert captions and all(c["caption"] is not None and c["references"] for c in captions)
