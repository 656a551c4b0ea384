"""Display labels of runs and arms, built from grid coordinates in one place.

A leaf module: it imports nothing from the project, so the graph (``Node.label``,
``init_label``), the results collector and the report all name things the same way.
Every function reads a plain mapping of coordinates (a node's ``coords``, or a results
row as a dict); an absent, empty or NaN coordinate is left out.

* :func:`arm_label`: the arm several seeds share, e.g. ``"src/mtc K=32 [weak_caption] init=x"``
  (source, objective or its label, tag system, own captions, initialisation).
* :func:`run_label`: the arm and its seed, ``"src/mtc K=32 [weak_caption] init=x s0"``.
* :func:`init_label`: the arm a fine-tuned run starts from, as its ``init`` coordinate.
* :func:`objective_arm_label`: the report's objective arm, ``"mtc [weak_caption] init=x"``.
* :func:`objective_system_label`: an objective and its tag system, ``"mtc K=32"`` (the
  data-scaling figure's lines).
* :func:`node_label`: a job of any stage, for status lines and state files.
* :func:`series_label`: an arm without the coordinate a figure puts on its x-axis
  (``"mini/mtc"`` for the line through ``mini/mtc K=32`` and ``mini/mtc K=64``).
* :func:`task_label`, :func:`metric_label`, :func:`domain_label`, :func:`column_label`:
  the names of tasks, metrics, domains and table columns in every table, CSV header,
  figure axis and legend of the report.

The report names an arm by its ``arm`` column, that is by :func:`arm_label`, in every
table, CSV, figure and legend; a run (an arm and one seed) is the arm plus a ``seed``
column, never a second spelling.

Labels are for display and grouping only: the results table stores each coordinate in a
column of its own (and the arm in ``arm``), so nothing parses a label back.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["arm_label", "run_label", "with_seed", "init_label", "objective_arm_label", "objective_system_label",
           "node_label", "series_label", "task_label", "metric_label", "domain_label", "column_label",
           "COLUMN_LABELS", "METRIC_SHORT", "METRIC_NAMES", "BASELINE_ARM", "result_coords"]

NO_VALUE = "-"
"""The value of ``source`` / ``tag_system`` for runs without one (the random baseline)."""


def _given(value: Any) -> bool:
    """Whether a coordinate has a value: not None, not empty, not a missing cell (NaN, ``pd.NA``)."""
    if value is None:
        return False
    if isinstance(value, str):
        return value != ""
    try:
        return bool(value == value)  # NaN != NaN; pd.NA == pd.NA is pd.NA, whose truth value raises
    except TypeError:
        return False


def _named(value: Any) -> bool:
    """Whether a ``source`` / ``tag_system`` names something (``"-"``: none)."""
    return _given(value) and value != NO_VALUE


def _decorated(name: str, c: Mapping[str, Any], *, init: bool, data: bool = False) -> str:
    """``name`` with the tag system, the objective's own captions, (``init``) the
    initialisation and (``data``) the data-scaling subset size."""
    if _named(c.get("tag_system")):
        name += f" {c['tag_system']}"
    if _given(c.get("captions")):  # the objective's own captions (graph.captions_label), e.g. [weak_caption]
        name += f" [{c['captions']}]"
    if init and _given(c.get("init")):  # fine-tuned from another run or a checkpoint
        name += f" init={c['init']}"
    if data and _given(c.get("data_size")):  # a nested data-scaling subset: N pre-training clips
        name += f" N={_integer(c['data_size'])}"
    return name


def _integer(value: Any) -> str:
    try:
        return str(int(value)) if float(value) == int(value) else str(value)
    except (TypeError, ValueError):
        return str(value)


def arm_label(c: Mapping[str, Any]) -> str:
    """The arm of a run, shared by its seeds: ``source/objective tag-system [captions] init=... N=...``.

    The objective is named by its entry's label (coordinate ``arm``) when it has one; the
    source is left out for runs without one (``"-"``: the random baseline); ``N=`` gives
    the data-scaling subset (pre-training clips) of a run that has one, so that two data
    sizes are two arms.
    """
    name = c.get("arm") if _given(c.get("arm")) else c.get("objective", "?")
    label = _decorated(str(name), c, init=True, data=True)
    if _named(c.get("source")):
        label = f"{c['source']}/{label}"
    return label


def with_seed(arm: str, seed: Any) -> str:
    """A run label from its arm and pre-training seed: ``"<arm> s<seed>"``."""
    return f"{arm} s{seed}"


def run_label(c: Mapping[str, Any]) -> str:
    """The label of one pre-training run: its :func:`arm_label` and seed, ``"mtc K=32 s0"``."""
    return with_seed(arm_label(c), c.get("seed", 0))


def init_label(c: Mapping[str, Any], source: str) -> str:
    """The ``init`` coordinate of a run fine-tuned from the run with coordinates ``c``: that
    run's objective (or label), tag system and captions, and its source when it is not
    ``source`` (the fine-tuned run's own)."""
    name = c.get("arm") if _given(c.get("arm")) else c["objective"]
    label = _decorated(str(name), c, init=False)
    if c.get("source") != source:
        label = f"{c['source']}/{label}"
    return label


def objective_arm_label(c: Mapping[str, Any]) -> str:
    """An objective with the captions it trained on and its initialisation, when the study
    varies them: the report's per-objective arm (tag systems and sources averaged over)."""
    name = str(c.get("objective"))
    captions, init = c.get("captions"), c.get("init")
    if isinstance(captions, str) and captions:
        name += f" [{captions}]"
    if isinstance(init, str) and init:
        name += f" init={init}"
    return name


def objective_system_label(c: Mapping[str, Any]) -> str:
    """An objective with its tag system, ``"mtc K=32"``: a line of the data-scaling figure
    (sources, captions and seeds averaged over)."""
    name = str(c.get("objective"))
    return f"{name} {c['tag_system']}" if _named(c.get("tag_system")) else name


def node_label(c: Mapping[str, Any], stage: str) -> str:
    """A job's label for status lines: source, objective (or its label), tag system, captions,
    init, data size, seed and task where the job has them (``"mini mtc K=32 seed=0 mini/env_event"``); a dataset
    job by the source or task it is read for and its reader (``"esc50 (esc50)"``); the stage
    name when it has none."""
    if stage == "dataset" and _given(c.get("for")):
        kind = c.get("dataset")
        return str(c["for"]) + (f" ({kind})" if _given(kind) and kind != c["for"] else "")
    objective = "arm" if _given(c.get("arm")) else "objective"  # an objective's label names its arm
    parts = [str(c[k]) for k in ("source", objective, "tag_system") if _named(c.get(k))]
    if _given(c.get("captions")):
        parts.append(f"[{c['captions']}]")
    if _given(c.get("init")):
        parts.append(f"init={c['init']}")
    if _given(c.get("data_size")):  # a nested data-scaling subset: N pre-training clips
        parts.append(f"N={_integer(c['data_size'])}")
    if "seed" in c:
        parts.append(f"seed={c['seed']}")
    if "task" in c:
        parts.append(str(c["task"]))
    return " ".join(parts) or stage


# --------------------------------------------------------------------------- report names

BASELINE_ARM = "random"
"""The objective, and the arm name, of the randomly initialised encoder."""

METRIC_SHORT = {"accuracy": "acc", "map": "mAP"}
"""Short metric names, for column headers."""

METRIC_NAMES = {"accuracy": "accuracy", "map": "mAP"}
"""Metric names for axis labels and captions."""

COLUMN_LABELS = {
    "arm": "arm", "seed": "seed", "seeds": "seeds", "domain": "domain", "task": "task", "metric": "metric",
    "objective": "objective", "tag_system_size": "K", "value": "value", "mean": "mean", "ci": "95% half-width",
    "delta": "Δ vs random", "ci_low": "95% low", "ci_high": "95% high", "interval": "95% interval",
    "p_value": "p", "p_holm": "p (Holm)", "n_test": "n test", "chance": "chance", "n_boot": "resamples",
    "value_a": "arm value", "value_b": "random value",
}
"""Display names of table columns, keyed by the column's name in the CSV files. Every
table uses these keys as its CSV header and these names in Markdown and LaTeX, so a
column is called the same in every format (``arm`` is ``arm`` everywhere)."""


def column_label(key: str) -> str:
    """The display name of a table column (:data:`COLUMN_LABELS`), else the key itself."""
    return COLUMN_LABELS.get(key, key)


def metric_label(metric: Any, short: bool = False) -> str:
    """A metric's name: ``"accuracy"`` / ``"mAP"`` (``short``: ``"acc"``); others as they are."""
    return (METRIC_SHORT if short else METRIC_NAMES).get(str(metric).lower(), str(metric))


def domain_label(domain: Any) -> str:
    """A domain's name in headers and panel titles: ``"speech"``, ``"music"``, ``"environment"``."""
    return str(domain)


def task_label(task: Any, domain: Any = None) -> str:
    """A task's short name: the last ``/`` component of its id, without a leading domain
    word when ``domain`` is given and the table or figure groups tasks under it
    (``mini/speech_speaker`` under speech -> ``speaker``; ``mini/env_event`` under
    environment -> ``event``)."""
    leaf = str(task).rsplit("/", 1)[-1]
    if domain is not None and "_" in leaf:
        head, rest = leaf.split("_", 1)
        if rest and len(head) >= 3 and str(domain).lower().startswith(head.lower()):
            return rest
    return leaf


RESULT_COLUMNS = {"objective_label": "arm"}
"""Results columns that hold a graph coordinate under another name (``harness.collect``):
the results' ``arm`` is the arm label, the coordinate ``arm`` (an objective entry's
label) is stored as ``objective_label``."""


def result_coords(row: Mapping[str, Any]) -> dict[str, Any]:
    """The graph coordinates of a results row (a dict): ``objective_label`` back to ``arm``,
    the results' own ``arm`` (a label, not a coordinate) left out."""
    out = {k: v for k, v in row.items() if k != "arm"}
    for column, coordinate in RESULT_COLUMNS.items():
        if column in out:
            out[coordinate] = out.pop(column)
    return out


def series_label(c: Mapping[str, Any], without: tuple[str, ...] = ("tag_system",)) -> str:
    """The :func:`arm_label` of ``c`` without the coordinates in ``without``: a line of a
    figure whose x-axis is that coordinate (``"mini/mtc"`` through ``mini/mtc K=32`` and
    ``mini/mtc K=64``; ``without=("data_size",)`` for the data-scaling figure). ``c`` holds
    graph coordinates; for a results row, pass :func:`result_coords` of it."""
    return arm_label({k: v for k, v in c.items() if k not in without})
