"""Pre-training objectives, resolved lazily by name (one file per objective).

An objective is an ``nn.Module`` with

- class attributes ``needs`` (what it trains on: ``"tags"``, ``"captions"``, ``"labels"``,
  or several joined by ``+``) and ``VERSION`` (also a module-level constant, which the
  harness reads from the source without importing it);
- a classmethod ``from_supervision(encoder_dim, supervision, **options)`` returning the
  objective and its per-clip targets: named fields, each a tensor with one row per clip or
  a list of 1-D token tensors (see :class:`~encoders.objectives.supervision.Supervision`
  and :func:`encoders.trainer.collate_targets`);
- ``forward(batch, frames, lengths)``, taking the collated targets and the encoder output
  and returning a dict with ``"loss"`` (a scalar tensor) plus float metrics.

docs/adding-an-objective.md walks through adding one.

This module imports no torch, so that planning a study stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from encoders import resolve

if TYPE_CHECKING:
    from torch import nn

OBJECTIVES: dict[str, str] = {
    "mtc": "encoders.objectives.mtc:MTC",
    "par": "encoders.objectives.par:PAR",
    "captioning": "encoders.objectives.captioning:Captioning",
    "contrastive": "encoders.objectives.contrastive:Contrastive",
    "multitask": "encoders.objectives.multitask:MultiTask",
    "supervised": "encoders.objectives.supervised:Supervised",
}

OBJECTIVE_NEEDS: dict[str, str] = {
    "mtc": "tags",
    "par": "tags",
    "captioning": "captions",
    "contrastive": "captions",
    "multitask": "tags+captions",
    "supervised": "labels",
}
"""The ``needs`` of each objective, readable without importing it (a test checks they agree)."""


def build_objective(name: str, encoder_dim: int, **config: Any) -> nn.Module:
    """Build the objective registered as ``name`` on top of an encoder of width ``encoder_dim``."""
    return resolve(OBJECTIVES, name, "objective")(encoder_dim, **config)


def from_supervision(name: str, encoder_dim: int, supervision: Any, **options: Any) -> tuple[nn.Module, dict]:
    """The objective registered as ``name`` and its per-clip targets for ``supervision``."""
    return resolve(OBJECTIVES, name, "objective").from_supervision(encoder_dim, supervision, **options)


def objective_version(name: str) -> str:
    """The ``VERSION`` of objective ``name``."""
    return resolve(OBJECTIVES, name, "objective").VERSION


def objective_needs(name: str) -> str:
    """What objective ``name`` trains on: ``"tags"``, ``"captions"``, ``"labels"``, or several
    joined by ``+`` (``"tags+captions"``)."""
    if name not in OBJECTIVE_NEEDS:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVE_NEEDS))}")
    return OBJECTIVE_NEEDS[name]
