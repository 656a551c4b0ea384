"""The ``search:`` block of a study: its schema, the search space, and the paths a trial
sets. Pure data, no Optuna: the study schema reads it, and :mod:`harness.search` (which
sits on top of the study layer) runs the search.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.schema import Any_, Context, List, Map, Num, Obj, Str

SEARCH = Obj({
    "trials": Num(integer=True, min=1, doc="trials to complete (failed trials count)"),
    "parallel": Num(1, integer=True, min=1, doc="trials evaluated at once; their jobs share the scheduler"),
    "sampler": Str("tpe", choices=["tpe", "random"], doc="Optuna sampler"),
    "seed": Num(0, integer=True, min=0, doc="sampler seed"),
    "tasks": List(Str(pattern=r"[A-Za-z0-9_./-]+"), default=[], unique=True,
                  doc="probe tasks whose mean validation score is maximised (default: every classification "
                      "task of probes.tasks)"),
    "objective": Str(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
                     doc="score only the runs of this objective (its label or name); others are not run"),
    "space": Map(Any_(), doc="dotted path in the resolved study -> {low, high[, log][, step]} or a list of choices"),
}, default=None, doc="hyperparameter search with Optuna (harness/search.py)")

LIST_SETTINGS = {"probes.lrs", "probes.weight_decays", "probes.heads", "probes.poolings"}
"""Probe settings that are lists: a trial sets them to its one sampled value."""

ENDED = ("COMPLETE", "FAIL", "PRUNED")
"""Trial states that count toward ``trials`` (names of optuna.trial.TrialState)."""

_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


@dataclass(frozen=True)
class Param:
    """One searched setting: ``choices``, or a range ``[low, high]`` (``log``, ``step``)."""

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    @property
    def integer(self) -> bool:
        return self.choices is None and all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


# ------------------------------------------------------------------------- validation


def parse_space(space: dict[str, Any], ctx: Context, where: str = "search.space") -> list[Param]:
    """The ``space`` mapping as :class:`Param` objects; problems go to ``ctx``."""
    params = []
    if not space:
        ctx.error(where, "expected at least one setting to search")
    for path, spec in space.items():
        at = f"{where}.{path}"
        if not _parse_path(path):
            ctx.error(at, "expected a dotted path into the study, such as pretrain.lr or "
                          "pretrain.objectives[0].options.temperature")
            continue
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, dict):
            ctx.error(at, f"expected {{low, high}} (with log or step) or a list of choices, found {spec!r}")
            continue
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            ctx.error(at, f"unknown key(s) {sorted(unknown)}; expected low, high, log, step or choices")
            continue
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                ctx.error(at, f"expected a non-empty list of choices and nothing else, found {spec!r}")
                continue
            if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
                ctx.error(at, f"choices must be strings, numbers or booleans, found {choices!r}")
                continue
            params.append(Param(path, choices=tuple(choices)))
            continue
        low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
        numbers = [v for v in (low, high, step) if v is not None]
        if low is None or high is None or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
            ctx.error(at, f"expected numbers low and high (and step), found {spec!r}")
            continue
        if not isinstance(log, bool):
            ctx.error(at, f"log: expected true or false, found {log!r}")
            continue
        if low > high or (log and low <= 0) or (step is not None and (step <= 0 or log)):
            ctx.error(at, f"expected low <= high, low > 0 with log, and a step > 0 without log; found {spec!r}")
            continue
        params.append(Param(path, low=low, high=high, log=log, step=step))
    return params


def check_search(config: dict[str, Any], validate: Callable[[dict], list[str]], ctx: Context) -> None:
    """Check a study's resolved ``search`` block against the rest of it.

    ``validate(config)`` validates a whole config and returns its problems: every path
    must exist, and the study must stay valid at each end of every range and at every choice.
    """
    from harness import tasks as task_registry

    search = config["search"]
    params = parse_space(search["space"], ctx)
    base = without_search(config)
    for p in params:
        try:
            value = get_path(base, p.path)
        except KeyError as exc:
            ctx.error(f"search.space.{p.path}", str(exc.args[0]))
            continue
        if p.path in LIST_SETTINGS or not isinstance(value, (dict, list)):
            for extreme in p.extremes():
                trial = copy.deepcopy(base)
                set_path(trial, p.path, extreme)
                for problem in validate(trial):
                    ctx.error(f"search.space.{p.path}", f"the value {extreme!r} makes the study invalid: {problem}")
                    break
        else:
            ctx.error(f"search.space.{p.path}", f"expected a single setting, found a {type(value).__name__} there")
    kinds = {name: task_registry.load_task(name)["kind"] for name in config["probes"]["tasks"]}
    tasks = search["tasks"] or [t for t, kind in kinds.items() if kind in ("multiclass", "multilabel")]
    for i, name in enumerate(search["tasks"]):
        if name not in kinds:
            ctx.error(f"search.tasks[{i}]", f"not one of probes.tasks: {', '.join(config['probes']['tasks'])}")
        elif kinds[name] not in ("multiclass", "multilabel"):
            ctx.error(f"search.tasks[{i}]", "a search maximises a probe's validation score; "
                      f"{name!r} is a {kinds[name]} task without one")
    if not tasks:
        ctx.error("search.tasks", "no classification task in probes.tasks to score trials on")
    arms = {o.get("label") or o["name"] for o in config["pretrain"]["objectives"]}
    arms |= {o["name"] for o in config["pretrain"]["objectives"]}
    if search["objective"] is not None and search["objective"] not in arms:
        ctx.error("search.objective", f"no objective called {search['objective']!r}; objectives: {', '.join(sorted(arms))}")
    if search["parallel"] > search["trials"]:
        ctx.error("search.parallel", f"expected at most trials ({search['trials']}), found {search['parallel']}")


# ----------------------------------------------------------------------------- paths


def _parse_path(path: str) -> list[str | int] | None:
    """``a.b[0].c`` -> ``["a", "b", 0, "c"]``; None when malformed."""
    steps: list[str | int] = []
    for part in path.split("."):
        m = _STEP.fullmatch(part)
        if not m:
            return None
        steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return steps


def get_path(config: dict, path: str) -> Any:
    """The value at ``path``; KeyError (with a one-line message) when there is none.

    The last step may name a key that is not set yet inside a mapping of free-form
    options (``pretrain.objectives[0].options.temperature``): its value is then None.
    """
    steps = _parse_path(path)
    node: Any = config
    for i, step in enumerate(steps):
        at = _format(steps[: i + 1])
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise KeyError(f"{at}: no such item (the list has {len(node) if isinstance(node, list) else 0})")
            node = node[step]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, dict) and i == len(steps) - 1 and steps[i - 1] == "options":
            return None
        else:
            keys = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            raise KeyError(f"{at}: no such setting in the study; keys there: {keys}")
    return node


def set_path(config: dict, path: str, value: Any) -> None:
    """Set ``path`` (which :func:`get_path` accepts) to ``value``, in place."""
    get_path(config, path)
    steps = _parse_path(path)
    node: Any = config
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = [value] if path in LIST_SETTINGS else value


def _format(steps: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else (f".{s}" if i else s) for i, s in enumerate(steps))


def without_search(config: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in config.items() if k != "search"}
