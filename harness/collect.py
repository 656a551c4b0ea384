"""Gather the records of completed probe nodes into ``runs/<study>/results.parquet``.

One row per (run, task, head, pooling, metric), with the grid coordinates, the value on
the test split, the test-set size, the chosen hyperparameters, the resolved config, the
git commit and the package versions. For a k-fold task the value is the mean over folds:
``n_folds`` counts them, ``fold_values`` (JSON) lists each fold's test value and
``hparams`` the hyperparameters chosen on each fold; ``n_test`` sums the folds' test
clips. Retrieval rows carry ``recall@k`` per direction (head ``text-to-audio`` /
``audio-to-text``); zero-shot rows have head ``zero-shot``. A retrieval or zero-shot
task of an encoder without a text side is recorded as not applicable by the probe job
and gives no row. A study with a ``search:`` block adds a ``search`` column (JSON: the
values its Optuna search chose, their validation score, the trial; harness/search.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.dispatch import Layout
from harness.graph import Graph
from harness.provenance import git_commit, package_versions
from harness.store import canonical_json

RESULTS = "results.parquet"


def result_rows(graph: Graph, layout: Layout, study_name: str) -> list[dict[str, Any]]:
    rows = []
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
        base = {
            "study": study_name, "run_id": run.key, "run": _run_label(c),
            "source": c.get("source"), "tag_system": c.get("tag_system"),
            "tag_system_size": c.get("tag_system_size"), "objective": c.get("objective"),
            "encoder": c.get("encoder"), "seed": c.get("seed"), "task": c.get("task"), "domain": c.get("domain"),
            "data_size": c.get("data_size"), "captions": c.get("captions"), "init": c.get("init"),
            "train_clips": (pretrain.get("outputs", {}).get("train") or {}).get("clips"),
            "probe_seed": c.get("probe_seed"), "split": "test", "n_test": record["outputs"]["n_test"],
            "metric": sweep["metric"], "probe_key": node.key,
            "config": canonical_json({"pretrain": run.config, "probe": node.config}),
            "git_commit": commit, "versions": versions,
        }
        rows += sweep_rows(base, sweep)
    return rows


def sweep_rows(base: dict[str, Any], sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """The result rows of one probe job's ``sweep.json``, each extending ``base``."""
    rows: list[dict[str, Any]] = []
    if "recalls" in sweep:  # retrieval: one row per direction and k
        for head, values in sweep["recalls"].items():
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


def _run_label(c: dict) -> str:
    label = c.get("arm") or c.get("objective", "?")  # arm: an objective entry's label
    if c.get("tag_system") not in (None, "-"):
        label += f" {c['tag_system']}"
    if c.get("captions"):  # the objective's own captions (graph.captions_label), e.g. [weak_caption]
        label += f" [{c['captions']}]"
    if c.get("init"):  # fine-tuned from another run or a checkpoint
        label += f" init={c['init']}"
    if c.get("source") not in (None, "-"):
        label = f"{c['source']}/{label}"
    return f"{label} s{c.get('seed', 0)}"


def write_results(graph: Graph, layout: Layout, study_name: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the results table atomically; returns its path. ``extra``: columns set on
    every row (``search``: the values a hyperparameter search chose, as JSON)."""
    import io

    import pandas as pd

    from harness.store import atomic_write_bytes

    rows = [{**row, **(extra or {})} for row in result_rows(graph, layout, study_name)]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["run", "task", "head", "probe_seed"], kind="stable").reset_index(drop=True)
    path = layout.out / RESULTS
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path
