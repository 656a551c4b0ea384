"""Probe heads trained as one sweep over cached frame-level embeddings.

A sweep crosses learning rates x weight decays x head types x poolings. Every head is
trained at once, on one pass over the features per epoch: each minibatch goes through
every head, the heads' losses are summed (their parameters are disjoint, so each
head's gradient is exactly the one it would get alone) and one (fused) Adam step
updates all of them, with a parameter group, hence a learning rate and a weight decay,
per head. A sweep of H heads therefore costs one head's data movement plus H heads'
arithmetic (matrix products, Adam updates), which on a GPU is next to nothing and on a CPU
is what grows with H.

Layout of the computation:

* heads sharing a (head type, pooling) pair form a *group*; a group holds its
  parameters as single tensors with a leading head axis (a linear group is
  ``W [H, C, D]`` and ``b [H, C]``) and runs all its heads with one matrix product (or
  bmm); the optimiser updates each head's slice ``W[h]`` with the head's own settings;
* fixed poolings (``"mean"``, ``"max"``) are computed once, then standardised with
  train statistics; learned poolings (``"attention"``) read the frames, standardised
  with train frame statistics, and pool them inside the group, per head;
* all heads of a group start from the same initial weights, so a head's training
  does not depend on which other heads share the sweep.

Two paths train the same sweep (``probe_sweep(..., path=...)``):

* ``"fast"``, the default: the batched groups above, with custom autograd functions
  (:class:`_SharedInputLinear`, :class:`_SoftmaxCrossEntropy`) and :class:`SweepAdam`, which
  steps with torch's private fused Adam kernel ``torch._fused_adam_``;
* ``"plain"``, the reference, set up as DINOv2's ``setup_linear_classifiers`` sets up its
  linear classifiers: every head an ordinary module (:class:`PlainHead`: ``nn.Linear``,
  autograd's own backward) in an ``nn.ModuleDict``, all trained by one ``torch.optim.Adam``
  with a parameter group per head and decay setting. It starts from the same weights, sees
  the same minibatches and minimises the same losses under the same schedule, so it ends
  where the fast path ends up to float rounding (``tests/test_heads_reference.py``); it
  is many times slower, and is there to check the fast path against. Its optimiser is
  ``torch.optim.Adam``, not ``AdamW``: the fast path's weight decay is Adam's L2 penalty
  (see :func:`sweep_optimizer`), which AdamW's decoupled decay is not.

Fallback: where torch lacks ``torch._fused_adam_`` (the one private API the fast path
uses; checked once, at import, as :data:`HAS_FUSED_ADAM`), a sweep asked for the fast path
runs the plain one, with a warning, and records it in ``SweepResult.path``. Its results
then match the fast path's to float rounding, not bit for bit.

To add a head type or a pooling, add a batched module (leading head axis) to
``HEADS``, ``FIXED_POOLINGS`` or ``LEARNED_POOLINGS``, and its one-head counterpart to
``PLAIN_HEADS`` or ``PLAIN_LEARNED_POOLINGS``, with the same parameter names.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from torch import Tensor, nn

from probes.embed import mean_pool
from probes.metrics import METRICS, metric_for

__all__ = ["SweepResult", "probe_sweep", "use_bf16", "PRECISIONS", "PATHS", "HEADS", "FIXED_POOLINGS",
           "LEARNED_POOLINGS", "PLAIN_HEADS", "PLAIN_LEARNED_POOLINGS"]

Split = tuple[Sequence[np.ndarray], np.ndarray]
"""(frame-level ``[T_i, D]`` arrays, labels): class ids ``[N]`` or 0/1 ``[N, C]``."""

HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")
"""Whether this torch has the private fused Adam kernel that the fast path steps with;
without it, a sweep runs the plain path (see :func:`sweep_path`)."""


# --------------------------------------------------------------------------- poolings


def max_pool(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Maximum of each item's frames per dimension: ``[N, D]`` float32."""
    return np.stack([e.max(axis=0) for e in embeddings]).astype(np.float32)


FIXED_POOLINGS: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
    "mean": mean_pool,
    "max": max_pool,
}
"""Poolings without parameters: computed once per sweep, before any head is trained."""


class AttentionPool(nn.Module):
    """Multi-head attention pooling with a learned query, batched over H probe heads.

    The frame vector is split into ``n_heads`` chunks; attention head ``a`` of probe
    head ``h`` weights the frames by ``softmax_t(x_t[a] . q[h, a] / sqrt(D / n_heads))``
    and sums the chunk ``x_t[a]``. The query starts at zero, i.e. at mean pooling.
    """

    def __init__(self, n: int, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention pooling needs dim ({dim}) divisible by its heads ({n_heads})")
        self.n_heads = n_heads
        self.query = nn.Parameter(torch.zeros(n, n_heads, dim // n_heads))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, T, D]``, ``mask [B, T]`` (True on valid frames) -> ``[H, B, D]``."""
        b, t, d = x.shape
        chunks = x.view(b, t, self.n_heads, d // self.n_heads)
        logits = torch.einsum("btad,had->hbta", chunks, self.query) / math.sqrt(d // self.n_heads)
        logits = logits.masked_fill(~mask[None, :, :, None], float("-inf"))
        weights = logits.softmax(dim=2)
        return torch.einsum("hbta,btad->hbad", weights, chunks).reshape(-1, b, d)


LEARNED_POOLINGS: dict[str, type[AttentionPool]] = {"attention": AttentionPool}
"""Poolings with parameters, trained with each head from the frames."""


# ------------------------------------------------------------------------------ heads


def _initial_linear(dim_in: int, dim_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``nn.Linear``'s default initialisation (uniform in +-1/sqrt(dim_in)), drawn from
    ``generator``: ``weight [dim_out, dim_in]`` (a transposed view) and ``bias [dim_out]``."""
    bound = 1.0 / math.sqrt(dim_in)
    weight = (torch.rand(dim_in, dim_out, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(dim_out, generator=generator) * 2 - 1) * bound
    return weight.t(), bias


def _group_generator(seed: int, head: str, pooling: str) -> torch.Generator:
    """The generator of a (head, pooling) group's initial weights: a seed per pair, so that a
    group's initial weights do not depend on the other groups."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{head}/{pooling}".encode()))


class _SharedInputLinear(torch.autograd.Function):
    """``out[h] = x @ W[h].T + b[h]`` for every head h, from ``x [B, D]``, ``W [H, C, D]`` (each
    head laid out as ``nn.Linear.weight``) and ``b [H, C]``, as one ``[H*C, D] x [D, B]``
    product in ``dtype``. Returns ``[H, B, C]`` laid out class-major, ``[H, C, B]`` in memory.

    This layout needs no reordering either way: the forward reads ``W.view(H*C, D)`` as it
    lies, the backward's ``grad @ x`` is ``[H*C, D]``, the weight's gradient as it lies, and
    the softmax over classes runs across items, contiguous (:class:`_SoftmaxCrossEntropy`).
    The bias is added in float32; the gradients come back as float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, dtype: torch.dtype) -> Tensor:
        n, dim_out, dim_in = weight.shape
        flat = weight.to(dtype).view(n * dim_out, dim_in)
        x = x.to(dtype)
        ctx.save_for_backward(x, flat)
        out = (flat @ x.t()).float().add_(bias.reshape(n * dim_out, 1))  # twice as fast as a mixed-type add
        return out.view(n, dim_out, x.shape[0]).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, flat = ctx.saved_tensors
        n, batch, dim_out = grad.shape
        grad = grad.transpose(1, 2).reshape(n * dim_out, batch)  # a view in the forward's layout
        low = grad.to(x.dtype)
        grad_weight = (low @ x).float().view(n, dim_out, -1)
        grad_x = (low.t() @ flat).float() if ctx.needs_input_grad[0] else None
        return grad_x, grad_weight, grad.sum(1).view(n, dim_out), None


class BatchedLinear(nn.Module):
    """H independent linear maps ``[D_in] -> [D_out]``: ``weight [H, D_out, D_in]`` (each head
    laid out as ``nn.Linear.weight``), ``bias [H, D_out]``.

    An input shared by all heads goes through one ``[H * D_out, D_in] x [D_in, B]`` product
    (:class:`_SharedInputLinear`), in the autocast dtype when autocast is on. Every head
    starts from the same draw of ``nn.Linear``'s default initialisation.
    """

    def __init__(self, n: int, dim_in: int, dim_out: int, generator: torch.Generator) -> None:
        super().__init__()
        weight, bias = _initial_linear(dim_in, dim_out, generator)
        self.weight = nn.Parameter(weight.expand(n, -1, -1).clone(memory_format=torch.contiguous_format))
        self.bias = nn.Parameter(bias.expand(n, -1).clone())

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, D_in]`` shared by all heads, or ``[H, B, D_in]`` -> ``[H, B, D_out]``."""
        if x.dim() == 2:
            device = x.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.weight.dtype
            with torch.autocast(device, enabled=False):
                return _SharedInputLinear.apply(x, self.weight, self.bias, dtype)
        return torch.baddbmm(self.bias[:, None], x, self.weight.transpose(1, 2))


class LinearHead(BatchedLinear):
    """Linear probe: ``[D] -> [C]`` logits."""

    def __init__(self, n: int, dim_in: int, n_classes: int, generator: torch.Generator, hidden: int) -> None:
        super().__init__(n, dim_in, n_classes, generator)


class MLPHead(nn.Module):
    """One hidden layer with GELU: ``[D] -> [hidden] -> [C]`` logits."""

    def __init__(self, n: int, dim_in: int, n_classes: int, generator: torch.Generator, hidden: int) -> None:
        super().__init__()
        self.hidden = BatchedLinear(n, dim_in, hidden, generator)
        self.out = BatchedLinear(n, hidden, n_classes, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.hidden(x)))


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead}
"""Head types: ``cls(n_heads, dim_in, n_classes, generator, hidden)``, batched over heads."""


class HeadGroup(nn.Module):
    """All heads of one (head type, pooling) pair: an optional learned pooling, then a head."""

    def __init__(
        self,
        head: str,
        pooling: str,
        n: int,
        dim: int,
        n_classes: int,
        *,
        seed: int,
        mlp_hidden: int,
        attention_heads: int,
    ) -> None:
        super().__init__()
        generator = _group_generator(seed, head, pooling)
        self.pool = LEARNED_POOLINGS[pooling](n, dim, attention_heads) if pooling in LEARNED_POOLINGS else None
        self.head = HEADS[head](n, dim, n_classes, generator, mlp_hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Pooled ``x [B, D]``, or frames ``x [B, T, D]`` with ``mask`` -> logits ``[H, B, C]``."""
        if self.pool is not None:
            x = self.pool(x, mask)
        return self.head(x)

    def head_state(self, h: int) -> dict[str, Tensor]:
        """Head ``h``'s parameters (views), named as :class:`PlainHead` names its own."""
        return {name: p[h] for name, p in self.named_parameters()}


# ------------------------------------------------------------------- plain heads


class PlainAttentionPool(nn.Module):
    """:class:`AttentionPool` for one probe head, written without the head axis:
    ``query [n_heads, D / n_heads]``, zero at the start."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention pooling needs dim ({dim}) divisible by its heads ({n_heads})")
        self.n_heads = n_heads
        self.query = nn.Parameter(torch.zeros(n_heads, dim // n_heads))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, T, D]``, ``mask [B, T]`` (True on valid frames) -> ``[B, D]``."""
        b, t, d = x.shape
        chunks = x.view(b, t, self.n_heads, d // self.n_heads)
        logits = (chunks * self.query).sum(-1) / math.sqrt(d // self.n_heads)  # [B, T, n_heads]
        weights = logits.masked_fill(~mask[:, :, None], float("-inf")).softmax(dim=1)
        return (weights[..., None] * chunks).sum(1).reshape(b, d)


def _plain_linear(dim_in: int, dim_out: int, generator: torch.Generator) -> nn.Linear:
    """An ``nn.Linear`` holding :func:`_initial_linear`'s draw (``skip_init``: the global
    random state is left alone, as the fast path leaves it)."""
    linear = nn.utils.skip_init(nn.Linear, dim_in, dim_out)
    weight, bias = _initial_linear(dim_in, dim_out, generator)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


def plain_linear_head(dim_in: int, n_classes: int, generator: torch.Generator, hidden: int) -> nn.Linear:
    """Linear probe, one head: ``[D] -> [C]`` logits (``hidden`` unused)."""
    return _plain_linear(dim_in, n_classes, generator)


class PlainMLP(nn.Module):
    """:class:`MLPHead` for one head: ``[D] -> [hidden] -> [C]`` logits, GELU between."""

    def __init__(self, dim_in: int, n_classes: int, generator: torch.Generator, hidden: int) -> None:
        super().__init__()
        self.hidden = _plain_linear(dim_in, hidden, generator)
        self.out = _plain_linear(hidden, n_classes, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.hidden(x)))


PLAIN_HEADS: dict[str, Callable[..., nn.Module]] = {"linear": plain_linear_head, "mlp": PlainMLP}
"""The plain path's head types: ``cls(dim_in, n_classes, generator, hidden)``, one head each."""

PLAIN_LEARNED_POOLINGS: dict[str, type[PlainAttentionPool]] = {"attention": PlainAttentionPool}
"""The plain path's learned poolings: ``cls(dim, attention_heads)``, one head each."""


class PlainHead(nn.Module):
    """One head of the plain path: an optional learned pooling, then the head.

    It draws its initial weights from its (head, pooling) group's generator, in the order
    :class:`HeadGroup` draws them, and names its parameters as :class:`HeadGroup` does, so
    that ``HeadGroup.head_state(h)`` and ``PlainHead.state_dict()`` compare key by key.
    """

    def __init__(
        self,
        head: str,
        pooling: str,
        dim: int,
        n_classes: int,
        *,
        seed: int,
        mlp_hidden: int,
        attention_heads: int,
    ) -> None:
        super().__init__()
        generator = _group_generator(seed, head, pooling)
        pool = PLAIN_LEARNED_POOLINGS.get(pooling)
        self.pool = pool(dim, attention_heads) if pool is not None else None
        self.head = PLAIN_HEADS[head](dim, n_classes, generator, mlp_hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Pooled ``x [B, D]``, or frames ``x [B, T, D]`` with ``mask`` -> logits ``[B, C]``."""
        if self.pool is not None:
            x = self.pool(x, mask)
        return self.head(x)


def _plain_key(head: str, pooling: str, h: int) -> str:
    """The plain path's ``nn.ModuleDict`` key of head ``h`` of a (head, pooling) group."""
    return f"{head}/{pooling}/{h}"


# --------------------------------------------------------------------------- inputs


def _train_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (1 where a dimension is constant)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    return mean, np.where(std > 0, std, 1.0)


class PooledInputs:
    """Fixed-pooled, standardised features of one split, on the device."""

    def __init__(self, pooled: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device) -> None:
        self.x = torch.as_tensor(((pooled - mean) / std).astype(np.float32), device=device)

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: Tensor) -> tuple[Tensor, None]:
        return self.x.index_select(0, index), None  # on CPU, 5x faster than x[index]


class FrameInputs:
    """Standardised frames of one split, concatenated on the device, padded per batch."""

    def __init__(self, frames: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray, device: torch.device) -> None:
        flat = ((np.concatenate(frames) - mean) / std).astype(np.float16)
        self.flat = torch.as_tensor(flat, device=device)
        lengths = np.array([f.shape[0] for f in frames], dtype=np.int64)
        if (lengths == 0).any():
            raise ValueError("every item needs at least one frame")
        self.lengths = torch.as_tensor(lengths, device=device)
        self.starts = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]]), device=device)

    def __len__(self) -> int:
        return self.lengths.shape[0]

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Items ``index`` as zero-padded frames ``[B, T, D]`` and validity mask ``[B, T]``."""
        lengths = self.lengths[index]
        steps = torch.arange(int(lengths.max()), device=lengths.device)
        mask = steps[None, :] < lengths[:, None]
        rows = (self.starts[index, None] + steps[None, :]).clamp(max=self.flat.shape[0] - 1)
        frames = self.flat.index_select(0, rows.reshape(-1)).view(*rows.shape, -1)
        return frames.float() * mask[..., None], mask


def _prepare_inputs(
    poolings: Sequence[str], splits: Sequence[Sequence[np.ndarray]], device: torch.device
) -> dict[str, list[PooledInputs | FrameInputs]]:
    """Per pooling, the standardised inputs of each split (statistics from ``splits[0]``)."""
    inputs: dict[str, list[PooledInputs | FrameInputs]] = {}
    for pooling in poolings:
        if pooling in FIXED_POOLINGS:
            pooled = [FIXED_POOLINGS[pooling](frames) for frames in splits]
            mean, std = _train_stats(pooled[0])
            inputs[pooling] = [PooledInputs(p, mean, std, device) for p in pooled]
        else:
            mean, std = _train_stats(np.concatenate(splits[0]).astype(np.float32))
            inputs[pooling] = [FrameInputs(frames, mean, std, device) for frames in splits]
    return inputs


# ------------------------------------------------------------------------- training


class SweepAdam:
    """Adam over per-head slices ``tensor[h]`` of batched parameters, in groups that each have
    their own ``lr`` and (L2) ``weight_decay``: one call of torch's fused Adam kernel per group
    and step (a plain-torch loop where the kernel is missing or the device is neither CPU nor
    CUDA; :func:`probe_sweep` itself runs its plain path where the kernel is missing).

    ``param_groups``: ``{"params": [(tensor, head), ...], "lr", "weight_decay", ...}`` dicts;
    set a group's ``lr`` between steps to schedule it. Each slice is updated exactly as
    ``torch.optim.Adam`` would update it as a parameter of its own, without torch.optim's
    per-group Python work, which for a sweep's twenty-odd small groups costs more than the
    arithmetic.
    """

    def __init__(self, param_groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups, self.betas, self.eps = param_groups, betas, eps
        # Each head's slice of a parameter, once: views, updated in place with the parameter.
        self.slices = [[t[h] for t, h in g["params"]] for g in param_groups]
        self.moments = [([torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]) for ps in self.slices]
        device = param_groups[0]["params"][0][0].device
        self.steps = torch.zeros((), dtype=torch.float32, device=device)  # shared by every slice
        self.fused = HAS_FUSED_ADAM and device.type in ("cpu", "cuda")

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        for group, params, (exp_avg, exp_avg_sq) in zip(self.param_groups, self.slices, self.moments):
            grads = [t.grad[h] for t, h in group["params"]]  # a new gradient tensor every step
            if self.fused:
                torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], [self.steps] * len(params),
                                   lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                                   eps=self.eps, amsgrad=False, maximize=False)
                continue
            step = float(self.steps)
            for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
                g = g.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else g
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**step))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for t, _ in group["params"]:
                t.grad = None


def sweep_optimizer(groups: dict, grid: Sequence[tuple[float, float]]) -> SweepAdam:
    """Adam with a group per (learning rate, weight decay): head h's slice of each tensor
    named ``*weight`` goes to its (lr, wd) group, its slices of the others (biases, attention
    queries) to its (lr, 0) group; ``base_lr`` keeps the lr for the schedule.

    Each head is then updated exactly as ``torch.optim.Adam`` would update it alone. Weight
    decay is Adam's L2 penalty (``grad += wd * p``): a head minimises ``mean loss + wd / 2 *
    |W|^2``, so a converged linear head is the ``LogisticRegression(C = 1 / (wd * N_train))``
    solution.
    """
    params: dict[tuple[float, float], list[tuple[nn.Parameter, int]]] = {}  # (lr, wd) -> slices
    for group in groups.values():
        for name, p in group.named_parameters():
            for h, (lr, wd) in enumerate(grid):  # every parameter has a leading head axis
                params.setdefault((lr, wd if name.endswith("weight") else 0.0), []).append((p, h))
    # One group per setting (heads of the same lr share one for their biases and queries).
    return SweepAdam([{"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), ps in params.items()])


def plain_optimizer(modules: nn.ModuleDict, grid: Sequence[tuple[float, float]]) -> torch.optim.Adam:
    """The plain path's optimiser: ``torch.optim.Adam`` (L2 weight decay, as in
    :func:`sweep_optimizer`) with two parameter groups per head, the ``i``-th module of
    ``modules`` having ``grid[i % len(grid)]``: its tensors named ``*weight`` at (lr, wd), the
    others (biases, attention queries) at (lr, 0); ``base_lr`` keeps the lr for the schedule.
    Torch's single-tensor implementation (``foreach=False, fused=False``): no private kernel.
    """
    groups = []
    for i, module in enumerate(modules.values()):
        lr, wd = grid[i % len(grid)]
        named = list(module.named_parameters())
        for decay, params in ((wd, [p for n, p in named if n.endswith("weight")]),
                              (0.0, [p for n, p in named if not n.endswith("weight")])):
            if params:
                groups.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": decay})
    return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8, foreach=False, fused=False)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """``scale * sum_h sum_i -log softmax(logits[h, i])[target_i]`` for logits ``[H, B, C]``.

    The log-softmax runs over ``logits.transpose(1, 2)``, ``[H, C, B]``, so that it vectorises
    across items rather than along rows of a few classes: on CPU, for 16 heads x 256 items,
    2.5x faster than row-wise at 50 classes and 30x at 10, and free of a copy when the logits
    are class-major in memory (a linear head's). The gradient, ``softmax - onehot``, is made
    in place from the saved log-probabilities.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, scale: float) -> Tensor:
        log_probs = torch.log_softmax(logits.transpose(1, 2), 1)
        index = target.view(1, 1, -1).expand(logits.shape[0], 1, -1)
        ctx.save_for_backward(log_probs, index)
        ctx.scale = scale
        return log_probs.gather(1, index).sum().mul(-scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        log_probs, index = ctx.saved_tensors  # not needed after this: overwritten in place
        probs = log_probs.exp_()
        probs.scatter_add_(1, index, probs.new_full(index.shape, -1.0))
        return probs.mul_(grad * ctx.scale).transpose(1, 2), None, None


def _loss(logits: Tensor, target: Tensor, multilabel: bool) -> Tensor:
    """Sum over heads of each head's mean loss; ``logits [H, B, C]``."""
    _, batch, n_classes = logits.shape
    if multilabel:
        per_item = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="sum")
        return per_item / (batch * n_classes)
    return _SoftmaxCrossEntropy.apply(logits, target, 1.0 / batch)


def _plain_loss(logits: Tensor, target: Tensor, multilabel: bool) -> Tensor:
    """One head's mean loss, as torch computes it; ``logits [B, C]``."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)


@torch.no_grad()
def _predict(
    model: HeadGroup | PlainHead, inputs: PooledInputs | FrameInputs, multilabel: bool, batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Scores of a group's heads, ``[H, N, C]``, or of a plain head, ``[N, C]``: sigmoid
    (multilabel) or softmax."""
    chunks = []
    for start in range(0, len(inputs), batch_size):
        index = torch.arange(start, min(start + batch_size, len(inputs)), device=device)
        logits = model(*inputs.batch(index))
        chunks.append((logits.sigmoid() if multilabel else logits.softmax(-1)).cpu())
    return torch.cat(chunks, dim=-2).numpy()


# ---------------------------------------------------------------------------- sweep


PATHS = ("fast", "plain")
"""How a sweep trains its heads: batched (``"fast"``) or one module each (``"plain"``)."""


def sweep_path(path: str) -> str:
    """The path that a sweep asked for ``path`` runs: ``path``, except that ``"fast"`` falls
    back to ``"plain"`` (with a warning) where torch lacks ``torch._fused_adam_``."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    if path == "fast" and not HAS_FUSED_ADAM:
        warnings.warn("this torch has no torch._fused_adam_: the probe sweep runs its plain path "
                      "(the same results up to float rounding, several times slower)", RuntimeWarning, stacklevel=3)
        return "plain"
    return path


@dataclass
class _Plan:
    """What a sweep trains from, and how: the same for both paths."""

    inputs: dict[str, list[PooledInputs | FrameInputs]]
    """Per pooling, in sweep order: the standardised train, valid and test inputs."""
    target: Tensor
    """Training labels on the device: class ids (long) or 0/1 [N, C] (float32)."""
    grid: list[tuple[float, float]]
    """(lr, weight decay) per head of a group: head ``h`` of every group has ``grid[h]``."""
    heads: tuple[str, ...]
    poolings: tuple[str, ...]
    dim: int
    n_classes: int
    multilabel: bool
    epochs: int
    batch_size: int
    seed: int
    mlp_hidden: int
    attention_heads: int
    bf16: bool
    progress: bool
    device: torch.device

    @property
    def groups(self) -> list[tuple[str, str]]:
        """(head, pooling) pairs in sweep order: poolings outer, head types inner."""
        return [(head, pooling) for pooling in self.poolings for head in self.heads]


def _train(plan: _Plan, loss: Callable[[dict, Tensor], Tensor], optimizer: SweepAdam | torch.optim.Optimizer) -> None:
    """The training loop of both paths: ``plan.epochs`` passes over the training set in
    minibatches of a seeded random order; per minibatch, ``loss(batches, target)`` (every
    head's mean loss, summed; ``batches`` maps each pooling to its ``(x, mask)``), backward,
    a cosine decay of every parameter group's lr from its ``base_lr``, one optimiser step."""
    n_train = len(plan.target)
    total_steps = plan.epochs * math.ceil(n_train / plan.batch_size)
    order = torch.Generator().manual_seed(plan.seed)
    step = 0
    for _ in track(range(plan.epochs), description="probe sweep", disable=not plan.progress):
        permutation = torch.randperm(n_train, generator=order).to(plan.device)
        for start in range(0, n_train, plan.batch_size):
            index = permutation[start : start + plan.batch_size]
            batches = {pooling: inputs[0].batch(index) for pooling, inputs in plan.inputs.items()}
            loss(batches, plan.target[index]).backward()
            scale = 0.5 * (1 + math.cos(math.pi * step / total_steps))  # cosine decay
            for param_group in optimizer.param_groups:
                param_group["lr"] = param_group["base_lr"] * scale
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1


def _train_fast(plan: _Plan) -> dict[tuple[str, str], HeadGroup]:
    """The fast path: per (head, pooling), a :class:`HeadGroup` of every grid point's head,
    trained with :class:`SweepAdam`; returns the trained groups."""
    groups = {
        (head, pooling): HeadGroup(
            head, pooling, len(plan.grid), plan.dim, plan.n_classes,
            seed=plan.seed, mlp_hidden=plan.mlp_hidden, attention_heads=plan.attention_heads,
        ).to(plan.device)
        for head, pooling in plan.groups
    }
    optimizer = sweep_optimizer(groups, plan.grid)

    def loss(batches: dict, target: Tensor) -> Tensor:
        with torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=plan.bf16):
            logits = [group(*batches[pooling]) for (_, pooling), group in groups.items()]
        return sum(_loss(x.float(), target, plan.multilabel) for x in logits)

    _train(plan, loss, optimizer)
    return groups


def _train_plain(plan: _Plan) -> nn.ModuleDict:
    """The plain (reference) path: every head a :class:`PlainHead` in an ``nn.ModuleDict``
    (keys :func:`_plain_key`), all trained by one ``torch.optim.Adam``
    (:func:`plain_optimizer`); returns the trained heads."""
    members = [(head, pooling, h) for head, pooling in plan.groups for h in range(len(plan.grid))]
    modules = nn.ModuleDict({
        _plain_key(head, pooling, h): PlainHead(
            head, pooling, plan.dim, plan.n_classes,
            seed=plan.seed, mlp_hidden=plan.mlp_hidden, attention_heads=plan.attention_heads,
        )
        for head, pooling, h in members
    }).to(plan.device)
    optimizer = plain_optimizer(modules, [plan.grid[h] for _, _, h in members])
    poolings = [pooling for _, pooling, _ in members]

    def loss(batches: dict, target: Tensor) -> Tensor:
        with torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=plan.bf16):
            logits = [module(*batches[pooling]) for pooling, module in zip(poolings, modules.values())]
        return sum(_plain_loss(x.float(), target, plan.multilabel) for x in logits)

    _train(plan, loss, optimizer)
    return modules


def _scores_fast(
    plan: _Plan, groups: dict[tuple[str, str], HeadGroup], split: int
) -> dict[tuple[str, str], np.ndarray]:
    """Per (head, pooling): the scores ``[H, N, C]`` of its heads on split 1 (valid) or 2 (test)."""
    return {(head, pooling): _predict(group.eval(), plan.inputs[pooling][split], plan.multilabel,
                                      4 * plan.batch_size, plan.device)
            for (head, pooling), group in groups.items()}


def _scores_plain(plan: _Plan, modules: nn.ModuleDict, split: int) -> dict[tuple[str, str], np.ndarray]:
    """:func:`_scores_fast` for the plain path's heads."""
    return {(head, pooling): np.stack([_predict(modules[_plain_key(head, pooling, h)].eval(),
                                                plan.inputs[pooling][split], plan.multilabel,
                                                4 * plan.batch_size, plan.device)
                                       for h in range(len(plan.grid))])
            for head, pooling in plan.groups}


@dataclass
class SweepResult:
    """Outcome of a probe sweep.

    ``best`` holds the chosen head's ``lr``, ``weight_decay``, ``head`` and ``pooling``;
    ``valid`` and ``test`` its scores under ``metric``. ``heads`` lists every head as
    ``{lr, weight_decay, head, pooling, valid, test}``. ``test_scores`` are the chosen
    head's ``[N_test, C]`` test scores (softmax probabilities for multiclass, sigmoid for
    multilabel); ``METRICS[metric](y_test, test_scores)`` gives back ``test``, and a
    bootstrap can resample its rows. ``group_scores`` holds the same for the head chosen
    within each ``(head, pooling)`` group, so that arms can be compared per head type.
    """

    metric: str
    best: dict
    valid: float
    test: float
    heads: list[dict] = field(repr=False)
    test_scores: np.ndarray = field(repr=False)
    group_scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    group_best: dict[tuple[str, str], dict] = field(default_factory=dict, repr=False)
    """Per ``(head, pooling)``: the entry of ``heads`` chosen on validation within that group."""
    path: str = "fast"
    """The path that trained the heads: ``"plain"`` where ``"fast"`` fell back (:func:`sweep_path`)."""


def probe_sweep(
    train: Split,
    valid: Split,
    test: Split,
    kind: str,
    lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    weight_decays: Sequence[float] = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
    heads: Sequence[str] = ("linear",),
    poolings: Sequence[str] = ("mean",),
    epochs: int = 100,
    batch_size: int = 256,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    mlp_hidden: int = 256,
    attention_heads: int = 4,
    precision: str = "fp32",
    path: str = "fast",
) -> SweepResult:
    """Train every (lr, weight decay, head, pooling) probe at once; pick one on ``valid``.

    Args:
        train, valid, test: ``(frames, labels)``; frames are ``[T_i, D]`` arrays, labels
            class ids ``[N]`` (``kind="multiclass"``) or 0/1 ``[N, C]`` (``"multilabel"``).
        kind: ``"multiclass"`` (cross-entropy, accuracy) or ``"multilabel"`` (BCE, mAP).
        lrs, weight_decays: the Adam grid. Weight decay is an L2 penalty (see
            ``sweep_optimizer``); the default grid spans LogisticRegression's C from about
            ``1 / N_train`` up to no penalty, in half decades.
        heads, poolings: keys of ``HEADS``, and of ``FIXED_POOLINGS`` or ``LEARNED_POOLINGS``.
        epochs: passes over the training set, with a cosine learning-rate decay.
        batch_size: training minibatch size (evaluation uses 4x).
        seed: fixes initial weights and minibatch order.
        device: torch device; CUDA when available by default.
        progress: show a progress bar over epochs.
        mlp_hidden: width of the ``"mlp"`` head's hidden layer.
        attention_heads: attention heads of the ``"attention"`` pooling.
        precision: ``"fp32"``; ``"bf16"``: the training forward's matrix products in
            bfloat16 (autocast; weights, Adam and the loss stay float32; evaluation in
            float32); ``"auto"``: bf16 where the hardware has bf16 matrix units (a CUDA GPU
            that supports it, an x86 CPU with AMX-BF16), else fp32. See :func:`use_bf16`.
        path: ``"fast"`` (batched heads, fused Adam) or ``"plain"`` (one ``nn.Module`` per
            head, ``torch.optim.Adam``: the reference, many times slower); in fp32 both give
            the same heads up to float rounding. ``"fast"`` falls back to ``"plain"`` where
            torch lacks the fused kernel (see the module docstring); ``SweepResult.path``
            says which ran.

    The chosen head has the best validation score; ties go to the smaller lr, then the
    smaller weight decay, then the earlier head type, then the earlier pooling.
    """
    metric = metric_for(kind)
    ran = sweep_path(path)
    plan, labels = _make_plan(
        train, valid, test, kind == "multilabel", lrs=lrs, weight_decays=weight_decays, heads=heads,
        poolings=poolings, epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=progress,
        mlp_hidden=mlp_hidden, attention_heads=attention_heads, precision=precision,
    )
    if ran == "fast":
        groups = _train_fast(plan)
        valid_scores, test_scores = (_scores_fast(plan, groups, split) for split in (1, 2))
    else:
        modules = _train_plain(plan)
        valid_scores, test_scores = (_scores_plain(plan, modules, split) for split in (1, 2))
    return _select(plan, metric, labels, valid_scores, test_scores, ran)


def _make_plan(
    train: Split,
    valid: Split,
    test: Split,
    multilabel: bool,
    *,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    heads: Sequence[str],
    poolings: Sequence[str],
    epochs: int,
    batch_size: int,
    seed: int,
    device: str | None,
    progress: bool,
    mlp_hidden: int,
    attention_heads: int,
    precision: str,
) -> tuple[_Plan, list[np.ndarray]]:
    """Check :func:`probe_sweep`'s arguments and prepare its inputs: the plan, and the
    labels of the three splits."""
    _check_names("head", heads, HEADS)
    _check_names("pooling", poolings, {**FIXED_POOLINGS, **LEARNED_POOLINGS})
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = use_bf16(precision, dev)
    labels = [np.asarray(y) for _, y in (train, valid, test)]
    n_classes = _n_classes(labels, multilabel)
    plan = _Plan(
        inputs=_prepare_inputs(poolings, [train[0], valid[0], test[0]], dev),
        target=torch.as_tensor(labels[0], dtype=torch.float32 if multilabel else torch.long, device=dev),
        grid=[(lr, wd) for lr in lrs for wd in weight_decays],
        heads=tuple(heads), poolings=tuple(poolings), dim=train[0][0].shape[1], n_classes=n_classes,
        multilabel=multilabel, epochs=epochs, batch_size=batch_size, seed=seed, mlp_hidden=mlp_hidden,
        attention_heads=attention_heads, bf16=bf16, progress=progress, device=dev,
    )
    return plan, labels


def _select(
    plan: _Plan,
    metric: str,
    labels: list[np.ndarray],
    valid_scores: dict[tuple[str, str], np.ndarray],
    test_scores: dict[tuple[str, str], np.ndarray],
    path: str,
) -> SweepResult:
    """Score every head (scores ``[H, N, C]`` per group) and choose on validation."""
    score = METRICS[metric]
    results, scores = [], []
    for head, pooling in plan.groups:
        for h, (lr, wd) in enumerate(plan.grid):
            results.append(
                {
                    "lr": lr,
                    "weight_decay": wd,
                    "head": head,
                    "pooling": pooling,
                    "valid": score(labels[1], valid_scores[head, pooling][h]),
                    "test": score(labels[2], test_scores[head, pooling][h]),
                }
            )
            scores.append(test_scores[head, pooling][h])

    def rank(i: int) -> tuple:
        r = results[i]
        return (-np.nan_to_num(r["valid"], nan=-np.inf), r["lr"], r["weight_decay"],
                plan.heads.index(r["head"]), plan.poolings.index(r["pooling"]))

    best = min(range(len(results)), key=rank)
    group_scores, group_best = {}, {}
    for group in plan.groups:
        members = [i for i, r in enumerate(results) if (r["head"], r["pooling"]) == group]
        chosen = min(members, key=rank)
        group_scores[group] = scores[chosen]
        group_best[group] = results[chosen]
    return SweepResult(
        metric=metric,
        best={k: results[best][k] for k in ("lr", "weight_decay", "head", "pooling")},
        valid=results[best]["valid"],
        test=results[best]["test"],
        heads=results,
        test_scores=scores[best],
        group_scores=group_scores,
        group_best=group_best,
        path=path,
    )


PRECISIONS = ("fp32", "bf16", "auto")


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a sweep at ``precision`` trains in bf16 on ``device`` (see :func:`probe_sweep`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx_bf16()


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX-BF16 tiles (Linux ``/proc/cpuinfo`` flag ``amx_bf16``): there
    oneDNN runs bf16 matrix products several times faster than float32 ones."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def _check_names(what: str, names: Sequence[str], known: dict) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(known)}")


def _n_classes(labels: Sequence[np.ndarray], multilabel: bool) -> int:
    """Number of classes: columns of 0/1 label matrices, or 1 + the largest class id."""
    if multilabel:
        if any(y.ndim != 2 or y.shape[1] != labels[0].shape[1] for y in labels):
            raise ValueError("multilabel labels must be 0/1 [N, C] matrices with the same C in every split")
        return labels[0].shape[1]
    if any(y.ndim != 1 for y in labels):
        raise ValueError("multiclass labels must be class ids [N]")
    return int(max(y.max() for y in labels)) + 1
