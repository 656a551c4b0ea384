"""Pre-training loop: any optimiser of ``encoders/optim/`` (AdamW with warmup + cosine by default),
bf16 on CUDA, exact resume from ``train_state.pt``.

The batch at step s is a function of (seed, s) only (see :class:`EpochShuffleSampler`), and
every checkpoint carries the model, objective, optimizer, scheduler and all RNG states, so a
run killed at any point and started again with the same arguments logs the same per-step
losses and ends with the same weights as a run that was never interrupted.

A step's loss and gradients are those of its whole batch, however the batch is laid out:
split into ``grad_accum`` micro-batches, spread over DDP ranks, or both
(:func:`accumulate_gradients`). Objectives declare how their loss adds up
(``encoders/objectives/__init__.py``): a mean over clips, a sum over the whole batch's count
(``normalizers``), or a function of the whole batch's embeddings (``embed`` + ``loss``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from encoders.base import Encoder
from encoders.checkpoint import atomic_save
from encoders.optim import build_optimization
from encoders.specaug import SpecAugment

STATE_FILE = "train_state.pt"
_DRAW_STREAM = 0x64726177  # separates batch_draws' random stream from the samplers' (seed, epoch)
FRAMES_PER_SECOND = 100  # input features: 10 ms fbank frames
LOG_FILE = "train_log.csv"
# Fields of TrainConfig that may change between a run and its resumption.
_RESUMABLE_FIELDS = {"checkpoint_every", "num_threads", "log_every"}


@dataclass
class TrainConfig:
    """Optimisation settings of one pre-training run.

    ``batch_size`` clips make one optimizer step, split into ``grad_accum`` equal
    micro-batches: ``grad_accum`` trades memory for time without changing the loss or the
    gradients, which are those of the whole batch (token losses over the whole batch's
    tokens, contrastive negatives over the whole batch: :func:`accumulate_gradients`).
    With ``max_duration`` set, batches are instead buckets of similar duration holding at
    most that many seconds of audio (:class:`DurationBucketSampler`).
    ``warmup_steps=None`` warms up over the first 5% of the steps. ``specaugment`` holds the
    :class:`~encoders.specaug.SpecAugment` keywords (``{}``: its defaults; ``None``: off).
    ``grad_clip=None`` disables clipping (the gradient norm is still logged); an optimiser
    that clips gradients itself (ScaledAdam) is not clipped again. ``optimizer`` names one of
    ``encoders/optim/`` with its options (``None``: AdamW with warmup and cosine decay).
    ``average_period`` makes the run's encoder the running average of its weights, updated
    every that many steps (:class:`EncoderAverage`, as the UTS authors' trainer does).
    """

    steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    checkpoint_every: int = 100
    seed: int = 0
    specaugment: dict[str, Any] | None = field(default_factory=dict)
    max_duration: float | None = None  # seconds of audio per batch: duration bucketing instead of batch_size
    num_buckets: int = 10
    num_threads: int | None = None
    log_every: int = 10
    optimizer: dict[str, Any] | None = None  # {"name", **options} of encoders/optim/ (None: adamw)
    average_period: int | None = None  # the run's encoder is the running average of its weights (EncoderAverage)

    @property
    def warmup(self) -> int:
        """Effective number of warmup steps."""
        return self.steps // 20 if self.warmup_steps is None else self.warmup_steps


class StepSampler(Protocol):
    """Gives the clip indices of the batch at each step; a pure function of the step."""

    def batch(self, step: int) -> Sequence[int]: ...


class EpochShuffleSampler:
    """Batches cut from a stream of per-epoch permutations.

    The stream concatenates permutations of ``range(num_items)``, epoch e's permutation
    drawn from a generator seeded by ``(seed, e)``. The batch at step s is the stream's
    positions ``[s * batch_size, (s + 1) * batch_size)``, so it depends on (seed, s) only
    and a resumed run needs no sampler state. A batch may straddle two epochs.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int):
        if num_items < 1 or batch_size < 1:
            raise ValueError(f"need num_items >= 1 and batch_size >= 1, got {num_items}, {batch_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self._permutation = lru_cache(maxsize=4)(self._draw_permutation)

    def _draw_permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def batch(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [
            int(self._permutation(pos // self.num_items)[pos % self.num_items])
            for pos in range(start, start + self.batch_size)
        ]


class DurationBucketSampler:
    """Batches of similar duration, from Lhotse's :class:`DynamicBucketingSampler`.

    Each batch holds at most ``max_duration`` seconds of audio from one duration bucket,
    so little compute goes to padding. Epoch e is Lhotse's shuffled bucketing of all
    clips seeded by ``(seed, e)``; the epochs' batches are concatenated and step s takes the
    s-th, so the batch at a step depends on (seed, step) only, exactly like
    :class:`EpochShuffleSampler`, and a resumed run needs no sampler state. Batch sizes
    vary; the trainer weights micro-batches by their size.
    """

    def __init__(self, durations: Sequence[float], max_duration: float, seed: int, num_buckets: int = 10):
        if not durations:
            raise ValueError("no clips to sample")
        if max_duration < max(durations):
            raise ValueError(f"max_duration {max_duration} s is shorter than the longest clip ({max(durations):.2f} s)")
        self.durations = [float(d) for d in durations]
        self.max_duration = float(max_duration)
        self.num_buckets = max(1, min(int(num_buckets), len(self.durations)))
        self.seed = seed
        self._epochs: list[list[list[int]]] = []
        self._starts: list[int] = [0]  # first step of each epoch

    def _epoch(self, epoch: int) -> list[list[int]]:
        import warnings

        from lhotse import CutSet, MonoCut
        from lhotse.dataset import DynamicBucketingSampler

        cuts = CutSet.from_cuts(MonoCut(id=str(i), start=0.0, duration=d, channel=0)
                                for i, d in enumerate(self.durations))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "eagerly read CutSet": these cuts are a few bytes each
            sampler = DynamicBucketingSampler(cuts, max_duration=self.max_duration, num_buckets=self.num_buckets,
                                              shuffle=True, seed=int(np.random.SeedSequence([self.seed, epoch])
                                                                     .generate_state(1)[0]), drop_last=False)
            sampler.set_epoch(0)
            return [[int(c.id) for c in batch] for batch in sampler]

    def batch(self, step: int) -> list[int]:
        while self._starts[-1] <= step:
            self._epochs.append(self._epoch(len(self._epochs)))
            self._starts.append(self._starts[-1] + len(self._epochs[-1]))
        epoch = next(e for e in range(len(self._epochs)) if self._starts[e + 1] > step)
        return self._epochs[epoch][step - self._starts[epoch]]


def collate(features: Sequence[Tensor], indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Zero-pad ``features[i]`` ([T_i, F]) for i in ``indices`` to [B, max T_i, F]; lengths [B]."""
    clips = [features[i] for i in indices]
    return pad_sequence(clips, batch_first=True), torch.tensor([len(c) for c in clips])


def as_target_fields(targets: Any) -> dict[str, Any]:
    """Per-clip targets as named fields: a tensor [N, ...] is ``{"targets": tensor}``."""
    return {"targets": targets} if isinstance(targets, Tensor) else dict(targets)


def batch_draws(seed: int, step: int, size: int) -> Tensor:
    """One U[0, 1) number per clip of the batch at ``step``, for objectives' per-clip random
    choices (PAR's decoding mode), a function of (seed, step, the clip's position) only.

    Stratified: a random permutation π of the positions, and u_i = (π_i + v_i) / size with
    v_i ~ U[0, 1), so exactly one u falls in each [k/size, (k+1)/size) and a share p of the
    batch is ⌊p·size⌋ or ⌈p·size⌉ clips (as a round(p·B) of a random permutation would),
    while each u_i is still uniform. A clip keeps its number however the batch is split.
    """
    rng = np.random.default_rng([seed, step, _DRAW_STREAM])
    return torch.from_numpy((rng.permutation(size) + rng.random(size)) / size).float()


def collate_targets(fields: Mapping[str, Any], indices: Sequence[int], device: torch.device,
                    draws: Tensor | None = None) -> dict[str, Tensor]:
    """The batch's targets: tensor fields are indexed; fields that are lists of 1-D tensors
    (token ids of varying length) are zero-padded to [B, L] and come with ``<name>_lengths``.

    ``batch["draw"]`` holds each clip's U[0, 1) number for per-clip random choices: ``draws``
    (the trainer passes :func:`batch_draws`), else stratified draws from torch's generator.
    """
    if draws is None:
        n = len(indices)
        draws = (torch.randperm(n) + torch.rand(n)) / max(n, 1)
    batch: dict[str, Tensor] = {"draw": draws.to(device)}
    for name, value in fields.items():
        if isinstance(value, Tensor):
            batch[name] = value[list(indices)].to(device, non_blocking=True)
        else:
            seqs = [value[i] for i in indices]
            batch[name] = pad_sequence(seqs, batch_first=True).to(device, non_blocking=True)
            batch[f"{name}_lengths"] = torch.tensor([len(t) for t in seqs]).to(device)
    return batch


class _Net(nn.Module):
    """Encoder followed by the objective, as one module (one set of parameters and state)."""

    def __init__(self, encoder: Encoder, objective: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.objective = objective

    def forward(self, feats: Tensor, lengths: Tensor, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        frames, out_lengths = self.encoder(feats, lengths)
        return self.objective(batch, frames, out_lengths, **kwargs)

    def embed(self, feats: Tensor, lengths: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The encoder, then a two-phase objective's per-clip embeddings."""
        frames, out_lengths = self.encoder(feats, lengths)
        return self.objective.embed(batch, frames, out_lengths)


class TrainLog:
    """``train_log.csv``: one row per step, appended as training goes, flushed per row."""

    def __init__(self, path: Path):
        self.path = path

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def truncate(self, step: int) -> None:
        """Keep only the rows of steps before ``step`` (atomically rewritten)."""
        kept = [r for r in self.rows() if int(r["step"]) < step]
        if not kept:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(kept[0]))
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def append(self, row: dict[str, float | int]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: repr(v) for k, v in row.items()})  # repr round-trips floats


def _rng_states() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np_state,
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np_state = dict(states["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    random.setstate(states["python"])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed)
    random.seed(seed)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group that the environment describes, if any: (rank, world size).

    torchrun and ``submitit.helpers.TorchDistributedEnvironment().export()`` both set
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. NCCL on
    GPUs (one per local rank), gloo on CPUs. A single process (no ``WORLD_SIZE`` > 1)
    stays alone.
    """
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank_and_world()


def _sum_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each rank's share of the logged loss and metrics, added up over the ranks."""
    if rank_and_world()[1] == 1 or not values:
        return values
    names = sorted(values)
    t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(names, t.tolist()))


class _GatherWithGrad(torch.autograd.Function):
    """All-gather rows [n_r, ...] of every rank into [Σ n_r, ...] (rank-major); backward sums
    the gathered gradient over the ranks and hands each rank its own rows' part."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
        sizes = [int(n) for n in sizes]
        padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        rank = dist.get_rank()
        ctx.rows = (sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start, end = ctx.rows
        return grad[start:end]


def gather_with_grad(x: Tensor) -> Tensor:
    """``x`` [n_r, ...] of every DDP rank concatenated in rank order, with gradients flowing
    back to each rank's rows (as open_clip's ``gather_with_grad`` and the Auden
    ``all_gather_embeddings``; ranks may hold different numbers of rows). The identity in a
    single process.

    Backward adds up the ranks' gradients of the gathered tensor: when every rank computes
    the same whole-batch loss L and back-propagates L / world, each rank's rows receive
    exactly ∂L/∂rows, and summing the parameters' gradients over the ranks gives ∂L/∂θ.
    """
    return _GatherWithGrad.apply(x) if rank_and_world()[1] > 1 else x


def _sum_gradients_over_ranks(params: Sequence[nn.Parameter], bucket: int = 1 << 24) -> None:
    """Replace every parameter's gradient by its sum over the ranks, in flat buckets of at
    most ``bucket`` elements per dtype. A parameter that got no gradient on some rank counts
    as zeros there; one that got none on any rank keeps none (the optimizer skips it, as it
    would in one process)."""
    if rank_and_world()[1] == 1:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has_grad)
    live = [p for p, n in zip(params, has_grad.tolist()) if n]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in live:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        start = 0
        while start < len(grads):
            end, size = start, 0
            while end < len(grads) and (end == start or size + grads[end].numel() <= bucket):
                size += grads[end].numel()
                end += 1
            flat = torch.cat([g.reshape(-1) for g in grads[start:end]])
            dist.all_reduce(flat)
            offset = 0
            for g in grads[start:end]:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
            start = end


def _broadcast_from_rank0(module: nn.Module) -> None:
    """Every rank starts from rank 0's parameters and buffers (as DDP's construction does)."""
    if rank_and_world()[1] == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


class EncoderAverage:
    """The running average of an encoder's weights, kept in float64 on the CPU.

    Every ``period`` steps, after ``n`` steps in all: ``avg ← avg·(1 − period/n) + w·(period/n)``,
    so the first update copies the weights and each later one weighs every sampled point
    equally — the averaging of the UTS authors' trainer (Auden ``ddp_trainer.py``,
    ``use_averaged_model``, ``average_period: 200``). Non-float buffers keep the last value.
    """

    def __init__(self, module: nn.Module, period: int):
        if period < 1:
            raise ValueError(f"average_period must be >= 1, got {period}")
        self.period = period
        self.state = {k: v.detach().to("cpu", torch.float64).clone()
                      for k, v in module.state_dict().items() if v.is_floating_point()}

    def update(self, module: nn.Module, steps_done: int) -> None:
        if steps_done % self.period:
            return
        weight = self.period / steps_done
        for name, value in module.state_dict().items():
            if name in self.state:
                self.state[name].mul_(1.0 - weight).add_(value.detach().to("cpu", torch.float64), alpha=weight)

    def apply(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module``."""
        current = module.state_dict()
        module.load_state_dict({k: self.state[k].to(v.dtype) if k in self.state else v for k, v in current.items()})


def _save_state(
    path: Path, step: int, config: TrainConfig, net: _Net, optimizer: torch.optim.Optimizer, scheduler: Any,
    average: EncoderAverage | None = None,
) -> None:
    """Atomically write everything a resumed run needs to continue exactly after ``step`` steps."""
    atomic_save(
        {
            "step": step,
            "config": dataclasses.asdict(config),
            "encoder": net.encoder.state_dict(),
            "objective": net.objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_states(),
            **({"average": average.state} if average is not None else {}),
        },
        path,
    )


def _load_state(
    path: Path, config: TrainConfig, net: _Net, optimizer: torch.optim.Optimizer, scheduler: Any,
    average: EncoderAverage | None = None,
) -> int:
    """Restore a state written by :func:`_save_state`; returns the number of steps done.

    Raises ValueError when the state was written with settings that change the run.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    changed = {
        k: (state["config"].get(k), v)
        for k, v in dataclasses.asdict(config).items()
        if k not in _RESUMABLE_FIELDS and state["config"].get(k) != v
    }
    if changed:
        raise ValueError(f"{path} was written with other settings (saved, given): {changed}")
    net.encoder.load_state_dict(state["encoder"])
    net.objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if average is not None:
        average.state = {k: v.to(torch.float64) for k, v in state["average"].items()}
    _set_rng_states(state["rng"])
    return state["step"]


def _check_config(config: TrainConfig, num_items: int, fields: Mapping[str, Any]) -> None:
    if config.steps < 1 or config.batch_size < 1 or config.grad_accum < 1 or config.checkpoint_every < 1:
        raise ValueError(f"steps, batch_size, grad_accum and checkpoint_every must be >= 1: {config}")
    if config.max_duration is None and config.batch_size % config.grad_accum:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by grad_accum {config.grad_accum}")
    for name, value in fields.items():
        if len(value) != num_items:
            raise ValueError(f"{num_items} feature matrices but {len(value)} rows of targets {name!r}")


def _is_method(objective: nn.Module, name: str) -> bool:
    """Whether the objective's class defines method ``name`` (a submodule called so is not one)."""
    return callable(getattr(type(objective), name, None))


def is_two_phase(objective: nn.Module) -> bool:
    """An objective whose loss is a function of the whole batch's embeddings: it defines
    ``embed(batch, frames, lengths)`` (per-clip rows) and ``loss(embeddings)``."""
    return _is_method(objective, "embed") and _is_method(objective, "loss")


def _forward_state(net: nn.Module, device: torch.device) -> tuple[Tensor, Tensor | None, list[Tensor]]:
    """What a forward pass reads and changes besides its inputs: the RNG states (dropout) and
    the buffers (BatchNorm's running statistics)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda, [b.detach().clone() for b in net.buffers()]


def _set_forward_state(net: nn.Module, state: tuple[Tensor, Tensor | None, list[Tensor]], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
    with torch.no_grad():
        for buffer, saved in zip(net.buffers(), state[2]):
            buffer.copy_(saved)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on a CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


_Inputs = Callable[[Sequence[int]], tuple[Tensor, Tensor]]  # clips -> features [B, T, F] and lengths [B]


def _whole_batch_loss(net: _Net, micro: Sequence[tuple[list[int], dict[str, Tensor]]], inputs: _Inputs,
                      device: torch.device) -> dict[str, float]:
    """Backward a two-phase objective's loss over the whole batch (every rank's micro-batches
    ``micro``: clips and targets); the loss and metrics as this rank's share (1/world of the
    whole batch's values).

    With one micro-batch the embeddings keep their graph. With several (GradCache), each is
    embedded without a graph, the loss's gradient with respect to the embeddings is taken,
    and each micro-batch is embedded again from the same features, RNG state and buffers,
    which repeats the first pass exactly, and back-propagated with its rows' gradient.
    """
    world = rank_and_world()[1]
    one = len(micro) == 1
    cached, states, pieces = [], [], []
    for clips, batch in micro:
        feats, lengths = inputs(clips)
        if not one:
            cached.append((feats, lengths))
            states.append(_forward_state(net, device))
        with torch.set_grad_enabled(one), _autocast(device):
            pieces.append(net.embed(feats, lengths, batch))
    rows = {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}
    if not one:
        after = _forward_state(net, device)
        rows = {k: v.detach().requires_grad_() for k, v in rows.items()}
    with _autocast(device):
        out = net.objective.loss({k: gather_with_grad(v) for k, v in rows.items()})
    loss = out.pop("loss")
    (loss / world).backward()  # every rank holds the whole loss; the gather's backward adds the ranks up
    if not one:
        offsets = np.cumsum([0, *(len(clips) for clips, _ in micro)])
        for j, ((_, batch), (feats, lengths)) in enumerate(zip(micro, cached)):
            _set_forward_state(net, states[j], device)
            with _autocast(device):
                again = net.embed(feats, lengths, batch)
            names = sorted(again)
            torch.autograd.backward([again[k] for k in names], [rows[k].grad[offsets[j] : offsets[j + 1]] for k in names])
        _set_forward_state(net, after, device)
    return {name: float(value) / world for name, value in {"loss": loss.item(), **out}.items()}


def _summed_loss(net: _Net, micro: Sequence[tuple[list[int], dict[str, Tensor]]], inputs: _Inputs,
                 batch_size: int, device: torch.device) -> dict[str, float]:
    """Backward each micro-batch's share of the whole batch's loss; the shares of the loss and
    of the metrics (weighted by clips). With ``normalizers``, the whole batch's counts (every
    micro-batch on every rank) are passed to ``forward`` as ``totals``; without, the loss is
    a mean over clips and is weighted by the micro-batch's share of the ``batch_size`` clips."""
    objective = net.objective
    kwargs: dict[str, Any] = {}
    if _is_method(objective, "normalizers"):
        counts = [objective.normalizers(batch) for _, batch in micro]
        names = sorted(counts[0])
        summed = torch.stack([sum(c[k] for c in counts).to(device, torch.float64) for k in names])
        if rank_and_world()[1] > 1:
            dist.all_reduce(summed)
        kwargs["totals"] = {k: v.float() for k, v in zip(names, summed)}
    sums: dict[str, float] = {}
    for clips, batch in micro:
        feats, lengths = inputs(clips)
        with _autocast(device):
            out = net(feats, lengths, batch, **kwargs)
        share = len(clips) / batch_size
        loss = out.pop("loss")
        if not kwargs:
            loss = loss * share
        loss.backward()
        sums["loss"] = sums.get("loss", 0.0) + loss.item()
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + share * float(value)
    return sums


def accumulate_gradients(
    net: _Net,
    features: Sequence[Tensor],
    targets: Mapping[str, Any],
    indices: Sequence[int],
    grad_accum: int,
    device: torch.device,
    step: int,
    seed: int,
    specaug: SpecAugment | None = None,
) -> dict[str, float]:
    """Gradients of the whole batch ``indices`` in every parameter's ``.grad``; its logged values.

    Under DDP this rank takes ``indices[rank::world]`` and splits it into ``grad_accum``
    micro-batches; the loss, the gradients (summed over the ranks here) and the logged loss
    are those of the whole batch in one piece, to rounding:

    - **two-phase** objectives (``embed`` + ``loss``, contrastive): the embeddings of every
      micro-batch are gathered across ranks with gradients flowing back
      (:func:`gather_with_grad`) and the loss is computed once over the whole batch; with
      several micro-batches, as GradCache and open_clip's ``accum_freq`` do (one extra
      forward pass per micro-batch);
    - objectives with ``normalizers(batch)`` (token and clip counts from the targets alone):
      the counts of every micro-batch on every rank are added up first, and each
      micro-batch's ``forward(..., totals=...)`` is its share of the whole batch's loss;
    - any other objective's loss is taken to be a mean over clips: each micro-batch's is
      weighted by its share of the whole batch's clips.

    ``batch["draw"]`` comes from :func:`batch_draws` over the whole batch. Metrics are
    weighted by clip share (two-phase objectives': computed over the whole batch).
    Raises FloatingPointError naming the step when the whole batch's loss is not finite.
    """
    rank, world = rank_and_world()
    if len(indices) < world:
        raise ValueError(f"step {step}: a batch of {len(indices)} clips cannot be shared by {world} ranks")
    draws = batch_draws(seed, step, len(indices))[rank::world]
    local = list(indices)[rank::world]
    parts = [part.tolist() for part in np.array_split(np.arange(len(local)), min(grad_accum, len(local)))]
    micro = [([local[i] for i in part], collate_targets(targets, [local[i] for i in part], device, draws[part]))
             for part in parts]

    def inputs(clips: Sequence[int]) -> tuple[Tensor, Tensor]:
        feats, lengths = collate(features, clips)
        feats, lengths = feats.to(device, non_blocking=True), lengths.to(device)
        return (specaug(feats, lengths) if specaug is not None else feats), lengths

    if is_two_phase(net.objective):
        sums = _whole_batch_loss(net, micro, inputs, device)
    else:
        sums = _summed_loss(net, micro, inputs, len(indices), device)
    sums = _sum_over_ranks(sums, device)
    if not math.isfinite(sums["loss"]):
        raise FloatingPointError(f"non-finite loss {sums['loss']} at step {step}")
    _sum_gradients_over_ranks([p for p in net.parameters() if p.requires_grad])
    return sums


def train(
    encoder: Encoder,
    objective: nn.Module,
    features: Sequence[Tensor],
    targets: Tensor | Mapping[str, Tensor | Sequence[Tensor]],
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
    sampler: StepSampler | None = None,
) -> dict[str, Any]:
    """Pre-train ``encoder`` with ``objective`` on clips ``features[i]`` ([T_i, F]) and their targets.

    ``targets`` is a tensor with one row per clip (the objective reads ``batch["targets"]``),
    or named per-clip fields (see :func:`collate_targets`), e.g. ``{"tokens": [ids, ...]}``.

    Runs on CUDA with bf16 autocast when available, else on CPU in fp32. Checkpoints
    ``out_dir/train_state.pt`` every ``config.checkpoint_every`` steps and at the end, and
    resumes from it when present (the config must then match, except checkpoint_every,
    num_threads and log_every). Each step's loss, lr, gradient norm, throughput and the
    objective's metrics go to ``out_dir/train_log.csv``, one row per 0-based step.
    ``sampler`` replaces the default :class:`EpochShuffleSampler` (the seam for duration
    bucketing). Launched as several processes (torchrun, or submitit's distributed
    environment), the ranks join one process group (:func:`init_distributed`), start from
    rank 0's weights, each take their share ``batch[rank::world]`` of every batch, and add
    up their gradients once per step (:func:`accumulate_gradients`: the whole batch's
    gradients, as one process would get); rank 0 writes the log and the checkpoints. After
    every optimizer step the objective's ``after_optimizer_step()``, if it has one, runs
    (the contrastive objective clamps its learned logit scale there).

    Raises FloatingPointError naming the step when the loss or gradient norm is not finite.

    Returns ``{"final_loss", "steps", "resumed_from", "seconds", "clips_per_s", "device"}``,
    where seconds and clips/s cover this call only.
    """
    targets = as_target_fields(targets)
    _check_config(config, len(features), targets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    rank, world = init_distributed()

    net = _Net(encoder, objective).to(device)
    specaug = SpecAugment(**config.specaugment) if config.specaugment is not None else None
    spec = dict(config.optimizer or {"name": "adamw"})
    optimization = build_optimization(spec.pop("name"), net, lr=config.lr, weight_decay=config.weight_decay,
                                      steps=config.steps, warmup_steps=config.warmup, **spec)
    optimizer, scheduler = optimization.optimizer, optimization.scheduler
    if sampler is None and config.max_duration is not None:
        sampler = DurationBucketSampler([len(f) / FRAMES_PER_SECOND for f in features], config.max_duration,
                                        config.seed, config.num_buckets)
    sampler = sampler or EpochShuffleSampler(len(features), config.batch_size, config.seed)
    log = TrainLog(out_dir / LOG_FILE)
    state_path = out_dir / STATE_FILE

    average = EncoderAverage(encoder, config.average_period) if config.average_period else None
    if state_path.exists():
        start = _load_state(state_path, config, net, optimizer, scheduler, average)
    else:
        start = 0
        _seed_everything(config.seed)
    _broadcast_from_rank0(net)
    if rank == 0:
        log.truncate(start)

    net.train()
    after_step = _is_method(objective, "after_optimizer_step")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clip = math.inf if config.grad_clip is None or optimization.clips_gradients else config.grad_clip
    optimizer.zero_grad(set_to_none=True)
    clips_done, began = 0, time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or rank != 0) as bar:
        task = bar.add_task("pre-training", total=config.steps, completed=start)
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            indices = list(sampler.batch(step))
            lr = optimizer.param_groups[0]["lr"]
            encoder.set_batch_count(step)  # step-scheduled encoders (Zipformer's dropout, layer skipping)
            means = accumulate_gradients(net, features, targets, indices, config.grad_accum, device, step,
                                         config.seed, specaug)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).item()
            if not math.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient norm {grad_norm} at step {step}")
            optimizer.step()
            if after_step:
                objective.after_optimizer_step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if average is not None:
                average.update(encoder, step + 1)
            seconds = time.perf_counter() - t0
            local = len(indices[rank::world])
            clips_done += local
            loss = means.pop("loss")
            if rank == 0:
                throughput = local / seconds
                log.append({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "clips_per_s": throughput, **means})
            if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                _save_state(state_path, step + 1, config, net, optimizer, scheduler, average)
            bar.advance(task)
            if step % config.log_every == 0 or step + 1 == config.steps:
                bar.update(task, description=f"pre-training loss {loss:.4f} lr {lr:.2e}")

    if average is not None:  # the run's encoder is the average (the checkpoint keeps the last weights)
        average.apply(encoder)
    elapsed = time.perf_counter() - began
    rows = log.rows()
    return {
        "final_loss": float(rows[-1]["loss"]) if rows else float("nan"),
        "steps": config.steps,
        "resumed_from": start,
        "seconds": elapsed,
        "clips_per_s": clips_done / elapsed if clips_done else 0.0,
        "device": str(device),
    }
