"""Data loading from shards: decode + fbank throughput per worker, against a training step, and peak memory.

Writes ``--clips`` synthetic clips (``--seconds`` each, 16 kHz) as Lhotse Shar shards of
``--shard-size`` clips (FLAC in tar files, ``harness.sources.shards``), then streams them
through a ``DataLoader`` (``--workers`` processes, ``--prefetch`` batches of
``--batch-size`` each): every clip is decoded from its tar and turned into 80-bin Kaldi
fbank, as pre-training does. By default the pool is 20 times the loader's buffer
(workers × prefetch × batch size clips), so a loader that held the pool would show it in
its peak RSS. Then it times a training step of the encoder on a batch of the same shape
(forward, backward, AdamW; MTC head), and says how many workers keep that step fed.

    python benchmarks/bench_data_loading.py                      # CPU, tiny encoder, 2 workers
    python benchmarks/bench_data_loading.py --workers 8 --size base --device cuda
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def make_pool(folder: Path, clips: int, seconds: float, shard_size: int) -> dict:
    import numpy as np
    import soundfile as sf
    from lhotse import Recording

    from harness.sources.shards import write_shards

    wavs = folder / "wav"
    wavs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000

    def cuts():
        for i in range(clips):
            audio = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(n)
            path = wavs / f"clip{i:06d}.wav"
            sf.write(path, audio.astype(np.float32), 16000)
            yield Recording.from_file(path, recording_id=f"clip{i:06d}").to_cut()

    index = write_shards(cuts(), folder / "shards", shard_size=shard_size)
    shutil.rmtree(wavs)
    return index


def stream(shards: Path, workers: int, batch_size: int, prefetch: int) -> tuple[int, float, int]:
    from torch.utils.data import DataLoader

    from harness.sources.shards import ShardFeatures, collate_ids_and_features

    loader = DataLoader(ShardFeatures(shards), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_ids_and_features,
                        **({"prefetch_factor": prefetch} if workers else {}))
    seen, frames = 0, 0
    start = time.perf_counter()
    for ids, feats, lengths in loader:
        seen += len(ids)
        frames = max(frames, int(feats.shape[1]))
    return seen, time.perf_counter() - start, frames


def step_time(size: str, batch_size: int, frames: int, device: str, steps: int) -> float:
    import torch

    from encoders import build_encoder
    from encoders.objectives import from_supervision
    from encoders.objectives.supervision import Supervision

    torch.manual_seed(0)
    encoder = build_encoder("transformer", size=size).to(device)
    sup = Supervision(num_clips=batch_size, tag_targets=(torch.rand(batch_size, 64) < 0.2).float(),
                      tag_names=[f"t{i}" for i in range(64)])
    objective, targets = from_supervision("mtc", encoder.dim, sup)
    objective = objective.to(device)
    params = list(encoder.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    feats = torch.randn(batch_size, frames, 80, device=device)
    lengths = torch.full((batch_size,), frames, device=device)
    batch = {"targets": targets["targets"].to(device)}
    times = []
    for i in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out, out_lengths = encoder(feats, lengths)
        loss = objective(batch, out, out_lengths)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prefetch", type=int, default=2, help="batches each worker prepares ahead")
    ap.add_argument("--clips", type=int, default=None, help="default: 20 x the loader's buffer")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--size", default="tiny", help="encoder size for the step time")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the shards (default: a temporary folder)")
    args = ap.parse_args()

    buffer = max(1, args.workers) * args.prefetch * args.batch_size
    clips = args.clips or 20 * buffer
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-shards-"))
    started = time.perf_counter()
    index = make_pool(folder, clips, args.seconds, args.shard_size)
    wrote = time.perf_counter() - started
    shard_bytes = sum(p.stat().st_size for p in (folder / "shards").iterdir())
    decoded_mib = clips * args.seconds * 16000 * 4 / 2**20
    print(f"pool: {index['num_clips']} clips x {args.seconds:g} s in {len(index['fields']['cuts'])} shards "
          f"({shard_bytes / 2**20:.1f} MiB FLAC; {decoded_mib:.0f} MiB decoded), written in {wrote:.1f} s")
    print(f"loader: {args.workers} workers x prefetch {args.prefetch} x batch {args.batch_size} = "
          f"a buffer of {buffer} clips; the pool is {clips / buffer:.1f} x that")

    rss_before = rss_mib()
    seen, seconds, frames = stream(folder / "shards", args.workers, args.batch_size, args.prefetch)
    rate = seen / seconds
    per_worker = rate / max(1, args.workers)
    peak_main, peak_worker = rss_mib(), rss_mib(resource.RUSAGE_CHILDREN)
    print(f"streamed {seen} clips in {seconds:.1f} s: {rate:.1f} clips/s, {per_worker:.1f} clips/s per worker "
          "(decode FLAC from tar + 80-bin fbank)")
    print(f"peak RSS: main process {peak_main:.0f} MiB (before streaming {rss_before:.0f} MiB), "
          f"largest worker {peak_worker:.0f} MiB; the decoded pool would be {decoded_mib:.0f} MiB")

    step = step_time(args.size, args.batch_size, frames, args.device, args.steps)
    need = args.batch_size / step
    print(f"train step ({args.size} transformer + MTC, batch {args.batch_size} x {frames} frames, {args.device}): "
          f"{step * 1000:.0f} ms = {need:.1f} clips/s consumed")
    workers_needed = math.ceil(need / per_worker) if per_worker else float("inf")
    verdict = "keeps up" if rate >= need else "starves the step"
    print(f"-> the loader {verdict}: {workers_needed} worker(s) at {per_worker:.1f} clips/s each feed this step")
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
