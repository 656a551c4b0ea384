"""Hyperparameter search: a study's ``search:`` block, run with Optuna.

    search:
      trials: 12                       # trials to complete
      parallel: 2                      # trials evaluated at once (their jobs run side by side)
      sampler: tpe                     # or random
      seed: 0
      tasks: [mini/env_event]          # maximise the mean validation score on these probe tasks
      space:                           # dotted paths into the resolved study
        pretrain.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        pretrain.objectives[0].options.temperature: {low: 0.03, high: 0.3}
        probes.epochs: {low: 20, high: 200, step: 20}
        probes.poolings: [mean, attention]

A trial is the study with the trial's values set at those paths. Its pre-training,
embedding and probe nodes go through the same scheduler as any run (local processes, or
Slurm jobs with ``--executor slurm``), so a trial is a set of jobs, trials that share work
share it through the content-addressed store (a probe-only search extracts embeddings
once), and ``parallel`` trials run side by side. The trial's value is the mean validation
score of the chosen probe tasks over the runs of the study (of one arm with
``objective:``); test scores are never looked at.

The Optuna study lives in ``<out>/search/journal.log`` (``JournalStorage`` with a file
backend, safe on shared filesystems). A run that dies leaves its trials RUNNING there;
the next ``harness run`` evaluates them again (their finished jobs are in the store) and
goes on to ``trials``. Then the study runs once with the best values: its results carry
them (column ``search``), ``<out>/search/best.json`` and ``trials.csv`` record the search,
and the report has a section on it.

Paths point into ``<out>/study.resolved.json``. A list-valued probe setting (``probes.lrs``,
``weight_decays``, ``heads``, ``poolings``) takes a single sampled value as a one-item list.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.schema import Context

from harness.search_schema import (  # noqa: F401  (the schema, re-exported)
    ENDED, LIST_SETTINGS, SEARCH, Param, check_search, get_path, parse_space, set_path, without_search,
)


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What a search left: the best trial's values and score, and every trial."""

    params: dict[str, Any]
    value: float
    trial: int
    n_complete: int
    n_failed: int

    def record(self) -> dict[str, Any]:
        return {"params": self.params, "value": self.value, "trial": self.trial,
                "complete": self.n_complete, "failed": self.n_failed}


def search_dir(layout) -> Path:
    return Path(layout.out) / "search"


def optuna_name(study) -> str:
    """The Optuna study of this search: a changed search block or study starts a new one."""
    from harness.store import digest

    return f"{study.name}-{digest(study.config)[:12]}"


def _storage(layout):
    from harness.slurm import journal_storage

    folder = search_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    return journal_storage(folder / "journal.log")


def trial_config(study, params: dict[str, Any]) -> dict[str, Any]:
    """The study's resolved config with a trial's values set, validated again."""
    from harness.study import revalidate

    config = without_search(study.config)
    for path, value in params.items():
        set_path(config, path, value)
    return revalidate(config, study.path)


def trial_graph(config: dict[str, Any], search: dict[str, Any]):
    """The nodes a trial needs: probes of the search tasks (of one arm) and what they read."""
    from harness.graph import Graph, expand

    full = expand(config)
    tasks = set(search["tasks"] or config["probes"]["tasks"])
    arm = search["objective"]
    graph = Graph()
    for node in full:
        c = node.coords
        scored = (node.stage == "probe" and c.get("task") in tasks
                  and node.config["task"]["kind"] in ("multiclass", "multilabel")
                  and c.get("objective") not in config["pretrain"]["baselines"]
                  and not c.get("external")  # an external arm has nothing the search could tune
                  and (arm is None or arm in (c.get("arm"), c.get("objective"))))
        if scored:
            graph.add(node)
    return graph


def trial_value(graph, layout) -> float | None:
    """Mean validation score over a trial's probe nodes; None when any of them is missing."""
    values = []
    for node in graph:
        if node.stage == "probe":
            record = layout.store_for("probe").record("probe", node.key)
            if record is None:
                return None
            values.append(record["outputs"]["valid"])
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def run_search(study, layout, run: Callable, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Outcome:
    """Run (or resume) the study's search; ``run(graph)`` runs a graph's jobs and returns
    the dispatcher's summary. Returns the best trial."""
    import optuna
    from optuna.trial import TrialState

    search = study.config["search"]
    ctx = Context(base_dir=study.path.parent)
    params = {p.path: p for p in parse_space(search["space"], ctx)}
    distributions = {path: p.distribution() for path, p in params.items()}
    sampler = (optuna.samplers.RandomSampler(seed=search["seed"]) if search["sampler"] == "random"
               else optuna.samplers.TPESampler(seed=search["seed"]))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(study_name=optuna_name(study), storage=_storage(layout), direction="maximize",
                                 sampler=sampler, load_if_exists=True)
    from harness.graph import Graph

    ended = tuple(TrialState[name] for name in ENDED)
    stale = [t for t in ostudy.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if stale:
        log(f"search: {len(stale)} trial(s) interrupted earlier are evaluated again")
    while True:
        finished = sum(t.state in ended for t in ostudy.get_trials(deepcopy=False))
        if finished >= search["trials"]:
            break
        batch: list[tuple[int, dict[str, Any]]] = [(t.number, t.params) for t in stale[: search["parallel"]]]
        stale = stale[search["parallel"]:]
        while len(batch) < search["parallel"] and finished + len(batch) < search["trials"]:
            trial = ostudy.ask(distributions)
            batch.append((trial.number, trial.params))
        graphs: dict[int, Any] = {}
        union = Graph()
        for number, values in batch:
            try:
                graphs[number] = trial_graph(trial_config(study, values), search)
            except HarnessError as exc:  # values the study cannot take: the trial fails, the search goes on
                log(f"search: trial {number} {_show(values)}: invalid: {exc.problems[0]}")
                ostudy.tell(number, state=TrialState.FAIL)
                continue
            for node in graphs[number]:
                union.add(node)
        if len(union):
            todo = sum(not layout.is_done(node) for node in union)
            log(f"search: trials {', '.join(str(n) for n in graphs)} of {search['trials']}: {len(union)} jobs, "
                f"{todo} to run")
            run(union)
        for number, values in batch:
            if number not in graphs:
                continue
            value = trial_value(graphs[number], layout)
            if value is None:
                log(f"search: trial {number} {_show(values)}: failed (see the failed jobs above)")
                ostudy.tell(number, state=TrialState.FAIL)
            else:
                log(f"search: trial {number} {_show(values)}: {value:.4f}")
                ostudy.tell(number, value)
    trials = ostudy.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise HarnessError(f"search: all {len(trials)} trials failed; see {layout.log_dir} and `harness status`")
    best = max(complete, key=lambda t: (t.value, -t.number))
    outcome = Outcome(params=dict(best.params), value=float(best.value), trial=best.number,
                      n_complete=len(complete), n_failed=sum(t.state == TrialState.FAIL for t in trials))
    _write_records(ostudy, study, layout, outcome)
    log(f"search: best trial {best.number}: {best.value:.4f} with {_show(best.params)}")
    return outcome


def _show(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _write_records(ostudy, study, layout, outcome: Outcome) -> None:
    from harness.store import atomic_write_json, atomic_write_text

    folder = search_dir(layout)
    frame = ostudy.trials_dataframe(attrs=("number", "value", "state", "params", "datetime_start", "duration"))
    atomic_write_text(folder / "trials.csv", frame.to_csv(index=False))
    atomic_write_json(folder / "best.json", {"study": optuna_name(study), "search": study.config["search"],
                                            **outcome.record()})


def finished(study, layout) -> Outcome | None:
    """The recorded outcome of this study's search, if it has finished."""
    path = search_dir(layout) / "best.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("study") != optuna_name(study):
        return None
    return Outcome(params=record["params"], value=record["value"], trial=record["trial"],
                   n_complete=record["complete"], n_failed=record["failed"])


def progress(study, layout) -> tuple[int, int] | None:
    """(trials ended, trials asked for) of this study's search, from its journal."""
    if not (search_dir(layout) / "journal.log").is_file():
        return None
    import optuna

    try:
        ostudy = optuna.load_study(study_name=optuna_name(study), storage=_storage(layout))
    except KeyError:
        return None
    ended = sum(t.state.name in ENDED for t in ostudy.get_trials(deepcopy=False))
    return ended, study.config["search"]["trials"]


__all__ = ["SEARCH", "Param", "Outcome", "parse_space", "check_search", "get_path", "set_path", "trial_config",
           "trial_graph", "trial_value", "run_search", "finished", "progress", "LIST_SETTINGS"]
