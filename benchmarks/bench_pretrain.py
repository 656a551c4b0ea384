"""Pre-training throughput per objective: clips/s, and on a GPU the model FLOP utilisation (MFU) in bf16.

Synthetic clips (80-bin fbank frames, fixed duration) with tags, captions and labels run
through the real trainer step (encoder + objective, forward, backward, AdamW) for every
registered objective. FLOPs per step are counted once with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention; forward and
backward); MFU = achieved FLOP/s / the device's peak dense bf16 FLOP/s (``--peak-tflops``,
default 989 for an H100 SXM). Prints the median over ``--steps`` timed steps.

    python benchmarks/bench_pretrain.py                          # CPU, tiny encoder
    python benchmarks/bench_pretrain.py --size base --batch-size 64 --seconds 10   # on a GPU
    python benchmarks/bench_pretrain.py --encoder zipformer --size m --objectives mtc   # the UTS paper's encoder
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from encoders import build_encoder
from encoders.objectives import from_supervision, objective_names
from encoders.objectives.supervision import Supervision
from encoders.trainer import _Net, collate_targets

WORDS = ("dog bark park rain roof thunder man speech violin music slow engine car horn street bird "
         "wind bell siren footsteps piano guitar crowd applause").split()
DECODER = {"layers": 6, "dim": 768, "heads": 8, "ffn_dim": 3072}  # the reference decoder


def supervision(n: int, num_tags: int, seed: int = 0) -> Supervision:
    g = torch.Generator().manual_seed(seed)
    tag_targets = (torch.rand(n, num_tags, generator=g) < 10 / num_tags).float()
    tag_targets[:, 0] = 1.0
    words = [[WORDS[int(j)] for j in torch.randint(len(WORDS), (10,), generator=g)] for _ in range(n)]
    return Supervision(
        num_clips=n, tag_targets=tag_targets, tag_names=[f"tag{i}" for i in range(num_tags)],
        tag_sequences=[", ".join(w) for w in words],
        captions=["a recording of " + " and ".join(w[:6]) + " in a large room" for w in words],
        label_targets=(torch.rand(n, 527, generator=g) < 0.01).float(),
    )


def options_for(name: str, small_decoder: bool) -> dict:
    if name in ("par", "captioning", "multitask"):
        return {"layers": 2, "dim": 128, "heads": 4, "ffn_dim": 512} if small_decoder else dict(DECODER)
    if name == "contrastive":
        return {"proj_dim": 512}
    return {}


def bench(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    encoder = build_encoder(args.encoder, size=args.size)
    n = args.batch_size
    objective, targets = from_supervision(name, encoder.dim, supervision(n, args.tags),
                                          **options_for(name, args.small_decoder))
    net = _Net(encoder, objective).to(device).train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    frames = int(args.seconds * 100)
    feats = torch.randn(n, frames, 80, device=device)
    lengths = torch.full((n,), frames, device=device)
    batch = collate_targets(targets, list(range(n)), device)
    use_bf16 = device.type == "cuda"

    steps_done = [0]

    def step() -> None:
        encoder.set_batch_count(steps_done[0])  # as the trainer does: zipformer's schedules run
        steps_done[0] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = net(feats, lengths, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    except Exception:  # noqa: BLE001 - MFU is optional; throughput is not
        pass
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    out = {"objective": name, "clips_per_s": n / seconds, "step_s": seconds,
           "params_m": sum(p.numel() for p in net.parameters()) / 1e6}
    if flops:
        out["tflop_per_step"] = flops / 1e12
        if device.type == "cuda":
            out["mfu"] = flops / seconds / (args.peak_tflops * 1e12)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=sorted(objective_names()))
    parser.add_argument("--encoder", default="transformer")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip duration")
    parser.add_argument("--tags", type=int, default=1500, help="tag-system size K")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--small-decoder", action="store_true", help="2x128 decoder instead of the reference 6x768")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"device={device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}) "
          f"threads={torch.get_num_threads()} encoder={args.encoder}-{args.size} batch={args.batch_size} "
          f"clip={args.seconds}s K={args.tags} decoder={'2x128' if args.small_decoder else '6x768'} "
          f"precision={'bf16 autocast' if device.type == 'cuda' else 'fp32'} median of {args.steps} steps")
    print(f"{'objective':<12} {'clips/s':>9} {'s/step':>8} {'params(M)':>10} {'TFLOP/step':>11} {'MFU':>6}")
    for name in args.objectives:
        r = bench(name, args, device)
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        tflop = f"{r['tflop_per_step']:.3f}" if "tflop_per_step" in r else "-"
        print(f"{name:<12} {r['clips_per_s']:9.1f} {r['step_s']:8.3f} {r['params_m']:10.1f} {tflop:>11} {mfu:>6}",
              flush=True)


if __name__ == "__main__":
    main()
