"""ScaledAdam with the Eden schedule: the optimiser the UTS authors train Zipformer with.

The recipe (AudenAI/Auden ``examples/uts/configs/train.yaml`` and ``scripts/pretrain.sh``):
``ScaledAdam`` (the ``zipformer`` package's, loaded without the package's tool chain by
:func:`encoders.zipformer.zipformer_package`) at ``lr`` 0.045 with ``clipping_scale`` 2.0,
and per-module learning rates (every module's ``lr_scale`` attribute multiplies the
rates of the parameters below it); the schedule is Auden's batch-only Eden (``Eden3``,
chosen by their trainer for an infinite dataset with ``lr_steps_per_epoch`` set):

    lr(b) = lr · ((b² + B₁²)(b² + B₂²) / (B₁² B₂²))^-¼ · w(b),   B₂ = lr_epochs · steps_per_epoch

with ``B₁ = lr_batches`` (7500), ``lr_epochs`` 3.5, ``steps_per_epoch`` 10000, and a warmup
``w(b)`` rising linearly from 0.5 to 1 over ``warmup_batches`` (500), 1 after. ScaledAdam
clips gradients itself, so the trainer's ``grad_clip`` is not applied; it has no weight
decay (``weight_decay`` is ignored; its parameter-scale limits play that part).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from encoders.optim import Optimization
from harness.registry import Component
from harness.schema import Num

COMPONENT = Component(
    kind="optimizer",
    target="build",
    version="1",
    doc="ScaledAdam + Eden (batch-only, Auden's Eden3): the UTS authors' Zipformer recipe",
    options={
        "clipping_scale": Num(2.0, min=0.0, doc="ScaledAdam's gradient clipping, relative to recent norms"),
        "lr_batches": Num(7500, min=1, doc="Eden: steps after which the rate decays markedly"),
        "lr_epochs": Num(3.5, min=0.0, doc="Eden: epochs after which the rate decays markedly"),
        "steps_per_epoch": Num(10000, integer=True, min=1, doc="Eden: steps that count as one epoch"),
        "warmup_batches": Num(500, min=0, doc="Eden: warmup steps, the rate rising from warmup_start"),
        "warmup_start": Num(0.5, min=0.0, max=1.0, doc="Eden: the warmup's starting factor"),
    },
)


def eden_factor(step: int, lr_batches: float, lr_epochs: float, steps_per_epoch: int, warmup_batches: float,
                warmup_start: float) -> float:
    """Eden's multiplier of the peak rate at ``step`` (the formula in the module docstring)."""
    b, b1, b2 = float(step), float(lr_batches), float(lr_epochs) * steps_per_epoch
    decay = ((b * b + b1 * b1) * (b * b + b2 * b2) / (b1 * b1 * b2 * b2)) ** -0.25 if b2 > 0 else (
        (b * b + b1 * b1) / (b1 * b1)) ** -0.5
    warmup = 1.0 if step >= warmup_batches else warmup_start + (1.0 - warmup_start) * step / warmup_batches
    return decay * warmup


def named_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Trainable parameters grouped by learning rate, with names (as ScaledAdam takes them):
    a parameter's rate is ``lr`` times the ``lr_scale`` of every module on its path."""
    scale = {name: float(getattr(m, "lr_scale")) for name, m in model.named_modules() if hasattr(m, "lr_scale")}
    groups: dict[float, list[tuple[str, nn.Parameter]]] = defaultdict(list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")[:-1]
        rate = lr * scale.get("", 1.0)
        for i in range(1, len(parts) + 1):
            rate *= scale.get(".".join(parts[:i]), 1.0)
        groups[rate].append((name, param))
    return [{"named_params": pairs, "lr": rate} for rate, pairs in groups.items()]


def build(model: nn.Module, *, lr: float, weight_decay: float, steps: int, warmup_steps: int,
          clipping_scale: float = 2.0, lr_batches: float = 7500, lr_epochs: float = 3.5,
          steps_per_epoch: int = 10000, warmup_batches: float = 500, warmup_start: float = 0.5) -> Optimization:
    from encoders.zipformer import zipformer_package

    del weight_decay, steps, warmup_steps  # ScaledAdam has no weight decay; Eden has its own warmup and no end
    optimizer = zipformer_package().ScaledAdam(named_groups(model, lr), lr=lr, clipping_scale=clipping_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: eden_factor(
        s, lr_batches, lr_epochs, steps_per_epoch, warmup_batches, warmup_start))
    return Optimization(optimizer, scheduler, clips_gradients=True)
