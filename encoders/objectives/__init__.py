"""Pre-training objectives, resolved lazily by name (one file per objective).

An objective is an ``nn.Module`` with class attributes ``needs`` (one of ``"tags"``,
``"captions"``, ``"labels"``, ``"none"``: the targets it trains on) and ``VERSION`` (also a
module-level constant, which the harness reads from the source without importing it). Its
``forward(batch, frames, lengths)`` takes the batch dict (holding at least ``"targets"``)
and the encoder output, and returns a dict with ``"loss"`` (a scalar tensor) plus float
metrics.

This module imports no torch, so that planning a study stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from encoders import resolve

if TYPE_CHECKING:
    from torch import nn

OBJECTIVES: dict[str, str] = {
    "mtc": "encoders.objectives.mtc:MTC",
}

OBJECTIVE_NEEDS: dict[str, str] = {
    "mtc": "tags",
}
"""The ``needs`` of each objective, readable without importing it (a test checks they agree)."""


def build_objective(name: str, encoder_dim: int, **config: Any) -> nn.Module:
    """Build the objective registered as ``name`` on top of an encoder of width ``encoder_dim``."""
    return resolve(OBJECTIVES, name, "objective")(encoder_dim, **config)


def objective_version(name: str) -> str:
    """The ``VERSION`` of objective ``name``."""
    return resolve(OBJECTIVES, name, "objective").VERSION


def objective_needs(name: str) -> str:
    """What objective ``name`` trains on: ``"tags"``, ``"captions"``, ``"labels"`` or ``"none"``."""
    if name not in OBJECTIVE_NEEDS:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVE_NEEDS))}")
    return OBJECTIVE_NEEDS[name]
