"""Train a sweep of probe heads on cached embeddings; select on validation, score on test.

A task with fixed splits is one sweep. A task that declares ``folds: k`` runs one sweep
per fold (test fold i, valid fold i+1, train the rest; see ``probes/folds.py``) and
reports the mean over folds, with every fold's value and chosen hyperparameters in
``sweep.json``. Retrieval and zero-shot tasks train nothing: they are scored with the
pre-trained audio-text model (see ``probes/language.py``), or recorded as not applicable
for an encoder without one. Retrieval-probe and captioning tasks train a text side or a
text decoder on the frozen frames of the captioned train split, for every encoder
(``probes/text_heads.py``); captioning also writes the decoded test captions,
``captions.jsonl``, beside its scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.job import StageContext
from harness.store import atomic_write_json
from harness.registry import Component
from harness.tasks import TRAINED_LANGUAGE_KINDS

# 2: test predictions of every (head, pooling) group in predictions.npz
# 3: k-fold tasks run every fold; retrieval and zero-shot tasks for audio-text encoders
# 4: probes.precision (bf16 training matmuls where the hardware has bf16 units)
# 5: retrieval-probe and captioning tasks (a text side / decoder trained on the frozen frames)
COMPONENT = Component(
    kind="stage",
    target="run",
    version="5",
    doc="the probe sweep of one task over cached frames",
    meta={"order": 70},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)

LANGUAGE_KINDS = ("retrieval", "zero-shot")


def run(ctx: StageContext) -> dict:
    from probes.embed import load_shards

    cfg, task = ctx.config, ctx.config["task"]
    pointer = json.loads((ctx.inputs["embed"].path / "embeddings.json").read_text())
    cache = Path(pointer["path"])
    clips = json.loads((cache / "clips.json").read_text())
    if task["kind"] in LANGUAGE_KINDS:
        from probes.language import run_language_task

        out = run_language_task(ctx, task, pointer, cache, clips)
        atomic_write_json(ctx.workdir / "sweep.json", out)
        return {k: v for k, v in out.items() if k not in ("classes", "groups")}
    if task["kind"] in TRAINED_LANGUAGE_KINDS:
        from probes.language import clip_captions
        from probes.text_heads import run_trained_language_task

        out = run_trained_language_task(ctx, task, cache, clips, clip_captions)
        atomic_write_json(ctx.workdir / "sweep.json", out)
        return {k: v for k, v in out.items() if k not in ("history", "head_options")}
    embeddings = load_shards(cache)
    classes, labels = _labels(task, clips)
    return _probe(ctx, cfg, task, embeddings, clips, classes, labels)


def _labels(task: dict, clips: list[dict]) -> tuple[list[str], np.ndarray]:
    if task["kind"] == "multiclass":
        classes = sorted({c["label"] for c in clips})
        index = {c: i for i, c in enumerate(classes)}
        return classes, np.array([index[c["label"]] for c in clips], dtype=np.int64)
    if task["kind"] == "multilabel":
        classes = sorted({label for c in clips for label in c["labels"]})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.zeros((len(clips), len(classes)), dtype=np.float32)
        for row, c in enumerate(clips):
            labels[row, [index[x] for x in c["labels"]]] = 1.0
        return classes, labels
    raise NotImplementedError(f"task kind {task['kind']!r} is not a probe task")


def _probe(ctx, cfg, task, embeddings, clips, classes, labels) -> dict:
    from probes.folds import fold_plan, run_folds, single_split_plan
    from probes.heads import probe_sweep

    if task.get("folds"):
        plan = fold_plan([c.get("fold") for c in clips], task["folds"])
        ctx.log(f"{task['name']}: {len(plan)} folds (test fold i, valid fold i+1, train the rest)")
    else:
        plan = single_split_plan([c["split"] for c in clips], task["splits"])
        for name, idx in zip(("train", "valid", "test"), (plan[0].train, plan[0].valid, plan[0].test)):
            if not len(idx):
                raise ValueError(f"task {task['name']}: split {name!r} ({task['splits'][name]!r}) has no clips")

    def sweep(fold):
        def part(idx):
            return [embeddings[i] for i in idx], labels[idx]

        result = probe_sweep(part(fold.train), part(fold.valid), part(fold.test), kind=task["kind"],
                             lrs=cfg["lrs"], weight_decays=cfg["weight_decays"], heads=cfg["heads"],
                             poolings=cfg["poolings"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                             seed=cfg["seed"], progress=ctx.progress, precision=cfg["precision"])
        if fold.fold is not None:
            ctx.log(f"{task['name']} fold {fold.fold}: {result.metric} valid {result.valid:.4f} "
                    f"test {result.test:.4f} best {result.best}")
        return result

    result = run_folds(plan, sweep)
    test_labels = labels[result.test_index]
    np.save(ctx.workdir / "test_scores.npy", result.test_scores)
    np.save(ctx.workdir / "test_labels.npy", test_labels)
    # Per (head, pooling): the test scores of the head chosen on validation, for paired
    # bootstraps between arms in the report (rows follow the test split's clip order; for
    # k-fold tasks, every clip once, folds in order).
    np.savez(ctx.workdir / "predictions.npz", labels=test_labels, **result.group_scores)
    folded = bool(task.get("folds"))
    rounds = result.rounds
    out = {"metric": result.metric, "valid": result.valid, "test": result.test,
           "best": [r["best"] for r in rounds] if folded else rounds[0]["best"],
           "n_train": sum(r["n_train"] for r in rounds), "n_valid": sum(r["n_valid"] for r in rounds),
           "n_test": sum(r["n_test"] for r in rounds), "num_classes": len(classes),
           "num_heads": len(result.heads) // len(rounds), "n_folds": len(rounds) if folded else 1,
           "precision": _precision(cfg["precision"])}
    if folded:
        out.update(test_std=result.test_std, fold_values=[r["test"] for r in rounds])
    atomic_write_json(ctx.workdir / "sweep.json", {"classes": classes, "heads": result.heads, "groups": result.groups,
                                                   **({"folds": rounds} if folded else {}), **out})
    ctx.log(f"{task['name']}: {result.metric} valid {result.valid:.4f} test {result.test:.4f}"
            + (f" (mean of {len(rounds)} folds, std {result.test_std:.4f})" if folded else f" best {out['best']}"))
    return out


def _precision(setting: str) -> str:
    """The precision a sweep at ``setting`` trains in on this machine: ``bf16`` or ``fp32``."""
    import torch

    from probes.heads import use_bf16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if use_bf16(setting, device) else "fp32"
