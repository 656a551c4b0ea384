"""Cost of a probe sweep as the number of heads grows: 1 head versus a 4 lr x 4 weight-decay grid.

All heads of a sweep train together on one pass over the cached features, so the
16-head sweep should cost well under 2x the single head. Prints the median wall time of
``--repeats`` runs of each and their ratio.

    python benchmarks/bench_probe_sweep.py [--device cuda] [--pooling attention] [--threads 1]

On a CPU the 16-head sweep does 16x the head's matrix products, so the ratio is bounded
below by what the shared work (pooling, batching, evaluation) saves; on a busy machine
pass ``--threads 1``: an oversubscribed torch thread pool makes every sweep several times
slower. Measured on the 2-core dev machine under load, defaults, ``--threads 1``, median
of 5 (same process, interleaved): before the single-product forward and the in-place
Adam step 1 head 1.30 s, 16 heads 6.32 s (4.9x); after, 1.28 s and 5.85 s (4.6x); the
sweep's results are bit-for-bit unchanged. With the default 2 threads under the same
load: 1 head 7.0 s, 16 heads 40.1 s (5.7x) before the change.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from probes.heads import probe_sweep


def synthetic_split(n: int, frames: int, dim: int, n_classes: int, rng: np.random.Generator):
    """``n`` items of ``frames`` float16 frames around one of ``n_classes`` random centers."""
    centers = rng.standard_normal((n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    noise = 4.0 * rng.standard_normal((n, frames, dim), dtype=np.float32)
    return list((centers[labels, None] + noise).astype(np.float16)), labels


def median_time(repeats: int, **sweep) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        probe_sweep(**sweep)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-eval", type=int, default=1000, help="items in each of valid and test")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    shape = dict(frames=args.frames, dim=args.dim, n_classes=args.classes, rng=rng)
    splits = dict(
        train=synthetic_split(args.n_train, **shape),
        valid=synthetic_split(args.n_eval, **shape),
        test=synthetic_split(args.n_eval, **shape),
    )
    common = dict(
        kind="multiclass", poolings=(args.pooling,), epochs=args.epochs, batch_size=args.batch_size, device=args.device, **splits
    )
    one = median_time(args.repeats, lrs=(1e-2,), weight_decays=(1e-3,), **common)
    sixteen = median_time(args.repeats, lrs=(1e-3, 3e-3, 1e-2, 3e-2), weight_decays=(0.0, 1e-3, 1e-2, 1e-1), **common)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device={device} threads={torch.get_num_threads()} n_train={args.n_train} frames={args.frames} "
        f"dim={args.dim} classes={args.classes} epochs={args.epochs} batch={args.batch_size} "
        f"pooling={args.pooling} repeats={args.repeats}"
    )
    print(f" 1 head : {one:8.3f} s (median)")
    print(f"16 heads: {sixteen:8.3f} s (median)")
    print(f"ratio   : {sixteen / one:8.2f}x  (16 separate single-head sweeps: 16x; one sweep is {16 * one / sixteen:.1f}x faster)")


if __name__ == "__main__":
    main()
