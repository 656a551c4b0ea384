"""k-fold probing: one probe sweep per fold, the test metric averaged over folds.

A task that declares ``folds: k`` (ESC-50, UrbanSound8K, CREMA-D, a generic CSV with a
``fold`` column) is scored on every fold in turn. With the folds present in the clips
sorted as ``f_1 < f_2 < ... < f_k``, round ``i``

* tests on fold ``f_i``,
* selects hyperparameters on fold ``f_{i+1}`` (``f_1`` for the last round),
* trains on the other ``k - 2`` folds.

Each round is an independent sweep (same grid, same seed), selected on its own valid
fold; the task's value is the unweighted mean over rounds of the chosen head's test
metric (the usual ESC-50 / UrbanSound8K protocol), and every round's value and chosen
hyperparameters are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Fold", "fold_plan", "single_split_plan", "run_folds", "FoldedResult"]


@dataclass
class Fold:
    """One round: the clip indices of its train, valid and test parts."""

    fold: Any  # the test fold's value (None for a task with fixed splits)
    valid_fold: Any
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def fold_plan(folds: Sequence[Any], k: int | None = None, min_folds: int = 3) -> list[Fold]:
    """The rounds of a k-fold task from each clip's fold value.

    ``k`` is the declared number of folds; folds with no clip are left out (a subset of
    the dataset), but at least ``min_folds`` must be present: test, valid and one to
    train on. A clip without a fold is an error.
    """
    folds = list(folds)
    missing = [i for i, f in enumerate(folds) if f is None]
    if missing:
        raise ValueError(f"{len(missing)} clips have no fold (first: row {missing[0]}); a task declaring folds "
                         "needs every clip's fold")
    present = sorted(set(folds))
    if len(present) < min_folds:
        raise ValueError(f"k-fold probing needs at least {min_folds} folds with clips (test, valid, train); "
                         f"found {present}" + (f" of the {k} declared" if k else ""))
    if k is not None and len(present) > k:
        raise ValueError(f"the task declares {k} folds but its clips carry {len(present)}: {present}")
    fold_of = np.asarray([present.index(f) for f in folds])
    plan = []
    for i, value in enumerate(present):
        j = (i + 1) % len(present)
        plan.append(Fold(value, present[j], np.flatnonzero((fold_of != i) & (fold_of != j)),
                         np.flatnonzero(fold_of == j), np.flatnonzero(fold_of == i)))
    return plan


def single_split_plan(splits: Sequence[Any], names: dict[str, Any]) -> list[Fold]:
    """The one round of a task with fixed splits: ``names`` maps train/valid/test to split values."""
    splits = np.asarray(list(splits), dtype=object)
    idx = {part: np.flatnonzero(splits == value) for part, value in names.items()}
    return [Fold(None, None, idx["train"], idx["valid"], idx["test"])]


@dataclass
class FoldedResult:
    """Sweeps of every round, and their summary.

    ``groups`` maps ``"head-pooling"`` to ``{head, pooling, valid, test, test_std,
    folds: [{fold, valid_fold, valid, test, lr, weight_decay, n_test}]}``: per round the
    head of that group chosen on the round's valid fold, and the means over rounds.
    ``best`` is, per round, the overall chosen head (all groups together).
    """

    metric: str
    valid: float
    test: float
    test_std: float
    rounds: list[dict]
    groups: dict[str, dict]
    heads: list[dict]
    test_scores: np.ndarray  # the chosen heads' test scores, rounds concatenated
    group_scores: dict[str, np.ndarray]
    test_index: np.ndarray  # clip indices of the rows of test_scores


def run_folds(plan: Sequence[Fold], sweep: Callable[[Fold], Any]) -> FoldedResult:
    """Run ``sweep(fold) -> SweepResult`` on every round of ``plan`` and summarise them."""
    rounds, heads, groups = [], [], {}
    scores, group_scores, test_index = [], {}, []
    for f in plan:
        result = sweep(f)
        sizes = {"n_train": len(f.train), "n_valid": len(f.valid), "n_test": len(f.test)}
        rounds.append({"fold": f.fold, "valid_fold": f.valid_fold, "valid": float(result.valid),
                       "test": float(result.test), "best": result.best, **sizes})
        heads += [{**h, "fold": f.fold} if f.fold is not None else h for h in result.heads]
        scores.append(result.test_scores)
        test_index.append(f.test)
        for (head, pooling), chosen in result.group_best.items():
            name = f"{head}-{pooling}"
            group = groups.setdefault(name, {"head": head, "pooling": pooling, "folds": []})
            group["folds"].append({"fold": f.fold, "valid_fold": f.valid_fold, "valid": float(chosen["valid"]),
                                   "test": float(chosen["test"]), "lr": chosen["lr"],
                                   "weight_decay": chosen["weight_decay"], "n_test": len(f.test)})
            group_scores.setdefault(name, []).append(result.group_scores[(head, pooling)])
    for group in groups.values():
        tests = [r["test"] for r in group["folds"]]
        group.update(valid=float(np.mean([r["valid"] for r in group["folds"]])), test=float(np.mean(tests)),
                     test_std=float(np.std(tests)))
    tests = [r["test"] for r in rounds]
    return FoldedResult(
        metric=result.metric, valid=float(np.mean([r["valid"] for r in rounds])), test=float(np.mean(tests)),
        test_std=float(np.std(tests)), rounds=rounds, groups=groups, heads=heads,
        test_scores=np.concatenate(scores), group_scores={k: np.concatenate(v) for k, v in group_scores.items()},
        test_index=np.concatenate(test_index),
    )
