"""AdamW with a linear warmup and a cosine decay to zero: the harness's default optimiser.

Weight decay applies to matrices and convolution kernels only, not to biases and norm
gains. The learning rate rises linearly over ``warmup_steps`` to ``lr``, then follows a
cosine to zero at ``steps``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from encoders.optim import Optimization
from harness.registry import Component
from harness.schema import List, Num

COMPONENT = Component(
    kind="optimizer",
    target="build",
    version="1",
    doc="AdamW, linear warmup then cosine decay to zero (the default)",
    options={
        "betas": List(Num(min=0.0, max=1.0), default=[0.9, 0.999], min_len=2,
                      doc="Adam's moment decay rates"),
        "eps": Num(1e-8, min=0.0, doc="Adam's epsilon"),
    },
)


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Multiplier of the peak lr at (0-based) ``step``: linear warmup, then cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and conv kernels only, not on biases and norm gains."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def build(model: nn.Module, *, lr: float, weight_decay: float, steps: int, warmup_steps: int,
          betas: list[float] = (0.9, 0.999), eps: float = 1e-8) -> Optimization:
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas[:2]), eps=eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, steps))
    return Optimization(optimizer, scheduler)
