"""Train a sweep of probe heads on cached embeddings; select on validation, score on test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.job import StageContext
from harness.store import atomic_write_json

VERSION = "2"  # 2: test predictions of every (head, pooling) group in predictions.npz


def run(ctx: StageContext) -> dict:
    from probes.embed import load_shards
    from probes.heads import probe_sweep

    cfg, task = ctx.config, ctx.config["task"]
    pointer = json.loads((ctx.inputs["embed"].path / "embeddings.json").read_text())
    cache = Path(pointer["path"])
    embeddings = load_shards(cache)
    clips = json.loads((cache / "clips.json").read_text())
    splits = {name: [i for i, c in enumerate(clips) if c["split"] == value] for name, value in task["splits"].items()}
    for name, idx in splits.items():
        if not idx:
            raise ValueError(f"task {task['name']}: split {name!r} ({task['splits'][name]!r}) has no clips")
    if task["kind"] == "multiclass":
        classes = sorted({c["label"] for c in clips})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[c["label"]] for c in clips], dtype=np.int64)
    elif task["kind"] == "multilabel":
        classes = sorted({label for c in clips for label in c["labels"]})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.zeros((len(clips), len(classes)), dtype=np.float32)
        for row, c in enumerate(clips):
            labels[row, [index[x] for x in c["labels"]]] = 1.0
    else:
        raise NotImplementedError(f"task kind {task['kind']!r} is not a probe task")

    def part(name):
        idx = splits[name]
        return [embeddings[i] for i in idx], labels[idx]

    result = probe_sweep(part("train"), part("valid"), part("test"), kind=task["kind"],
                         lrs=cfg["lrs"], weight_decays=cfg["weight_decays"], heads=cfg["heads"],
                         poolings=cfg["poolings"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                         seed=cfg["seed"], progress=ctx.progress)
    np.save(ctx.workdir / "test_scores.npy", result.test_scores)
    np.save(ctx.workdir / "test_labels.npy", labels[splits["test"]])
    # Per (head, pooling): the test scores of the head chosen on validation, for paired
    # bootstraps between arms in the report (rows follow the test split's clip order).
    np.savez(ctx.workdir / "predictions.npz", labels=labels[splits["test"]],
             **{f"{head}-{pooling}": scores for (head, pooling), scores in result.group_scores.items()})
    out = {"metric": result.metric, "valid": float(result.valid), "test": float(result.test), "best": result.best,
           "n_train": len(splits["train"]), "n_valid": len(splits["valid"]), "n_test": len(splits["test"]),
           "num_classes": len(classes), "num_heads": len(result.heads)}
    atomic_write_json(ctx.workdir / "sweep.json", {"classes": classes, "heads": result.heads, **out})
    ctx.log(f"{task['name']}: {result.metric} valid {result.valid:.4f} test {result.test:.4f} best {result.best}")
    return out
