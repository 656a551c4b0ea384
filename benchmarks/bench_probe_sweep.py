"""Cost of a probe sweep as the number of heads grows: 1 head versus a 4 lr x 4 weight-decay grid.

All heads of a sweep train together on one pass over the cached features, so the
16-head sweep should cost well under 2x the single head. Prints the median wall time of
``--repeats`` runs of each and their ratio.

    python benchmarks/bench_probe_sweep.py [--device cuda] [--pooling attention] [--threads 1]

The two are timed alternately, and the ratio is the median of the per-pair ratios, so
that the load of a shared machine hits both alike. On a CPU the 16 heads' matrix products
and Adam updates are 16 times one head's; the sweep saves the rest (pooling, batching,
evaluation, per-step overhead), so the ratio grows with the feature dimension and the
number of classes. bf16 (``--precision auto`` on a CPU with AMX-BF16, or a GPU) runs the
products on the bf16 units. README.md ("Speed") has the figures measured on the
development machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from probes.heads import probe_sweep, use_bf16


def synthetic_split(n: int, frames: int, centers: np.ndarray, rng: np.random.Generator):
    """``n`` items of ``frames`` float16 frames around one of the class ``centers`` (shared by the splits)."""
    labels = rng.integers(0, len(centers), n)
    noise = 4.0 * rng.standard_normal((n, frames, centers.shape[1]), dtype=np.float32)
    return list((centers[labels, None] + noise).astype(np.float16)), labels


def timed(**sweep):
    start = time.perf_counter()
    result = probe_sweep(**sweep)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def interleaved(repeats: int, one: dict, sixteen: dict):
    """Median times of the two sweeps, run alternately (a load change on a shared machine hits
    both alike), the median of the per-pair ratios, and the last results."""
    pairs = [(timed(**one), timed(**sixteen)) for _ in range(repeats)]
    t1, t16 = [a[0] for a, _ in pairs], [b[0] for _, b in pairs]
    ratio = statistics.median(b / a for a, b in zip(t1, t16))
    return statistics.median(t1), statistics.median(t16), ratio, pairs[-1][0][1], pairs[-1][1][1]


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
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"],
                        help="probe_sweep precisions to time (auto: bf16 on AMX-BF16 CPUs and GPUs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    centers = 0.12 * rng.standard_normal((args.classes, args.dim)).astype(np.float32)
    shape = dict(frames=args.frames, centers=centers, rng=rng)
    splits = dict(
        train=synthetic_split(args.n_train, **shape),
        valid=synthetic_split(args.n_eval, **shape),
        test=synthetic_split(args.n_eval, **shape),
    )
    common = dict(kind="multiclass", poolings=(args.pooling,), epochs=args.epochs, batch_size=args.batch_size,
                  device=args.device, **splits)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(
        f"device={device} threads={torch.get_num_threads()} n_train={args.n_train} frames={args.frames} "
        f"dim={args.dim} classes={args.classes} epochs={args.epochs} batch={args.batch_size} "
        f"pooling={args.pooling} repeats={args.repeats}"
    )
    grid = dict(lrs=(1e-3, 3e-3, 1e-2, 3e-2), weight_decays=(0.0, 1e-3, 1e-2, 1e-1))
    for precision in args.precision:
        used = "bf16" if use_bf16(precision, device) else "fp32"
        one, sixteen, ratio, result_one, result = interleaved(
            args.repeats, dict(lrs=(1e-2,), weight_decays=(1e-3,), precision=precision, **common),
            dict(precision=precision, **grid, **common))
        print(f"precision={precision} ({used} on this machine); test accuracy of the chosen head: "
              f"1-head {result_one.test:.3f}, 16-head sweep {result.test:.3f}")
        print(f"   1 head : {one:8.3f} s (median)")
        print(f"  16 heads: {sixteen:8.3f} s (median)")
        print(f"  ratio   : {ratio:8.2f}x  (median of {args.repeats} interleaved pairs; 16 separate single-head "
              f"sweeps: 16x, so one sweep is {16 / ratio:.1f}x faster)")


if __name__ == "__main__":
    main()
