"""Trainer: learning, exact resume, non-finite detection, the CSV log and the lr schedule."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from encoders import build_encoder
from encoders.objectives.mtc import MTC
from encoders.trainer import EpochShuffleSampler, TrainConfig, train

NUM_TAGS = 4


@pytest.fixture(autouse=True)
def _restore_threads():
    """train() sets the process-wide thread count; give it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _problem(n: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Clips whose spectra encode their tags: tag k raises mel bins [20k, 20k + 12) by 4."""
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, NUM_TAGS, generator=g) < 0.4).float()
    feats = []
    for i in range(n):
        length = int(torch.randint(60, 101, (1,), generator=g))
        x = torch.randn(length, 80, generator=g) - 8.0
        for k in range(NUM_TAGS):
            if targets[i, k]:
                x[:, 20 * k : 20 * k + 12] += 4.0
        feats.append(x)
    return feats, targets


def _models(seed: int = 0, dropout: float = 0.1, objective_cls: type = MTC, **objective_kwargs):
    torch.manual_seed(seed)
    encoder = build_encoder("transformer", dropout=dropout)
    return encoder, objective_cls(encoder.dim, NUM_TAGS, dropout=dropout, **objective_kwargs)


def _log(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "train_log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


class CrashingMTC(MTC):
    """MTC that raises on its ``crash_at``-th call (0-based), as if the job were killed."""

    def __init__(self, *args, crash_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.crash_at = 0, crash_at

    def forward(self, batch, frames, lengths, totals=None):
        if self.calls == self.crash_at:
            raise RuntimeError("simulated kill")
        self.calls += 1
        return super().forward(batch, frames, lengths, totals)


def test_loss_decreases_on_learnable_problem(tmp_path: Path) -> None:
    feats, targets = _problem(32)
    encoder, objective = _models(dropout=0.0)
    config = TrainConfig(steps=30, batch_size=8, lr=1e-3, warmup_steps=3, specaugment=None, num_threads=1)
    summary = train(encoder, objective, feats, targets, config, tmp_path, progress=False)
    losses = [float(r["loss"]) for r in _log(tmp_path)]
    assert len(losses) == 30 and summary["steps"] == 30 and summary["device"] == "cpu"
    assert summary["final_loss"] == losses[-1]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    assert summary["clips_per_s"] > 0 and summary["seconds"] > 0


@pytest.mark.parametrize("grad_accum, max_duration, optimizer", [
    (1, None, None), (2, None, None), (2, 3.2, None),
    (1, None, {"name": "scaled_adam", "warmup_batches": 2, "lr_batches": 4}),  # its own state and schedule
])
def test_resume_is_exact(tmp_path: Path, grad_accum: int, max_duration: float | None,
                         optimizer: dict | None) -> None:
    feats, targets = _problem(10)
    config = TrainConfig(
        steps=7, batch_size=6, lr=2e-3, warmup_steps=2, checkpoint_every=3,
        grad_accum=grad_accum, specaugment={}, num_threads=1, seed=5, max_duration=max_duration, num_buckets=2,
        optimizer=optimizer,
    )  # dropout and SpecAugment on, so the RNG states matter; batches straddle epochs (or buckets vary)

    encoder, objective = _models()
    train(encoder, objective, feats, targets, config, tmp_path / "a", progress=False)

    crashed_dir = tmp_path / "b"
    encoder_b, crashing = _models(objective_cls=CrashingMTC, crash_at=5 * grad_accum)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(encoder_b, crashing, feats, targets, config, crashed_dir, progress=False)
    assert [int(r["step"]) for r in _log(crashed_dir)] == [0, 1, 2, 3, 4]  # steps 3-4 are redone

    encoder_c, objective_c = _models(seed=123)  # other weights: all must come from the checkpoint
    summary = train(encoder_c, objective_c, feats, targets, config, crashed_dir, progress=False)
    assert summary["resumed_from"] == 3

    full, resumed = _log(tmp_path / "a"), _log(crashed_dir)
    assert [int(r["step"]) for r in resumed] == list(range(7))
    for a, b in zip(full, resumed):
        for column in ("loss", "lr", "grad_norm", "pos_logit", "neg_logit", "precision_at_1"):
            x, y = float(a[column]), float(b[column])
            assert x == y or (math.isnan(x) and math.isnan(y)), (a["step"], column)  # nan: no positive in a batch
    for module_a, module_c in ((encoder, encoder_c), (objective, objective_c)):
        for (name, pa), pc in zip(module_a.state_dict().items(), module_c.state_dict().values()):
            assert torch.equal(pa, pc), name

    # A finished run resumes to "nothing left"; other settings are refused.
    again = train(encoder_c, objective_c, feats, targets, config, crashed_dir, progress=False)
    assert again["resumed_from"] == 7 and again["final_loss"] == float(full[-1]["loss"])
    other = TrainConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(ValueError, match="lr"):
        train(encoder_c, objective_c, feats, targets, other, crashed_dir, progress=False)


def _par(encoder_dim: int, n: int):
    """PAR (half the samples in parallel) over tag sequences of 1 to 4 tags: a token loss."""
    from encoders.objectives.par import PAR
    from encoders.objectives.supervision import Supervision

    words = ["dog", "rain", "violin", "speech", "engine", "bird"]
    sequences = [", ".join(words[(i + j) % len(words)] for j in range(1 + i % 4)) for i in range(n)]
    return PAR.from_supervision(encoder_dim, Supervision(num_clips=n, tag_sequences=sequences), parallel_fraction=0.5,
                                layers=1, dim=32, heads=4, ffn_dim=64, dropout=0.0, vocab="targets")


@pytest.mark.parametrize("objective_name", ["mtc", "par"])
def test_grad_accum_splits_the_same_batch(tmp_path: Path, objective_name: str) -> None:
    """Accumulation changes neither the data nor the loss: the same logged losses and final
    weights with 1, 2 or 3 micro-batches (PAR: over the whole batch's tokens, in the same
    per-clip decoding modes)."""
    feats, targets = _problem(12)
    weights = []
    losses = []
    for accum in (1, 2, 3):
        encoder, objective = _models(dropout=0.0)
        if objective_name == "par":
            torch.manual_seed(1)
            objective, targets = _par(encoder.dim, len(feats))
        config = TrainConfig(steps=3, batch_size=6, grad_accum=accum, specaugment=None, num_threads=1)
        train(encoder, objective, feats, targets, config, tmp_path / str(accum), progress=False)
        losses.append([float(r["loss"]) for r in _log(tmp_path / str(accum))])
        weights.append(torch.cat([p.flatten() for p in encoder.parameters()]))
    for other in (1, 2):
        assert losses[other] == pytest.approx(losses[0], abs=1e-5)
        torch.testing.assert_close(weights[other], weights[0], atol=1e-5, rtol=0)


def test_non_finite_loss_names_the_step(tmp_path: Path) -> None:
    feats, targets = _problem(12)
    sampler = EpochShuffleSampler(12, 4, seed=0)
    bad = sampler.batch(1)[2]  # first seen at step 1: epoch 0 is a permutation
    assert bad not in sampler.batch(0)
    feats[bad] = feats[bad].clone()
    feats[bad][5, 3] = float("nan")
    encoder, objective = _models()
    config = TrainConfig(steps=5, batch_size=4, specaugment=None, num_threads=1)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 1$"):
        train(encoder, objective, feats, targets, config, tmp_path, progress=False)


def test_lr_schedule_is_warmup_then_cosine(tmp_path: Path) -> None:
    feats, targets = _problem(4)
    encoder, objective = _models()
    peak, warmup, steps = 2e-3, 3, 10
    config = TrainConfig(steps=steps, batch_size=2, lr=peak, warmup_steps=warmup, specaugment=None, num_threads=1)
    train(encoder, objective, feats, targets, config, tmp_path, progress=False)
    logged = [float(r["lr"]) for r in _log(tmp_path)]
    expected = [
        peak * (s + 1) / warmup if s < warmup
        else peak * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
        for s in range(steps)
    ]
    assert logged == pytest.approx(expected, rel=1e-12)
    assert TrainConfig(steps=1000, batch_size=1).warmup == 50


def test_sampler_batches_depend_on_seed_and_step_only() -> None:
    a, b = EpochShuffleSampler(10, 4, seed=1), EpochShuffleSampler(10, 4, seed=1)
    stream = [i for s in range(10) for i in a.batch(s)]  # 40 positions = 4 epochs
    for epoch in range(4):
        assert sorted(stream[10 * epoch : 10 * epoch + 10]) == list(range(10))
    assert [b.batch(s) for s in (7, 2, 9)] == [a.batch(s) for s in (7, 2, 9)]  # any order
    assert stream[:10] != stream[10:20]
    assert EpochShuffleSampler(10, 4, seed=2).batch(0) != a.batch(0)


def test_duration_buckets_cover_every_clip_within_the_budget() -> None:
    import numpy as np

    from encoders.trainer import DurationBucketSampler

    durations = np.random.default_rng(0).uniform(1.0, 10.0, size=300).tolist()
    sampler = DurationBucketSampler(durations, max_duration=40.0, seed=3, num_buckets=5)
    step, epochs = 0, []
    for _ in range(2):  # two epochs, each a permutation of all clips in duration-homogeneous batches
        seen: list[int] = []
        while len(seen) < 300:
            batch = sampler.batch(step)
            assert sum(durations[i] for i in batch) <= 40.0
            seen += batch
            step += 1
        assert sorted(seen) == list(range(300))
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    again = DurationBucketSampler(durations, max_duration=40.0, seed=3, num_buckets=5)
    assert [again.batch(s) for s in (17, 3, 40)] == [sampler.batch(s) for s in (17, 3, 40)]  # any order
    assert DurationBucketSampler(durations, 40.0, seed=4, num_buckets=5).batch(0) != sampler.batch(0)
    spread = [np.ptp([durations[i] for i in sampler.batch(s)]) for s in range(20)]
    assert np.median(spread) < 3.0  # buckets: batches of similar duration (the full range is 9 s)
    with pytest.raises(ValueError, match="longest clip"):
        DurationBucketSampler(durations, max_duration=5.0, seed=0)


def _shard_problem(folder: Path):
    """12 generated clips in Shar shards under ``folder/shards`` (written by the test), streamed
    by a ShardFeed (2 worker processes), with random tag targets: (feed, targets, sampler)."""
    from harness.sources.shards import ShardFeed

    ids = sorted(c.name.split(".")[0] for c in (folder / "clips").glob("*.wav"))
    feed = ShardFeed(folder / "shards", {clip: row for row, clip in enumerate(ids)}, batch_size=8, seed=5,
                     workers=2, buffer=4, prefetch=2)
    targets = (torch.rand(len(ids), NUM_TAGS, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    return feed, targets, feed


@pytest.mark.parametrize("data", ["memory", "shards"])
def test_ddp_on_two_cpu_processes(tmp_path: Path, data: str) -> None:
    """torchrun, 2 processes, gloo: each rank trains on half of every batch; the gradients are
    averaged, so the run matches one process training on whole batches. Streamed from shards,
    each rank decodes only its half (tests/test_shards.py checks which clips) and the run
    still matches."""
    import os
    import subprocess
    import sys

    if data == "shards":
        from test_shards import _cuts

        from harness.sources.shards import write_shards

        (tmp_path / "clips").mkdir()
        write_shards(_cuts(tmp_path / "clips", n=12), tmp_path / "shards", shard_size=3)
    worker = Path(__file__).resolve().parent / "ddp_train_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), str(tmp_path), data], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    feats, targets, sampler = _shard_problem(tmp_path) if data == "shards" else (*_problem(12), None)
    encoder, objective = _models(dropout=0.0)
    config = TrainConfig(steps=5, batch_size=8, lr=2e-3, warmup_steps=1, specaugment=None, num_threads=1, seed=3)
    train(encoder, objective, feats, targets, config, tmp_path / "single", progress=False, sampler=sampler)
    ddp = torch.load(tmp_path / "weights.pt", weights_only=True)
    for name, value in encoder.state_dict().items():  # AdamW turns rounding-level gradient differences into
        torch.testing.assert_close(ddp[name], value, atol=5e-5, rtol=1e-4, msg=name)  # up to ~3e-5 in 5 steps
    single, parallel = _log(tmp_path / "single"), _log(tmp_path / "ddp")
    assert len(parallel) == 5  # rank 0 alone writes the log
    for a, b in zip(single, parallel):  # the logged loss is the mean over both ranks' halves
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4)


def test_encoder_average_follows_the_authors_update_rule_and_resumes(tmp_path: Path) -> None:
    """Every `period` steps avg <- avg (1 - period/n) + w (period/n): after n = k·period steps
    the average is the plain mean of the weights at steps period, 2·period, ..., n. The run's
    encoder is that average, also after a resume."""
    from encoders.trainer import EncoderAverage

    module = torch.nn.Linear(3, 2)
    average = EncoderAverage(module, period=2)
    seen = []
    for n in range(1, 9):
        with torch.no_grad():
            module.weight.add_(float(n))
        average.update(module, n)
        if n % 2 == 0:
            seen.append(module.weight.detach().double().clone())
    assert torch.allclose(average.state["weight"], torch.stack(seen).mean(0))

    feats, targets = _problem(10)
    config = TrainConfig(steps=6, batch_size=6, lr=2e-3, warmup_steps=2, checkpoint_every=3, specaugment=None,
                         num_threads=1, seed=5, average_period=2)
    encoder, objective = _models()
    train(encoder, objective, feats, targets, config, tmp_path / "a", progress=False)
    crashed = tmp_path / "b"
    encoder_b, crashing = _models(objective_cls=CrashingMTC, crash_at=4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(encoder_b, crashing, feats, targets, config, crashed, progress=False)
    encoder_c, objective_c = _models(seed=123)
    train(encoder_c, objective_c, feats, targets, config, crashed, progress=False)
    for (name, a), c in zip(encoder.state_dict().items(), encoder_c.state_dict().values()):
        assert torch.equal(a, c), name
    last = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)["encoder"]
    assert any(not torch.equal(last[k], v) for k, v in encoder.state_dict().items() if v.is_floating_point())
