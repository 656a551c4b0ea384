"""k-fold probing: the fold plan, and the probe stage on a generic k-fold task against
independent per-fold sweeps and scikit-learn's LogisticRegression tuned per fold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from harness.job import InputRef, StageContext
from harness.store import atomic_write_json
from probes.embed import save_shards
from probes.folds import fold_plan
from probes.heads import probe_sweep

SKLEARN_CS = np.logspace(-4, 2, 13)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fold_plan_tests_every_clip_once_and_validates_on_the_next_fold() -> None:
    folds = [3, 1, 2, 5, 4, 1, 2, 3, 4, 5, 5, 1]
    plan = fold_plan(folds, 5)
    assert [(f.fold, f.valid_fold) for f in plan] == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 1)]
    tested = np.concatenate([f.test for f in plan])
    assert sorted(tested.tolist()) == list(range(len(folds)))
    for f in plan:
        assert {folds[i] for i in f.test} == {f.fold}
        assert {folds[i] for i in f.valid} == {f.valid_fold}
        assert {folds[i] for i in f.train} == set(folds) - {f.fold, f.valid_fold}
        assert not set(f.train) & set(f.valid) and not set(f.train) & set(f.test)


def test_fold_plan_checks_its_input() -> None:
    with pytest.raises(ValueError, match="no fold"):
        fold_plan([1, 2, None, 3], 3)
    with pytest.raises(ValueError, match="at least 3 folds"):
        fold_plan([1, 2, 1, 2], 5)
    with pytest.raises(ValueError, match="declares 3 folds"):
        fold_plan([1, 2, 3, 4], 3)
    assert len(fold_plan([1, 2, 4, 4], 5)) == 3  # a subset missing a fold: the folds present


# ----------------------------------------------------------------- the probe stage

K = 5
PER_FOLD = 360


def _clips(rng: np.random.Generator, n_classes: int = 6, dim: int = 32, noise: float = 2.2):
    """Frame-level Gaussian clusters, one fold column: items of 4-12 frames around their class center."""
    centers = 0.45 * rng.standard_normal((n_classes, dim))
    labels = rng.integers(0, n_classes, K * PER_FOLD)
    frames = [(centers[k] + noise * rng.standard_normal((int(rng.integers(4, 13)), dim))).astype(np.float16)
              for k in labels]
    folds = np.repeat(np.arange(1, K + 1), PER_FOLD)
    rng.shuffle(folds)
    return frames, labels, folds


def _stage(tmp_path, frames, labels, folds, task):
    cache = tmp_path / "cache"
    save_shards(cache, frames)
    names = [f"class{k}" for k in labels]
    atomic_write_json(cache / "clips.json", [
        {"id": f"c{i}", "label": names[i], "labels": [names[i]], "split": "train", "fold": int(folds[i])}
        for i in range(len(frames))])
    embed = tmp_path / "embed"
    atomic_write_json(embed / "embeddings.json", {"cache_key": "k", "path": str(cache)})
    atomic_write_json(embed / "_done.json", {"config": {"layer": -1}, "inputs": {}, "outputs": {}})
    config = {"task": task, "heads": ["linear"], "poolings": ["mean"], "lrs": [1e-3, 1e-2, 1e-1],
              "weight_decays": [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
              "epochs": 100, "batch_size": 256, "seed": 0, "precision": "fp32"}
    work = tmp_path / "work"
    work.mkdir()
    return StageContext(stage="probe", key="p", config=config, runtime={},
                        inputs={"embed": InputRef("embed", "e", embed)}, workdir=work, cache_dir=tmp_path / "home")


def _sklearn_fold(x, y, f) -> float:
    mean, std = x[f.train].mean(0), x[f.train].std(0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    best = (-1.0, 0.0)
    for c in SKLEARN_CS:
        model = LogisticRegression(C=c, max_iter=5000).fit(z[f.train], y[f.train])
        valid = model.score(z[f.valid], y[f.valid])
        if valid > best[0]:
            best = (valid, model.score(z[f.test], y[f.test]))
    return best[1]


def test_kfold_probe_is_the_mean_of_independent_per_fold_sweeps(tmp_path) -> None:
    from harness.stages import probe as probe_stage

    rng = np.random.default_rng(0)
    frames, labels, folds = _clips(rng)
    task = {"name": "generic-kfold", "kind": "multiclass", "metric": "accuracy", "folds": K, "domain": "environment",
            "splits": {"train": "train", "valid": "valid", "test": "test"}, "adapter": "generic", "args": {}}
    ctx = _stage(tmp_path, frames, labels, folds, task)
    out = probe_stage.run(ctx)
    sweep = json.loads((ctx.workdir / "sweep.json").read_text())

    # Independent sweeps, one per fold, on the same split of the clips.
    plan = fold_plan(folds.tolist(), K)
    cfg = ctx.config
    independent = []
    for f in plan:
        part = [([frames[i] for i in idx], labels[idx]) for idx in (f.train, f.valid, f.test)]
        r = probe_sweep(*part, "multiclass", lrs=cfg["lrs"], weight_decays=cfg["weight_decays"], seed=0)
        independent.append(r)
    per_fold = [r.test for r in independent]
    assert out["n_folds"] == K and sweep["n_folds"] == K
    assert out["fold_values"] == pytest.approx(per_fold, abs=1e-12)
    assert out["test"] == pytest.approx(np.mean(per_fold), abs=1e-12)
    assert out["n_test"] == len(frames) and out["n_train"] == (K - 2) * len(frames)
    assert [r["fold"] for r in sweep["folds"]] == [1, 2, 3, 4, 5]
    assert [r["valid_fold"] for r in sweep["folds"]] == [2, 3, 4, 5, 1]
    group = sweep["groups"]["linear-mean"]
    assert group["test"] == pytest.approx(np.mean(per_fold), abs=1e-12)
    for chosen, r in zip(group["folds"], independent):
        assert (chosen["lr"], chosen["weight_decay"]) == (r.best["lr"], r.best["weight_decay"])
    assert len(sweep["heads"]) == K * 30 and {h["fold"] for h in sweep["heads"]} == set(range(1, K + 1))

    # Predictions: every clip once, folds in order, scoring back to the pooled accuracy.
    with np.load(ctx.workdir / "predictions.npz") as data:
        assert len(data["labels"]) == len(frames)
        pooled = float(np.mean(data["linear-mean"].argmax(1) == data["labels"]))
    assert pooled == pytest.approx(np.mean(per_fold), abs=1e-12)  # equal-size folds

    # scikit-learn's LogisticRegression tuned on each fold's valid fold.
    x = np.stack([f.astype(np.float64).mean(0) for f in frames])
    sk = [_sklearn_fold(x, labels, f) for f in plan]
    assert 0.6 < np.mean(sk) < 0.95, "the task must be neither trivial nor hopeless"
    assert max(abs(a - b) for a, b in zip(per_fold, sk)) <= 0.03
    assert abs(np.mean(per_fold) - np.mean(sk)) <= 0.01


def test_single_split_task_is_one_fold(tmp_path) -> None:
    from harness.stages import probe as probe_stage

    rng = np.random.default_rng(1)
    frames, labels, folds = _clips(rng)
    task = {"name": "fixed", "kind": "multiclass", "metric": "accuracy", "domain": "environment",
            "splits": {"train": "1", "valid": "2", "test": "3"}, "adapter": "generic", "args": {}}
    ctx = _stage(tmp_path, frames, labels, folds, task)
    rows = json.loads((tmp_path / "cache" / "clips.json").read_text())
    for row, f in zip(rows, folds):
        row["split"] = str(min(f, 3))
    atomic_write_json(tmp_path / "cache" / "clips.json", rows)
    ctx.config.update(lrs=[1e-2], weight_decays=[0.0, 1e-2], epochs=20)
    out = probe_stage.run(ctx)
    assert out["n_folds"] == 1 and "fold_values" not in out and isinstance(out["best"], dict)
    assert out["n_test"] == int((folds >= 3).sum())
    sweep = json.loads((ctx.workdir / "sweep.json").read_text())
    assert sweep["groups"]["linear-mean"]["folds"][0]["fold"] is None


def test_results_rows_of_a_kfold_sweep() -> None:
    from harness.collect import sweep_rows

    folds = [{"fold": f, "valid_fold": f % 3 + 1, "valid": 0.5, "test": t, "lr": 0.01, "weight_decay": 0.001,
              "n_test": 10} for f, t in zip((1, 2, 3), (0.6, 0.7, 0.8))]
    sweep = {"metric": "accuracy", "heads": [], "groups": {
        "linear-mean": {"head": "linear", "pooling": "mean", "valid": 0.5, "test": 0.7, "folds": folds}}}
    (row,) = sweep_rows({"task": "t"}, sweep)
    assert row["head"] == "linear-mean" and row["value"] == pytest.approx(0.7) and row["n_folds"] == 3
    assert json.loads(row["fold_values"]) == [0.6, 0.7, 0.8]
    assert [h["fold"] for h in json.loads(row["hparams"])] == [1, 2, 3]
    # A sweep.json written before folds (no "groups"): one row per group, chosen on valid.
    old = {"metric": "accuracy", "heads": [
        {"lr": 0.1, "weight_decay": 0.0, "head": "linear", "pooling": "mean", "valid": 0.4, "test": 0.3},
        {"lr": 0.1, "weight_decay": 0.1, "head": "linear", "pooling": "mean", "valid": 0.6, "test": 0.5}]}
    (row,) = sweep_rows({}, old)
    assert row["value"] == 0.5 and row["n_folds"] == 1 and row["fold_values"] is None
    assert json.loads(row["hparams"]) == {"lr": 0.1, "weight_decay": 0.1}
