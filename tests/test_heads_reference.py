"""The probe sweep's fast path (batched heads, custom autograd, torch's private fused Adam)
against its plain reference path (one ``nn.Module`` per head in an ``nn.ModuleDict``,
``torch.optim.Adam``), and the fast path's fallback to the plain one (probes/heads.py).

Tolerance. In fp32 the two paths do the same arithmetic in different orders: one
``[H*C, D] x [D, B]`` product against one ``nn.Linear`` per head, a hand-written softmax
cross-entropy backward against autograd's, torch's fused Adam kernel against its
single-tensor Adam. Each step therefore differs by a few float32 ulps (eps = 1.2e-7); over
the 32 steps here the trained weights and scores differ by at most ~1e-6 (measured; ~3e-6
after 80 steps), for weights of order 1 and scores in [0, 1]. ``rtol=1e-4, atol=1e-5``
leaves a margin of ~20x over that, and stays orders of magnitude below what a real
discrepancy makes (neighbouring heads here differ by 6e-2 or more): a
neighbouring grid point (another weight decay), a missed decay, AdamW's decoupled decay
for Adam's L2, a different initial draw or minibatch order each move the weights by 1e-3 or
more; ``_assert_heads_are_distinguishable`` checks that the tolerance can tell grid points
apart, so that passing means something.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from torch import nn

from probes import heads as heads_module
from probes.heads import (
    HeadGroup,
    PlainHead,
    _make_plan,
    _plain_key,
    _scores_fast,
    _scores_plain,
    _select,
    _train_fast,
    _train_plain,
    plain_optimizer,
    probe_sweep,
    sweep_path,
)
from probes.metrics import metric_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL, ATOL = 1e-4, 1e-5
GRID = dict(lrs=(1e-2, 1e-1), weight_decays=(0.0, 1e-1), heads=("linear", "mlp"), poolings=("mean", "max", "attention"))
SETTINGS = dict(epochs=8, batch_size=64, seed=1, mlp_hidden=16, attention_heads=4)  # 240 items: 32 steps


def _splits(kind: str, sizes=(240, 120, 120), dim: int = 16, n_classes: int = 4):
    """Items of 3-8 fp16 frames: around a class center (multiclass), or around the sum of
    their classes' directions (multilabel, ~30% of the classes per item)."""
    rng = np.random.default_rng(0 if kind == "multiclass" else 1)
    centers = 0.6 * rng.standard_normal((n_classes, dim))
    splits = []
    for n in sizes:
        if kind == "multiclass":
            labels = rng.integers(0, n_classes, n)
            means = centers[labels]
        else:
            labels = (rng.random((n, n_classes)) < 0.3).astype(np.int64)
            means = labels @ centers
        frames = [(m + 2.0 * rng.standard_normal((int(rng.integers(3, 9)), dim))).astype(np.float16) for m in means]
        splits.append((frames, labels))
    return splits


def _plan(kind: str, **overrides):
    settings = {**GRID, **SETTINGS, "device": "cpu", "progress": False, "precision": "fp32", **overrides}
    return _make_plan(*_splits(kind), kind == "multilabel", **settings)


def _assert_heads_are_distinguishable(modules: nn.ModuleDict, plan) -> None:
    """Trained heads of neighbouring grid points (same lr, other weight decay) differ by far
    more than the tolerance: a mix-up of settings could not pass for rounding."""
    for head, pooling in plan.groups:
        for h, (lr, wd) in enumerate(plan.grid):
            other = plan.grid.index((lr, 0.0 if wd else 0.1))
            a = modules[_plain_key(head, pooling, h)].state_dict()
            b = modules[_plain_key(head, pooling, other)].state_dict()
            gap = max(float(((a[k] - b[k]).abs() - RTOL * b[k].abs()).max()) for k in a if k.endswith("weight"))
            assert gap > 100 * ATOL, f"{head}/{pooling}: weight decay {wd} and its neighbour end too close ({gap:.1e})"


# --------------------------------------------------------------------- plain path


def test_plain_heads_start_from_the_fast_heads_weights_and_take_torch_adam() -> None:
    plan, _ = _plan("multiclass")
    groups = {(head, pooling): HeadGroup(head, pooling, len(plan.grid), plan.dim, plan.n_classes, seed=plan.seed,
                                         mlp_hidden=plan.mlp_hidden, attention_heads=plan.attention_heads)
              for head, pooling in plan.groups}
    for (head, pooling), group in groups.items():
        for h in range(len(plan.grid)):
            plain = PlainHead(head, pooling, plan.dim, plan.n_classes, seed=plan.seed, mlp_hidden=plan.mlp_hidden,
                              attention_heads=plan.attention_heads)
            mine, theirs = group.head_state(h), plain.state_dict()
            assert mine.keys() == theirs.keys()
            for name in mine:  # the same draw, bit for bit
                assert torch.equal(mine[name], theirs[name]), (head, pooling, name)
        assert isinstance(plain.head, nn.Linear if head == "linear" else heads_module.PlainMLP)
    # Another seed draws other weights: the equality above is not vacuous.
    other = PlainHead("linear", "mean", plan.dim, plan.n_classes, seed=plan.seed + 1, mlp_hidden=plan.mlp_hidden,
                      attention_heads=plan.attention_heads)
    assert not torch.equal(other.head.weight, groups["linear", "mean"].head_state(0)["head.weight"])

    # One torch.optim.Adam: per head, its weights at (lr, wd), the rest (biases, queries) at (lr, 0).
    modules = nn.ModuleDict({"a": PlainHead("mlp", "attention", 8, 3, seed=0, mlp_hidden=4, attention_heads=2),
                             "b": PlainHead("linear", "mean", 8, 3, seed=0, mlp_hidden=4, attention_heads=2)})
    optimizer = plain_optimizer(modules, [(1e-2, 0.1), (1e-1, 0.3)])
    assert type(optimizer) is torch.optim.Adam
    names = {id(p): f"{key}.{n}" for key, m in modules.items() for n, p in m.named_parameters()}
    settings = [(g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in optimizer.param_groups]
    assert settings == [
        (1e-2, 0.1, ["a.head.hidden.weight", "a.head.out.weight"]),
        (1e-2, 0.0, ["a.head.hidden.bias", "a.head.out.bias", "a.pool.query"]),
        (1e-1, 0.3, ["b.head.weight"]),
        (1e-1, 0.0, ["b.head.bias"]),
    ]


# -------------------------------------------------------------- fast == plain


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_fast_path_equals_plain_path(kind: str) -> None:
    """Every head of a 24-head sweep (2 lrs x 2 weight decays x linear, mlp x mean, max,
    attention pooling) ends with the same weights and scores on both paths, and the sweep
    selects the same heads with the same metrics."""
    plan, labels = _plan(kind)
    groups = _train_fast(plan)
    modules = _train_plain(plan)
    assert isinstance(modules, nn.ModuleDict) and len(modules) == 24
    assert all(type(m) is PlainHead for m in modules.values())

    start = PlainHead("linear", "mean", plan.dim, plan.n_classes, seed=plan.seed, mlp_hidden=plan.mlp_hidden,
                      attention_heads=plan.attention_heads).head.weight
    moved = (modules[_plain_key("linear", "mean", 3)].head.weight - start).abs().max()
    assert moved > 1e-2, "the heads must train, or equal initial weights would pass"
    for (head, pooling), group in groups.items():
        for h in range(len(plan.grid)):
            fast, plain = group.head_state(h), modules[_plain_key(head, pooling, h)].state_dict()
            assert fast.keys() == plain.keys()
            for name in fast:
                torch.testing.assert_close(fast[name], plain[name], rtol=RTOL, atol=ATOL,
                                           msg=lambda m: f"{head}/{pooling} head {h} {name}: {m}")
    _assert_heads_are_distinguishable(modules, plan)

    scores = {path: [score(plan, trained, split) for split in (1, 2)]
              for path, score, trained in (("fast", _scores_fast, groups), ("plain", _scores_plain, modules))}
    for split in (0, 1):
        for group in plan.groups:
            fast, plain = scores["fast"][split][group], scores["plain"][split][group]
            assert fast.shape == plain.shape == (len(plan.grid), len(labels[split + 1]), plan.n_classes)
            np.testing.assert_allclose(fast, plain, rtol=RTOL, atol=ATOL, err_msg=str(group))

    metric = metric_for(kind)
    fast, plain = (_select(plan, metric, labels, *scores[path], path) for path in ("fast", "plain"))
    assert fast.best == plain.best and fast.group_best.keys() == plain.group_best.keys()
    assert [{k: h[k] for k in ("lr", "weight_decay", "head", "pooling")} for h in fast.heads] == \
           [{k: h[k] for k in ("lr", "weight_decay", "head", "pooling")} for h in plain.heads]
    for a, b in zip(fast.heads, plain.heads):
        assert a["valid"] == pytest.approx(b["valid"], abs=1e-6) and a["test"] == pytest.approx(b["test"], abs=1e-6)
    assert len({h["valid"] for h in fast.heads}) > 1, "the heads must differ, or the comparison proves nothing"
    np.testing.assert_allclose(fast.test_scores, plain.test_scores, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------- fallback


def test_fast_path_falls_back_to_the_plain_path_without_the_fused_kernel(monkeypatch) -> None:
    """A torch without ``torch._fused_adam_``: probes/heads.py, imported afresh, detects it,
    and a sweep asked for the fast path runs the plain one, which never calls the kernel."""
    splits = _splits("multilabel", sizes=(160, 80, 80))
    settings = dict(lrs=(1e-2, 1e-1), weight_decays=(0.0, 1e-1), heads=("linear", "mlp"),
                    poolings=("mean", "attention"), epochs=4, batch_size=64, seed=2, mlp_hidden=8, device="cpu")
    assert heads_module.HAS_FUSED_ADAM == hasattr(torch, "_fused_adam_")
    fast = probe_sweep(*splits, "multilabel", **settings)  # this torch's own: the fast path, where it has the kernel
    assert fast.path == ("fast" if heads_module.HAS_FUSED_ADAM else "plain")

    monkeypatch.delattr(torch, "_fused_adam_", raising=False)
    spec = importlib.util.spec_from_file_location("heads_without_fused_adam", heads_module.__file__)
    without = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, without)
    spec.loader.exec_module(without)
    assert without.HAS_FUSED_ADAM is False
    with pytest.warns(RuntimeWarning, match="no torch._fused_adam_: the probe sweep runs its plain path"):
        assert without.sweep_path("fast") == "plain"
    with pytest.warns(RuntimeWarning, match="runs its plain path"):
        fallback = without.probe_sweep(*splits, "multilabel", **settings)
    assert fallback.path == "plain"
    plain = probe_sweep(*splits, "multilabel", **settings, path="plain")
    assert plain.path == "plain"

    # The fallback is the plain path, bit for bit ...
    assert fallback.best == plain.best and fallback.heads == plain.heads
    assert np.array_equal(fallback.test_scores, plain.test_scores)
    assert all(np.array_equal(fallback.group_scores[g], plain.group_scores[g]) for g in plain.group_scores)
    # ... and so equals the fast path up to rounding.
    assert fallback.best == fast.best
    for a, b in zip(fallback.heads, fast.heads):
        assert a["valid"] == pytest.approx(b["valid"], abs=1e-6) and a["test"] == pytest.approx(b["test"], abs=1e-6)
    np.testing.assert_allclose(fallback.test_scores, fast.test_scores, rtol=RTOL, atol=ATOL)


def test_sweep_path_names() -> None:
    assert sweep_path("plain") == "plain"
    if heads_module.HAS_FUSED_ADAM:
        assert sweep_path("fast") == "fast"
    with pytest.raises(ValueError, match="unknown path 'slow'"):
        sweep_path("slow")
    with pytest.raises(ValueError, match="unknown path"):
        probe_sweep(*_splits("multiclass", sizes=(20, 10, 10)), "multiclass", epochs=1, device="cpu", path="fused")
