"""Published numbers (``results/reference/``) and how the paper's names map onto this harness.

The project keeps its own copy of the numbers, written as facts with their citation
(``results/reference/uts_linear_probe.csv``; see ``results/reference/README.md`` for the
source and its caveat). :func:`paper_numbers` reads that copy from the installed package
— never ``../shared`` — or a file given by path in the same format.

The two mappings below are the only place that knows the paper's names; change them when
the paper suite's task names are fixed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["PAPER_TASKS", "PAPER_MODELS", "PAPER_METRICS", "REFERENCE_FILE", "paper_numbers",
           "paper_task_for", "paper_model_for", "arm_supervision"]

REFERENCE_FILE = "uts_linear_probe.csv"
"""The default reference file, inside the ``results/reference/`` package data."""

PAPER_TASKS: dict[str, tuple[str, str]] = {
    # paper task name: (harness task id, domain)
    "VoxCeleb2": ("voxceleb2", "speech"),
    "CREMA-D": ("cremad", "speech"),
    "MTAT": ("mtat", "music"),
    "NSynth": ("nsynth", "music"),
    "FSD50K": ("fsd50k", "environment"),
    "VGGSound": ("vggsound", "environment"),
}
"""The paper's task name -> (this harness's task id, domain). A harness task matches an id
when the last ``/``-separated component of its name equals it (``paper/fsd50k``)."""

PAPER_MODELS: dict[str, dict[str, Any]] = {
    # paper model: the harness objectives it corresponds to, and its supervision
    # (None: any; "audioset": AudioSet labels; "uts": a tag system built from captions).
    "MTC-AudioSet": {"objectives": ("mtc", "supervised"), "supervision": "audioset"},
    "MTC-UTS": {"objectives": ("mtc",), "supervision": "uts"},
    "PAR-UTS": {"objectives": ("par",), "supervision": "uts"},
    # AR-UTS decodes the tag sequence autoregressively; no harness objective is that yet
    # (captioning decodes captions, PAR is parallel), so it matches no arm.
    "AR-UTS": {"objectives": (), "supervision": "uts"},
    "Contrastive": {"objectives": ("contrastive",), "supervision": None},
    "Multi-task": {"objectives": ("multitask",), "supervision": None},
}
"""The paper's model name -> ``{"objectives": (...), "supervision": ...}``; the first model
(in this order) whose objectives hold an arm's objective and whose supervision matches the
arm's (see :func:`arm_supervision`) is the arm's paper model."""

PAPER_METRICS: dict[str, str] = {"accuracy": "accuracy", "mAP": "map"}
"""The paper's metric name -> the name in the results table (``probes.metrics.METRICS``)."""

_SCALES = {"fraction": 1.0, "percent": 100.0}


def paper_numbers(path: str | Path | None = None):
    """The published numbers as a frame, on the results table's 0–1 scale.

    Columns: ``model, pooling, paper_task, task, domain, metric, value, published, scale,
    source``. ``value`` is ``published`` divided by 100 where ``scale`` is ``percent``;
    ``task``/``domain`` come from :data:`PAPER_TASKS` (None for an unknown task) and
    ``metric`` from :data:`PAPER_METRICS`. Every row must name its source.

    Args:
        path: a CSV in the format of ``results/reference/uts_linear_probe.csv``; default:
            that file, read from the installed package.
    """
    import io

    import pandas as pd

    if path is None:
        from importlib.resources import files

        text = (files("results") / "reference" / REFERENCE_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    raw = pd.read_csv(io.StringIO(text), dtype={"value": "float64"}, keep_default_na=False)
    missing = {"model", "pooling", "task", "metric", "value", "scale", "source"} - set(raw.columns)
    if missing:
        raise ValueError(f"reference file lacks columns {sorted(missing)}")
    bad_scale = sorted(set(raw["scale"]) - set(_SCALES))
    if bad_scale:
        raise ValueError(f"unknown scale(s) {bad_scale}; expected one of {sorted(_SCALES)}")
    if (raw["source"].str.strip() == "").any():
        raise ValueError("every published number needs its source")
    out = pd.DataFrame({
        "model": raw["model"], "pooling": raw["pooling"], "paper_task": raw["task"],
        "task": raw["task"].map(lambda t: PAPER_TASKS.get(t, (None, None))[0]),
        "domain": raw["task"].map(lambda t: PAPER_TASKS.get(t, (None, None))[1]),
        "metric": raw["metric"].map(lambda m: PAPER_METRICS.get(m, str(m).lower())),
        "value": raw["value"] / raw["scale"].map(_SCALES),
        "published": raw["value"], "scale": raw["scale"], "source": raw["source"],
    })
    return out


def paper_task_for(task: str) -> str | None:
    """The paper's name of harness task ``task`` (matched on its last path component), or None."""
    leaf = str(task).rsplit("/", 1)[-1].lower()
    for paper_task, (task_id, _domain) in PAPER_TASKS.items():
        if task_id == leaf:
            return paper_task
    return None


def _present(value: Any) -> bool:
    return value is not None and value not in ("", "-") and not (isinstance(value, float) and math.isnan(value))


def arm_supervision(info: Mapping[str, Any]) -> str | None:
    """The supervision of an arm from its grid coordinates (``source``, ``tag_system``):

    ``"audioset"`` when the source or the tag system names AudioSet, ``"uts"`` when the arm
    has another tag system, else None (captions, class labels, or no pre-training).
    """
    source, tags = info.get("source"), info.get("tag_system")
    if any(_present(v) and "audioset" in str(v).lower() for v in (source, tags)):
        return "audioset"
    return "uts" if _present(tags) else None


def paper_model_for(info: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """The paper model an arm stands for (by objective and supervision), or None."""
    models = PAPER_MODELS if models is None else models
    objective = info.get("objective")
    supervision = arm_supervision(info)
    for model, rule in models.items():
        if objective in rule["objectives"] and rule.get("supervision") in (None, supervision):
            return model
    return None
