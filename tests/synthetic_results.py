"""A results table with known values, for the report and figure tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from harness.labels import arm_label, run_label

TASKS = {"speaker": "speech", "language": "speech", "instrument": "music", "event": "environment"}
OBJECTIVE_GAIN = {"mtc": 0.10, "par": 0.05}
N_TEST = {"speaker": 48, "language": 40, "instrument": 48, "event": 64}
N_CLASSES = {"speaker": 8, "language": 5, "instrument": 8, "event": 8}


def expected_value(objective: str, k: int | None, task: str) -> float:
    """The true (seed-free) metric of an arm: known in closed form, so means can be checked."""
    base = 0.5 + 0.02 * list(TASKS).index(task)
    if objective == "random":
        return base
    return base + OBJECTIVE_GAIN[objective] + 0.01 * np.log2(k / 32)


def synthetic_results(ks=(32, 64, 128), seeds=(0, 1), clips=None) -> pd.DataFrame:
    rows = []
    arms = [(o, k) for o in OBJECTIVE_GAIN for k in ks] + [("random", None)]
    for (objective, k), seed, (task, domain) in itertools.product(arms, seeds, TASKS.items()):
        noise = 0.004 if seed % 2 else -0.004  # cancels in the mean over two seeds
        for n in clips or [None]:
            bonus = 0.0 if n is None else 0.02 * np.log10(n / 100)
            coords = {"objective": objective, "tag_system": "-" if k is None else f"uts-{k}", "seed": seed}
            rows.append({
                "run": run_label(coords), "arm": arm_label(coords), **coords,
                "tag_system_size": k, "task": task, "domain": domain, "head": "linear-mean",
                "metric": "accuracy", "value": expected_value(objective, k, task) + noise + bonus,
                "train_clips": None if objective == "random" else n, "probe_seed": 0,
                "study": "synthetic", "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "finished_at": f"2026-01-0{seed + 1}T10:3{list(TASKS).index(task)}:00+0000",
                "n_test": N_TEST[task], "n_classes": N_CLASSES[task], "chance": 1.0 / N_CLASSES[task],
            })
    return pd.DataFrame(rows)
