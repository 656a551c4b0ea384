"""Retrieval and zero-shot: recall@k against a direct formula, the saved language side, and
the probe stage on retrieval / zero-shot tasks (contrastive run, and a run without text)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.job import InputRef, StageContext
from harness.store import atomic_write_json
from probes.embed import save_shards
from probes.language import (PROMPT, caption_relevance, embed_audio, embed_texts, prompt_for, retrieval_recalls,
                             zero_shot_scores)
from probes.metrics import METRICS, recall_at_k


def _direct_recall(relevant, similarity, k) -> float:
    """Per query: sort items by descending score (ties by index), hit if any relevant item is in the first k."""
    hits = []
    for rel, sim in zip(relevant, similarity):
        ranked = sorted(range(len(sim)), key=lambda n: (-sim[n], n))
        hits.append(any(rel[n] for n in ranked[:k]))
    return float(np.mean(hits))


# --------------------------------------------------------------------------- metrics


def test_recall_at_k_on_a_hand_made_matrix_with_known_ranks() -> None:
    similarity = np.array([
        [0.9, 0.1, 0.5, 0.3],   # relevant item 0 ranks 1st
        [0.9, 0.1, 0.5, 0.3],   # relevant item 3 ranks 3rd
        [0.2, 0.8, 0.7, 0.1],   # relevant items 2 (2nd) and 3 (4th): best rank 2
        [0.4, 0.3, 0.2, 0.1],   # relevant item 3 ranks 4th
    ])
    relevant = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    assert recall_at_k(relevant, similarity, 1) == 0.25
    assert recall_at_k(relevant, similarity, 2) == 0.5
    assert recall_at_k(relevant, similarity, 3) == 0.75
    assert recall_at_k(relevant, similarity, 4) == 1.0
    assert METRICS["recall@1"](relevant, similarity) == 0.25
    assert METRICS["recall@5"](relevant, similarity) == 1.0
    # Ties rank by item index: query 0 of [0.5, 0.5] with item 1 relevant is a miss at k=1.
    assert recall_at_k([[0, 1]], [[0.5, 0.5]], 1) == 0.0
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k([[0, 0]], [[0.1, 0.2]], 1)


@pytest.mark.parametrize("trial", range(20))
def test_recall_at_k_matches_the_direct_formula(trial: int) -> None:
    rng = np.random.default_rng(trial)
    q, n = int(rng.integers(1, 30)), int(rng.integers(1, 40))
    relevant = rng.random((q, n)) < rng.uniform(0.02, 0.3)
    relevant[np.arange(q), rng.integers(0, n, q)] = True  # every query has one relevant item at least
    similarity = rng.random((q, n))
    if trial % 2:
        similarity = np.round(similarity * 4) / 4  # many ties
    for k in (1, 5, 10):
        assert recall_at_k(relevant, similarity, k) == pytest.approx(_direct_recall(relevant, similarity, k))


def test_caption_relevance_groups_shared_captions() -> None:
    texts, relevant = caption_relevance([["a dog barks", "rain falls"], ["a dog barks"], ["wind", " rain falls "]])
    assert texts == ["a dog barks", "rain falls", "wind"]
    np.testing.assert_array_equal(relevant, [[1, 1, 0], [1, 0, 1], [0, 0, 1]])


def test_retrieval_recalls_both_directions_against_loops() -> None:
    rng = np.random.default_rng(0)
    captions = [[f"c{i}a", f"c{i}b"] for i in range(12)] + [["shared"], ["shared", "c12x"], []]
    texts, relevant = caption_relevance(captions)
    audio = rng.standard_normal((len(captions), 6))
    text = rng.standard_normal((len(texts), 6))
    got = retrieval_recalls(audio, text, relevant)
    sim = text @ audio.T
    for k in (1, 5, 10):
        t2a = _direct_recall(relevant, sim, k)
        # audio -> text: every captioned clip, hit when any of its captions is in its top k
        clips = [c for c in range(len(captions)) if captions[c]]
        a2t = _direct_recall(relevant.T[clips], sim.T[clips], k)
        assert got["text-to-audio"][f"recall@{k}"] == pytest.approx(t2a)
        assert got["audio-to-text"][f"recall@{k}"] == pytest.approx(a2t)
    # A perfect embedding retrieves everything at rank 1 in both directions.
    perfect_audio = np.eye(len(captions))
    perfect_text = relevant.astype(float) / relevant.sum(1, keepdims=True)
    perfect = retrieval_recalls(perfect_audio, perfect_text, relevant)
    assert perfect["text-to-audio"]["recall@1"] == 1.0 and perfect["audio-to-text"]["recall@1"] == 1.0


def test_zero_shot_scores_and_prompts() -> None:
    audio = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    prompts = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = zero_shot_scores(audio, prompts)
    assert METRICS["accuracy"](np.array([0, 1, 1]), scores) == 1.0
    assert prompt_for("chirping_birds") == "the sound of chirping birds" == PROMPT.format(label="chirping birds")


# -------------------------------------------------------------- the language side


@pytest.fixture(scope="module")
def contrastive():
    from encoders.objectives.contrastive import Contrastive

    torch.manual_seed(0)
    return Contrastive(16, proj_dim=8).eval()


def test_language_side_round_trip(tmp_path, contrastive) -> None:
    from encoders.checkpoint import load_language_side, save_language_side
    from encoders.objectives.mtc import MTC

    assert save_language_side(tmp_path / "language.pt", contrastive, "contrastive", {"proj_dim": 8, "max_tokens": 32}, 16)
    module, info = load_language_side(tmp_path)
    assert info == {"name": "contrastive", "options": {"proj_dim": 8, "max_tokens": 32}}
    for (name, a), (_, b) in zip(contrastive.state_dict().items(), module.state_dict().items()):
        assert torch.equal(a, b), name
    assert not save_language_side(tmp_path / "mtc.pt", MTC(16, num_tags=3), "mtc", {}, 16)
    assert not (tmp_path / "mtc.pt").exists()
    # No language.pt: a contrastive run's train_state.pt serves; a run of another objective has none.
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"objective": contrastive.state_dict()}, old / "train_state.pt")
    module, _ = load_language_side(old, {"name": "contrastive", "proj_dim": 8, "max_tokens": 32}, 16)
    assert torch.equal(module.text_proj.weight, contrastive.text_proj.weight)
    assert load_language_side(old, {"name": "mtc"}, 16) is None
    assert load_language_side(old, {"name": "random"}, 16) is None


# ------------------------------------------------------------------------- the stage


def _setup(tmp_path, clips, frames, objective, task, contrastive=None, layer=-1):
    cache = tmp_path / "cache"
    save_shards(cache, frames)
    atomic_write_json(cache / "clips.json", clips)
    atomic_write_json(cache / "meta.json", {"num_clips": len(frames), "dim": 16, "manifest": "unused"})
    run = tmp_path / "pretrain"
    atomic_write_json(run / "_done.json", {"config": {"objective": objective}, "outputs": {}})
    if contrastive is not None:
        from encoders.checkpoint import save_language_side

        save_language_side(run / "language.pt", contrastive, "contrastive", {"proj_dim": 8}, 16)
    embed = tmp_path / "embed"
    atomic_write_json(embed / "embeddings.json", {"cache_key": "k", "path": str(cache), "pretrain": str(run)})
    atomic_write_json(embed / "_done.json", {"config": {"layer": layer}, "inputs": {"pretrain": "pretrain/x"}})
    work = tmp_path / "work"
    work.mkdir()
    return StageContext(stage="probe", key="p", config={"task": task, "seed": 0}, runtime={},
                        inputs={"embed": InputRef("embed", "e", embed)}, workdir=work, cache_dir=tmp_path / "home")


RETRIEVAL = {"name": "caps", "kind": "retrieval", "metric": "recall@1", "domain": "environment",
             "splits": {"train": "train", "valid": "valid", "test": "test"}}


def _caption_clips(rng, n=14):
    frames = [rng.standard_normal((int(rng.integers(3, 9)), 16)).astype(np.float16) for _ in range(n)]
    clips = [{"id": f"c{i}", "split": "test" if i >= 2 else "train", "label": None, "labels": None, "fold": None,
              "captions": [f"clip number {i}", "a shared caption"] if i % 3 == 0 else [f"clip number {i}"]}
             for i in range(n)]
    return frames, clips


def test_retrieval_stage_scores_with_the_runs_text_side(tmp_path, contrastive) -> None:
    from encoders.text import TextTokenizer
    from harness.collect import sweep_rows
    from harness.stages import probe as probe_stage

    frames, clips = _caption_clips(np.random.default_rng(1))
    ctx = _setup(tmp_path, clips, frames, {"name": "contrastive", "proj_dim": 8}, RETRIEVAL, contrastive)
    out = probe_stage.run(ctx)
    sweep = json.loads((ctx.workdir / "sweep.json").read_text())
    test = [i for i, c in enumerate(clips) if c["split"] == "test"]
    texts, relevant = caption_relevance([clips[i]["captions"] for i in test])
    audio = embed_audio(contrastive, [frames[i] for i in test])
    text = embed_texts(contrastive, TextTokenizer(), texts, 64)
    expected = retrieval_recalls(audio, text, relevant)
    for direction in ("text-to-audio", "audio-to-text"):
        assert sweep["recalls"][direction] == pytest.approx(expected[direction])
    assert out["n_test"] == len(test) and out["n_captions"] == len(texts) and out["metric"] == "recall@1"
    rows = sweep_rows({"task": "caps"}, sweep)
    assert {(r["head"], r["metric"]) for r in rows} == {
        (d, f"recall@{k}") for d in ("text-to-audio", "audio-to-text") for k in (1, 5, 10)}


@pytest.mark.parametrize("objective", [{"name": "mtc"}, {"name": "random"}])
def test_retrieval_of_an_encoder_without_text_is_not_applicable(tmp_path, objective) -> None:
    from harness.stages import probe as probe_stage

    frames, clips = _caption_clips(np.random.default_rng(2))
    ctx = _setup(tmp_path, clips, frames, objective, RETRIEVAL)
    out = probe_stage.run(ctx)
    assert out["status"] == "not applicable" and "no text side" in out["reason"]
    assert json.loads((ctx.workdir / "sweep.json").read_text())["status"] == "not applicable"


def test_language_tasks_off_the_last_layer_are_not_applicable(tmp_path, contrastive) -> None:
    from harness.stages import probe as probe_stage

    frames, clips = _caption_clips(np.random.default_rng(3))
    ctx = _setup(tmp_path, clips, frames, {"name": "contrastive"}, RETRIEVAL, contrastive, layer=2)
    out = probe_stage.run(ctx)
    assert out["status"] == "not applicable" and "layer 2" in out["reason"]


def test_zero_shot_stage_on_folds(tmp_path, contrastive) -> None:
    from encoders.text import TextTokenizer
    from harness.collect import sweep_rows
    from harness.stages import probe as probe_stage

    rng = np.random.default_rng(4)
    names = ["dog", "rain", "church_bells"]
    frames = [rng.standard_normal((5, 16)).astype(np.float16) for _ in range(30)]
    clips = [{"id": f"c{i}", "split": "train", "label": names[i % 3], "labels": [names[i % 3]], "fold": i % 5 + 1,
              "captions": None} for i in range(30)]
    task = {"name": "zs", "kind": "zero-shot", "metric": "accuracy", "domain": "environment", "folds": 5,
            "splits": {"train": "train", "valid": "valid", "test": "test"}}
    ctx = _setup(tmp_path, clips, frames, {"name": "contrastive", "proj_dim": 8}, task, contrastive)
    out = probe_stage.run(ctx)
    prompts = embed_texts(contrastive, TextTokenizer(), [f"the sound of {n.replace('_', ' ')}" for n in sorted(names)], 64)
    audio = embed_audio(contrastive, frames)
    predicted = np.array(sorted(names))[(audio @ prompts.T).argmax(1)]
    truth = np.array([c["label"] for c in clips])
    folds = np.array([c["fold"] for c in clips])
    per_fold = [float(np.mean(predicted[folds == f] == truth[folds == f])) for f in range(1, 6)]
    assert out["fold_values"] == pytest.approx(per_fold)
    assert out["test"] == pytest.approx(np.mean(per_fold)) and out["n_folds"] == 5 and out["n_test"] == 30
    (row,) = sweep_rows({}, json.loads((ctx.workdir / "sweep.json").read_text()))
    assert row["head"] == "zero-shot" and row["n_folds"] == 5 and row["value"] == pytest.approx(np.mean(per_fold))


# ------------------------------------------------------------------- end to end (slow)

STUDY = """
include: {base}
name: e2e-language
tagging: {{sizes: [16]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc, {{name: contrastive, options: {{proj_dim: 32, train_text: false}}}}]
  baselines: []
  steps: 30
  batch_size: 16
  checkpoint_every: 20
probes:
  tasks: [mini/env_event, env_zs]
  epochs: 10
"""


@pytest.mark.slow
def test_study_with_a_zero_shot_task(harness_env, tmp_path) -> None:
    """A contrastive run saves language.pt and gets a zero-shot row; the MTC run's zero-shot job is not applicable."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parent.parent
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "env_zs.yaml").write_text(f"include: {root / 'probes/tasks/mini/env_event.yaml'}\nkind: zero-shot\n")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(base=root / "studies" / "base" / "mini.yaml"))
    out = tmp_path / "out"
    env = {**harness_env, "HARNESS_TASK_PATH": str(tasks)}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(study), "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {json.loads((d / "_done.json").read_text())["config"]["objective"]["name"]: d
            for d in (out / "store" / "pretrain").iterdir() if (d / "_done.json").is_file()}
    assert (runs["contrastive"] / "language.pt").is_file() and not (runs["mtc"] / "language.pt").exists()
    frame = pd.read_parquet(out / "results.parquet")
    zero_shot = frame[frame["task"] == "env_zs"]
    assert list(zero_shot["objective"]) == ["contrastive"] and list(zero_shot["head"]) == ["zero-shot"]
    assert 0.0 <= zero_shot["value"].iloc[0] <= 1.0 and zero_shot["n_test"].iloc[0] > 0
    skipped = [json.loads(p.read_text()) for p in (out / "store" / "probe").glob("*/sweep.json")]
    assert sum(s.get("status") == "not applicable" for s in skipped) == 1


def test_retrieval_embeds_only_the_test_split(tmp_path) -> None:
    from harness.stages.embed import split_manifest
    from harness.stages.manifests import iter_cut_dicts

    manifest = tmp_path / "cuts.jsonl"
    cuts = [{"id": f"c{i}", "duration": 1.0, "custom": {"split": ["train", "valid", "test"][i % 3],
                                                        "captions": [f"caption {i}"]}} for i in range(9)]
    manifest.write_text("".join(json.dumps(c) + "\n" for c in cuts))
    path = split_manifest(manifest, "test", tmp_path / "home")
    assert [c["id"] for c in iter_cut_dicts(path)] == ["c2", "c5", "c8"]
    assert list(iter_cut_dicts(path))[0] == cuts[2]
    assert split_manifest(manifest, "test", tmp_path / "home") == path  # named by content: stable
    with pytest.raises(ValueError, match="no clip in split 'eval'"):
        split_manifest(manifest, "eval", tmp_path / "home")
