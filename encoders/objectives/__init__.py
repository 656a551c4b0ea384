"""Pre-training objectives: one file per objective, found by its declaration.

An objective is one file in this folder declaring ``COMPONENT = Component(kind="objective",
target=..., version=..., needs=..., options={...})`` (:mod:`harness.registry`) and
implementing an ``nn.Module`` with

- a classmethod ``from_supervision(encoder_dim, supervision, **options)`` returning the
  objective and its per-clip targets: named fields, each a tensor with one row per clip or
  a list of 1-D token tensors (see :class:`~encoders.objectives.supervision.Supervision`
  and :func:`encoders.trainer.collate_targets`);
- ``forward(batch, frames, lengths)``, taking the collated targets and the encoder output
  and returning a dict with ``"loss"`` (a scalar tensor: the loss of that batch as a whole)
  plus float metrics.

A step's batch may be split into micro-batches and spread over DDP ranks; the trainer
(:func:`encoders.trainer.accumulate_gradients`) gives every objective the whole batch's
loss and gradients from its declared shape of loss:

- by default the loss is a **mean over clips**: micro-batches are weighted by their clips;
- a loss normalised by another count (tokens) defines ``normalizers(batch)`` (the counts of
  its terms, from the targets alone: ``{"tokens": n}``) and accepts
  ``forward(..., totals=None)``: with the whole batch's counts given, it returns its share
  of the whole batch's loss (PAR, captioning, MTC, multi-task);
- a loss over the whole batch at once (contrastive) defines ``embed(batch, frames,
  lengths)`` (per-clip rows) and ``loss(embeddings)``, which the trainer calls on the whole
  batch's gathered embeddings.

Per-clip random choices read ``batch["draw"]`` (one U[0, 1) number per clip, fixed for the
step whatever the layout). An optional ``after_optimizer_step()`` runs after every step.
:mod:`encoders.objectives.losses` holds the losses as functions.

``needs`` says what it trains on: ``"tags"``, ``"captions"``, ``"labels"``, or several
joined by ``+``. docs/adding-an-objective.md walks through adding one.

This module imports no torch, so that planning a study stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.registry import registry

if TYPE_CHECKING:
    from torch import nn


def objective_names() -> list[str]:
    """The registered objectives."""
    return registry("objective").names()


def objective_class(name: str) -> Any:
    """The class implementing objective ``name`` (imports its module)."""
    return registry("objective").get(name).load()


def build_objective(name: str, encoder_dim: int, **config: Any) -> nn.Module:
    """Build the objective registered as ``name`` on top of an encoder of width ``encoder_dim``."""
    return objective_class(name)(encoder_dim, **config)


def from_supervision(name: str, encoder_dim: int, supervision: Any, **options: Any) -> tuple[nn.Module, dict]:
    """The objective registered as ``name`` and its per-clip targets for ``supervision``."""
    return objective_class(name).from_supervision(encoder_dim, supervision, **options)


def objective_version(name: str) -> str:
    """The declared version of objective ``name``."""
    return registry("objective").get(name).version


def objective_needs(name: str) -> str:
    """What objective ``name`` trains on: ``"tags"``, ``"captions"``, ``"labels"``, or several
    joined by ``+`` (``"tags+captions"``)."""
    return registry("objective").get(name).needs
