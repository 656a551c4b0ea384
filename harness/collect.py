"""Gather the records of completed probe nodes into ``runs/<study>/results.parquet``.

One row per (run, task, head, pooling, metric), with the grid coordinates, the value on
the test split, the test-set size, the chosen hyperparameters, the git commit and the
package versions. Every coordinate of the probe job is a column of its own: ``source``,
``objective``, ``objective_label`` (an objective entry's ``label``: the coordinate
``arm`` of the graph), ``tag_system``, ``tag_system_size``, ``captions``, ``init``,
``data_size``, ``encoder``, ``seed``, ``task``, ``domain``, ``probe_seed``; with them
``run`` (the display label, :func:`harness.labels.run_label`), ``arm`` (the label the
run's seeds share, :func:`harness.labels.arm_label`) and ``task_version`` (the task
declaration's ``version``). ``run_id`` and ``probe_key`` are the store keys of the
pre-training and probe jobs. ``n_classes`` is the probe task's number of classes,
``chance`` the metric a chance-level predictor scores on the test split (accuracy:
1/classes; mAP: the classes' mean test prevalence, the expected AP of random scores;
empty for other metrics), and ``finished_at`` the time the probe job completed (its
completion record), so that a report can date its results from them.

For a k-fold task the value is the mean over folds: ``n_folds`` counts them,
``fold_values`` (JSON) lists each fold's test value and ``hparams`` the hyperparameters
chosen on each fold; ``n_test`` sums the folds' test clips. Retrieval rows carry
``recall@k`` per direction (head ``text-to-audio`` / ``audio-to-text``; a retrieval probe's
trained text side: ``trained-text-to-audio`` / ``trained-audio-to-text``); captioning rows one
per caption metric (head ``greedy``: ``bleu_4``, ``meteor``, ``rouge_l``, ``cider_d``); zero-shot rows
have head ``zero-shot``. A retrieval or zero-shot task of an encoder without a text side
is recorded as not applicable by the probe job and gives no row. A study with a
``search:`` block adds a ``search`` column (JSON: the values its Optuna search chose,
their validation score, the trial; harness/search.py).

The resolved configs are stored once each, beside the results, in ``configs.parquet``:
one row per job the results rest on, with columns ``stage`` (``pretrain`` or
``probe``), ``key`` (``run_id`` or ``probe_key``) and ``config`` (canonical JSON). Read
them with :func:`results.table.load_configs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.dispatch import Layout
from harness.graph import Graph
from harness.labels import arm_label, run_label, with_seed
from harness.provenance import git_commit, package_versions
from harness.store import canonical_json

RESULTS = "results.parquet"
CONFIGS = "configs.parquet"
"""The side table of resolved configs, beside ``results.parquet`` (see the module docstring)."""

COORDINATE_COLUMNS = {"arm": "objective_label"}
"""Coordinates stored under another column name: the graph's ``arm`` (an objective entry's
label) would clash with the results' ``arm`` (the label a run's seeds share)."""

_run_label = run_label  # the old private name, for callers that still use it


@dataclass
class Collected:
    """What :func:`collect_results` gathers: the result rows, and the resolved config of
    every job they rest on, keyed by ``(stage, key)``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def collect_results(graph: Graph, layout: Layout, study_name: str) -> Collected:
    """The result rows of the graph's completed probe jobs, and their runs' and probes' configs."""
    out = Collected()
    versions = json.dumps(package_versions(), sort_keys=True)
    commit = git_commit()
    for node in graph:
        if node.stage != "probe":
            continue
        record = layout.store_for("probe").record("probe", node.key)
        if record is None:
            continue
        sweep = json.loads((layout.store.path("probe", node.key) / "sweep.json").read_text())
        if sweep.get("status") == "not applicable":
            continue  # e.g. retrieval for an encoder without a text side: the record says why
        run = node.inputs["embed"].inputs["pretrain"]
        pretrain = layout.store_for("pretrain").record("pretrain", run.key) or {}
        c = node.coords
        arm = arm_label(c)
        base = {
            "study": study_name, "run_id": run.key, "run": with_seed(arm, c.get("seed", 0)), "arm": arm,
            "source": c.get("source"), "tag_system": c.get("tag_system"),
            "tag_system_size": c.get("tag_system_size"), "objective": c.get("objective"),
            "objective_label": c.get("arm"),
            "encoder": c.get("encoder"), "seed": c.get("seed"), "task": c.get("task"),
            "task_version": (node.config.get("task") or {}).get("version"), "domain": c.get("domain"),
            "data_size": c.get("data_size"), "captions": c.get("captions"), "init": c.get("init"),
            "train_clips": (pretrain.get("outputs", {}).get("train") or {}).get("clips"),
            "probe_seed": c.get("probe_seed"), "split": "test", "n_test": record["outputs"]["n_test"],
            "n_classes": sweep.get("num_classes"), "chance": _chance(sweep, layout.store.path("probe", node.key)),
            "finished_at": record.get("finished_at"),
            "metric": sweep["metric"], "probe_key": node.key,
            "git_commit": commit, "versions": versions,
        }
        for name, value in c.items():  # any other coordinate, under its own name
            base.setdefault(COORDINATE_COLUMNS.get(name, name), value)
        out.configs[("pretrain", run.key)] = run.config
        out.configs[("probe", node.key)] = node.config
        out.rows += sweep_rows(base, sweep)
    return out


def _chance(sweep: dict[str, Any], folder: Path) -> float | None:
    """The chance level of a probe's metric on its test split (see the module docstring)."""
    metric, classes = str(sweep.get("metric", "")).lower(), sweep.get("num_classes")
    if metric == "accuracy" and classes:
        return 1.0 / float(classes)
    if metric == "map" and (folder / "predictions.npz").is_file():
        import numpy as np

        with np.load(folder / "predictions.npz") as data:
            labels = np.asarray(data["labels"], dtype=np.float64)
        if labels.ndim == 2 and len(labels):
            return float(labels.mean(axis=0).mean())
    return None


def result_rows(graph: Graph, layout: Layout, study_name: str) -> list[dict[str, Any]]:
    """The rows of the results table (:func:`collect_results` without the configs)."""
    return collect_results(graph, layout, study_name).rows


def sweep_rows(base: dict[str, Any], sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """The result rows of one probe job's ``sweep.json``, each extending ``base``."""
    rows: list[dict[str, Any]] = []
    table = sweep.get("recalls") or sweep.get("scores")
    if table:  # retrieval: one row per direction and k; captioning: per decoding and caption metric
        for head, values in table.items():
            for metric, value in values.items():
                rows.append({**base, "head": head, "metric": metric, "value": float(value),
                             "valid_value": float("nan"), "n_folds": 1, "fold_values": None,
                             "hparams": canonical_json({})})
        return rows
    groups = sweep.get("groups") or {
        f"{head}-{pooling}": {**best, "folds": [{**best, "fold": None}]}
        for (head, pooling), best in _best_per_head(sweep["heads"]).items()}
    for name, best in groups.items():
        folds = best["folds"]
        folded = len(folds) > 1 or folds[0].get("fold") is not None
        hparams = ([{k: f[k] for k in ("fold", "lr", "weight_decay") if k in f} for f in folds] if folded
                   else {k: folds[0][k] for k in ("lr", "weight_decay") if k in folds[0]})
        rows.append({**base, "head": name, "value": float(best["test"]),
                     "valid_value": float("nan") if best.get("valid") is None else float(best["valid"]),
                     "n_folds": len(folds),
                     "fold_values": canonical_json([f["test"] for f in folds]) if folded else None,
                     "hparams": canonical_json(hparams)})
    return rows


def _best_per_head(heads: list[dict]) -> dict[tuple[str, str], dict]:
    """For each head type and pooling, the hyperparameters chosen on validation."""
    best: dict[tuple[str, str], dict] = {}
    for h in heads:  # heads come in sweep order; ties keep the first (smaller lr / wd)
        group = (h.get("head", "linear"), h.get("pooling", "mean"))
        if group not in best or h["valid"] > best[group]["valid"]:
            best[group] = h
    return best


def write_results(graph: Graph, layout: Layout, study_name: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the results table and its configs side table atomically; returns the results'
    path. ``extra``: columns set on every row (``search``: the values a hyperparameter
    search chose, as JSON). The configs are written first, so that a results table is
    never without them."""
    import pandas as pd

    collected = collect_results(graph, layout, study_name)
    configs = pd.DataFrame([{"stage": stage, "key": key, "config": canonical_json(config)}
                            for (stage, key), config in sorted(collected.configs.items())],
                           columns=["stage", "key", "config"])
    _write_parquet(configs, layout.out / CONFIGS)
    frame = pd.DataFrame([{**row, **(extra or {})} for row in collected.rows])
    if not frame.empty:
        frame = frame.sort_values(["run", "task", "head", "probe_seed"], kind="stable").reset_index(drop=True)
    path = layout.out / RESULTS
    _write_parquet(frame, path)
    return path


def _write_parquet(frame, path: Path) -> None:
    """``frame`` as a parquet file at ``path``, published atomically."""
    import io

    from harness.store import atomic_write_bytes

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
