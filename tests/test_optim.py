"""Optimisers: each one's schedule against an independent reference, and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from encoders.optim import build_optimization, optimizer_names
from encoders.optim.adamw import lr_factor
from encoders.optim.scaled_adam import eden_factor, named_groups


def test_both_optimisers_are_registered():
    assert {"adamw", "scaled_adam"} <= set(optimizer_names())


def test_adamw_schedule_is_linear_warmup_then_cosine():
    model = nn.Linear(3, 2)
    opt = build_optimization("adamw", model, lr=0.1, weight_decay=0.01, steps=10, warmup_steps=4)
    rates = []
    for _ in range(10):
        rates.append(opt.optimizer.param_groups[0]["lr"])
        opt.optimizer.step()
        opt.scheduler.step()
    expected = [0.1 * (s + 1) / 4 for s in range(4)] + [0.1 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 6))
                                                         for s in range(4, 10)]
    assert rates == pytest.approx(expected) and rates == pytest.approx([0.1 * lr_factor(s, 4, 10) for s in range(10)])
    (matrices, vectors) = opt.optimizer.param_groups  # weight decay on the weight matrix, not on the bias
    assert [p.ndim for p in matrices["params"]] == [2] and matrices["weight_decay"] == 0.01
    assert [p.ndim for p in vectors["params"]] == [1] and vectors["weight_decay"] == 0.0
    assert not opt.clips_gradients


def test_eden_equals_the_zipformer_packages_eden_at_epoch_step_over_steps_per_epoch():
    """Auden's batch-only Eden (Eden3) is icefall's Eden with the epoch counted as
    step / steps_per_epoch: checked against the package's own Eden."""
    from encoders.zipformer import zipformer_package

    z = zipformer_package()
    param = nn.Parameter(torch.zeros(2, 2))
    reference = z.Eden(torch.optim.SGD([param], lr=1.0), lr_batches=7500, lr_epochs=3.5, warmup_batches=500)
    for step in (0, 1, 250, 499, 500, 501, 7500, 35000, 200000, 700000):
        reference.step_batch(step)
        reference.step_epoch(step / 10000)
        assert eden_factor(step, 7500, 3.5, 10000, 500, 0.5) == pytest.approx(reference.get_last_lr()[0], rel=1e-12)


def test_scaled_adam_groups_by_module_lr_scale_and_steps():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)))
    model[1].lr_scale = 0.5
    model[1][1].lr_scale = 0.2
    groups = sorted((g["lr"], sorted(n for n, _ in g["named_params"])) for g in named_groups(model, 1.0))
    assert [names for _, names in groups] == [["1.1.bias", "1.1.weight"], ["1.0.bias", "1.0.weight"],
                                              ["0.bias", "0.weight"]]
    assert [rate for rate, _ in groups] == pytest.approx([0.1, 0.5, 1.0])
    opt = build_optimization("scaled_adam", model, lr=0.045, weight_decay=0.0, steps=1, warmup_steps=0)
    assert opt.clips_gradients
    before = model[0].weight.detach().clone()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.optimizer.step()
    opt.scheduler.step()
    assert not torch.equal(before, model[0].weight) and torch.isfinite(model[0].weight).all()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.045 * eden_factor(1, 7500, 3.5, 10000, 500, 0.5))
