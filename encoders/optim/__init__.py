"""Optimisers and their learning-rate schedules, one file each, found by their declaration.

An optimiser is one file in this folder declaring ``COMPONENT = Component(kind="optimizer",
target="build", version=..., options={...})`` (:mod:`harness.registry`) and a function

    build(model, *, lr, weight_decay, steps, warmup_steps, **options) -> Optimization

returning the optimiser, its per-step scheduler and whether the optimiser clips gradients
itself (then the trainer's ``grad_clip`` is not applied). A study picks one with
``pretrain.optimizer: {name, options}``; the default is ``adamw``.

This module imports no torch, so that planning a study stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.registry import registry


@dataclass
class Optimization:
    """What the trainer steps: the optimiser, its scheduler (``step()`` once per optimiser
    step; both have ``state_dict``/``load_state_dict`` for exact resume), and whether the
    optimiser clips gradients itself."""

    optimizer: Any
    scheduler: Any
    clips_gradients: bool = False


def optimizer_names() -> list[str]:
    """The registered optimisers."""
    return registry("optimizer").names()


def build_optimization(name: str, model: Any, *, lr: float, weight_decay: float, steps: int,
                       warmup_steps: int, **options: Any) -> Optimization:
    """The optimiser registered as ``name`` over ``model``'s trainable parameters."""
    return registry("optimizer").get(name).load()(model, lr=lr, weight_decay=weight_decay, steps=steps,
                                                  warmup_steps=warmup_steps, **options)
