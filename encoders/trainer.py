"""Pre-training loop: AdamW, warmup + cosine, bf16 on CUDA, exact resume from ``train_state.pt``.

The batch at step s is a function of (seed, s) only (see :class:`EpochShuffleSampler`), and
every checkpoint carries the model, objective, optimizer, scheduler and all RNG states, so a
run killed at any point and started again with the same arguments logs the same per-step
losses and ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
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
from encoders.specaug import SpecAugment

STATE_FILE = "train_state.pt"
FRAMES_PER_SECOND = 100  # input features: 10 ms fbank frames
LOG_FILE = "train_log.csv"
# Fields of TrainConfig that may change between a run and its resumption.
_RESUMABLE_FIELDS = {"checkpoint_every", "num_threads", "log_every"}


@dataclass
class TrainConfig:
    """Optimisation settings of one pre-training run.

    ``batch_size`` clips make one optimizer step, split into ``grad_accum`` equal
    micro-batches (so ``grad_accum`` trades memory for time without changing the data).
    With ``max_duration`` set, batches are instead buckets of similar duration holding at
    most that many seconds of audio (:class:`DurationBucketSampler`).
    ``warmup_steps=None`` warms up over the first 5% of the steps. ``specaugment`` holds the
    :class:`~encoders.specaug.SpecAugment` keywords (``{}``: its defaults; ``None``: off).
    ``grad_clip=None`` disables clipping (the gradient norm is still logged).
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

    @property
    def warmup(self) -> int:
        """Effective number of warmup steps."""
        return self.steps // 20 if self.warmup_steps is None else self.warmup_steps


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Multiplier of the peak lr at (0-based) ``step``: linear warmup, then cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


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


def collate_targets(fields: Mapping[str, Any], indices: Sequence[int], device: torch.device) -> dict[str, Tensor]:
    """The batch's targets: tensor fields are indexed; fields that are lists of 1-D tensors
    (token ids of varying length) are zero-padded to [B, L] and come with ``<name>_lengths``."""
    batch: dict[str, Tensor] = {}
    for name, value in fields.items():
        if isinstance(value, Tensor):
            batch[name] = value[list(indices)].to(device, non_blocking=True)
        else:
            seqs = [value[i] for i in indices]
            batch[name] = pad_sequence(seqs, batch_first=True).to(device, non_blocking=True)
            batch[f"{name}_lengths"] = torch.tensor([len(t) for t in seqs]).to(device)
    return batch


class _Net(nn.Module):
    """Encoder followed by the objective, as one module so that DDP can wrap both."""

    def __init__(self, encoder: Encoder, objective: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.objective = objective

    def forward(self, feats: Tensor, lengths: Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        frames, out_lengths = self.encoder(feats, lengths)
        return self.objective(batch, frames, out_lengths)


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


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and conv kernels only, not on biases and norm gains."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


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


def _mean_over_ranks(values: dict[str, float], device: torch.device, world: int) -> dict[str, float]:
    """The logged loss and metrics averaged over all ranks (each saw its share of the batch)."""
    if world == 1 or not values:
        return values
    names = sorted(values)
    t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(names, (t / world).tolist()))


def _save_state(
    path: Path, step: int, config: TrainConfig, net: _Net, optimizer: torch.optim.Optimizer, scheduler: Any
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
        },
        path,
    )


def _load_state(
    path: Path, config: TrainConfig, net: _Net, optimizer: torch.optim.Optimizer, scheduler: Any
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


def _accumulate_gradients(
    net: nn.Module,
    specaug: SpecAugment | None,
    features: Sequence[Tensor],
    targets: Mapping[str, Any],
    indices: Sequence[int],
    grad_accum: int,
    device: torch.device,
    step: int,
) -> dict[str, float]:
    """Forward and backward ``indices`` in ``grad_accum`` equal micro-batches; mean outputs.

    Gradients are scaled so that they sum to those of the whole batch's mean loss.
    """
    chunks = [list(c) for c in np.array_split(np.asarray(indices), min(grad_accum, len(indices)))]
    equal = len({len(c) for c in chunks}) == 1
    sums: dict[str, float] = {}
    for chunk in chunks:
        feats, lengths = collate(features, chunk)
        feats, lengths = feats.to(device, non_blocking=True), lengths.to(device)
        if specaug is not None:
            feats = specaug(feats, lengths)
        batch = collate_targets(targets, chunk, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(feats, lengths, batch)
        loss = out.pop("loss")
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"non-finite loss {loss_value} at step {step}")
        weight = 1.0 / len(chunks) if equal else len(chunk) / len(indices)
        (loss / len(chunks) if equal else loss * weight).backward()
        for name, value in {"loss": loss_value, **out}.items():
            sums[name] = sums.get(name, 0.0) + weight * float(value)
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
    environment), the ranks join one process group (:func:`init_distributed`), the model is
    wrapped in DDP, each rank takes its share ``batch[rank::world]`` of every batch, and
    rank 0 writes the log and the checkpoints.

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

    net: nn.Module = _Net(encoder, objective).to(device)
    raw_net = net
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    specaug = SpecAugment(**config.specaugment) if config.specaugment is not None else None
    optimizer = torch.optim.AdamW(_param_groups(raw_net, config.weight_decay), lr=config.lr)
    warmup = config.warmup
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, config.steps))
    if sampler is None and config.max_duration is not None:
        sampler = DurationBucketSampler([len(f) / FRAMES_PER_SECOND for f in features], config.max_duration,
                                        config.seed, config.num_buckets)
    sampler = sampler or EpochShuffleSampler(len(features), config.batch_size, config.seed)
    log = TrainLog(out_dir / LOG_FILE)
    state_path = out_dir / STATE_FILE

    if state_path.exists():
        start = _load_state(state_path, config, raw_net, optimizer, scheduler)
    else:
        start = 0
        _seed_everything(config.seed)
    if rank == 0:
        log.truncate(start)

    net.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clip = config.grad_clip if config.grad_clip is not None else math.inf
    optimizer.zero_grad(set_to_none=True)
    clips_done, began = 0, time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or rank != 0) as bar:
        task = bar.add_task("pre-training", total=config.steps, completed=start)
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            indices = list(sampler.batch(step))[rank::world]
            lr = optimizer.param_groups[0]["lr"]
            means = _accumulate_gradients(net, specaug, features, targets, indices, config.grad_accum, device, step)
            means = _mean_over_ranks(means, device, world)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).item()
            if not math.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient norm {grad_norm} at step {step}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            seconds = time.perf_counter() - t0
            clips_done += len(indices)
            loss = means.pop("loss")
            if rank == 0:
                throughput = len(indices) / seconds
                log.append({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "clips_per_s": throughput, **means})
            if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                _save_state(state_path, step + 1, config, raw_net, optimizer, scheduler)
            bar.advance(task)
            if step % config.log_every == 0 or step + 1 == config.steps:
                bar.update(task, description=f"pre-training loss {loss:.4f} lr {lr:.2e}")

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
