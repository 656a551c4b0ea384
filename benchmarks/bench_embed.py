"""Embedding extraction throughput (clips/s): decode + fbank, then the frozen encoder's forward.

Writes ``--clips`` synthetic WAV clips (``--seconds`` each, 16 kHz) and a Lhotse manifest,
then times the two halves of the embed stage as it runs them
(``harness.stages.embed.decode_features`` and ``probes.embed.extract_embeddings``):

- **decode + fbank**: read each file, 80-bin Kaldi fbank (one process; cached by content
  after the first extraction of a task, so a second encoder on the same task skips it);
- **encoder forward**: batches of ``--batch-size`` clips, sorted by length, under
  ``no_grad`` (bf16 autocast on CUDA), frames stored as float16.

Prints the median of ``--repeats`` runs of each, in clips/s and in seconds of audio per
second.

    python benchmarks/bench_embed.py                               # CPU, tiny and small encoders
    python benchmarks/bench_embed.py --sizes base --device cuda --clips 2048
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def make_manifest(folder: Path, clips: int, seconds: float) -> Path:
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording

    rng = np.random.default_rng(0)
    cuts = []
    for i in range(clips):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * (i % 20)) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, wave.astype(np.float32), 16000)
        cuts.append(Recording.from_file(path, recording_id=f"clip{i:05d}").to_cut())
    manifest = folder / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(manifest)
    return manifest


def median_time(repeats: int, fn) -> tuple[float, object]:
    import torch

    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], help="transformer sizes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from encoders import build_encoder
    from harness import components
    from harness.stages.embed import decode_features
    from probes.embed import extract_embeddings

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    audio_s = args.clips * args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_manifest(Path(tmp), args.clips, args.seconds)
        decode_s, (ids, feats, skipped) = median_time(
            args.repeats, lambda: decode_features(manifest, components.FEATURES, log=lambda m: None))
    assert len(ids) == args.clips and not skipped
    print(f"device={device} threads={torch.get_num_threads()} clips={args.clips} seconds={args.seconds} "
          f"batch={args.batch_size} repeats={args.repeats}")
    print(f"decode + fbank        : {args.clips / decode_s:8.1f} clips/s  ({audio_s / decode_s:8.0f} s of audio/s)")
    for size in args.sizes:
        torch.manual_seed(0)
        encoder = build_encoder("transformer", size=size)
        n_params = sum(p.numel() for p in encoder.parameters())
        extract_embeddings(encoder, feats[: args.batch_size], batch_size=args.batch_size, device=device,
                           progress=False)  # warm-up (allocator, kernels)
        forward_s, embeddings = median_time(args.repeats, lambda: extract_embeddings(
            encoder, feats, batch_size=args.batch_size, device=device, progress=False))
        total = forward_s + decode_s
        print(f"encoder {size:<6} ({n_params / 1e6:5.1f} M): {args.clips / forward_s:8.1f} clips/s forward, "
              f"{args.clips / total:8.1f} clips/s with decoding  (dim {embeddings[0].shape[1]}, "
              f"{embeddings[0].shape[0]} frames per clip)")


if __name__ == "__main__":
    main()
