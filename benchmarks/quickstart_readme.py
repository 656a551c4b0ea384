"""Regenerate the README's quickstart timing table, results table and claims from a fresh run.

One command, from an empty cache (about 10 minutes on the project's 2-core machine, more
when other work shares the cores):

    python benchmarks/quickstart_readme.py

It runs ``harness run studies/quickstart.yaml`` into a scratch folder with a scratch
``$HARNESS_HOME`` (timing the first run, the rerun with nothing to do, and ``harness
plan``), writes the report (``harness report``), keeps the numbers the README shows in
``benchmarks/quickstart_readme.json`` (the report's main table and paired bootstrap, the
results' commit and completion time, the timings, read from the jobs' completion records
where they are per job), and rewrites the README's generated blocks from that file
(``results/readme.py``). Nothing outside the blocks changes. Prints where the run and its
report are, so that they can be looked at.

    --out DIR / --home DIR   keep the run (and the cache) there instead of a scratch folder
    --results DIR            reuse a finished run folder instead of running (with --home: its
                             cache); the first-run time then comes from --first-run-seconds
    --check                  render from the existing JSON and fail if the README differs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STUDY = ROOT / "studies" / "quickstart.yaml"
README = ROOT / "README.md"
SNAPSHOT = ROOT / "benchmarks" / "quickstart_readme.json"


def cpu_seconds() -> float:
    """User + system CPU time of every finished child process (and theirs), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def harness(*args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"harness {' '.join(args)} failed with exit code {proc.returncode}")
    return proc, elapsed


def machine() -> str:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cores} CPU cores ({model}), {gpu}"


def record_timings(out: Path, home: Path) -> dict:
    """Per-job seconds from the completion records: the mini suite and each pre-training run."""
    from harness.labels import arm_label

    suite = [json.loads(p.read_text()) for p in (home / "store" / "dataset").glob("*/_done.json")]
    suite = [r for r in suite if r.get("coords", {}).get("dataset") == "minisuite"]
    if not suite:
        raise SystemExit(f"{home}: no mini-suite record (was the cache empty and is this its HARNESS_HOME?)")
    index = json.loads((Path(suite[0]["outputs"]["root"]) / "index.json").read_text())
    probe_clips = sum(sum(t["counts"].values()) for t in index["tasks"].values())
    pretrain = {}
    for path in sorted((out / "store" / "pretrain").glob("*/_done.json")):
        record = json.loads(path.read_text())
        if record["coords"].get("objective") == "random":
            continue
        pretrain[arm_label(record["coords"])] = round(float(record["seconds"]), 1)
    return {"suite_seconds": round(float(suite[0]["seconds"]), 1), "pool_clips": int(index["pretrain"]["num_clips"]),
            "suite_clips": int(index["pretrain"]["num_clips"]) + probe_clips, "pretrain_seconds": pretrain}


class LoadSampler:
    """The mean 1-minute load average while a block runs, sampled every ``every`` seconds."""

    def __init__(self, every: float = 15.0) -> None:
        self.every, self.samples, self._stop = every, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="run folder (default: a scratch folder)")
    parser.add_argument("--home", type=Path, help="HARNESS_HOME (default: a scratch folder: an empty cache)")
    parser.add_argument("--results", type=Path, help="reuse this finished run folder instead of running")
    parser.add_argument("--first-run-seconds", type=float, help="with --results: the first run's measured time")
    parser.add_argument("--first-run-cpu-seconds", type=float,
                        help="with --results: the first run's CPU time (user + system, all processes)")
    parser.add_argument("--load", type=float, help="with --results: the mean load average during that run")
    parser.add_argument("--check", action="store_true", help="only check that the README matches the JSON")
    args = parser.parse_args(argv)

    from results.readme import read_blocks, render_blocks, replace_blocks

    if args.check:
        snap = json.loads(SNAPSHOT.read_text())
        want = render_blocks(snap)
        have = read_blocks(README.read_text(encoding="utf-8"))
        bad = [name for name in want if have.get(name) != want[name]]
        print("README matches benchmarks/quickstart_readme.json" if not bad else f"README differs in {bad}")
        return 1 if bad else 0

    scratch = Path(tempfile.mkdtemp(prefix="quickstart-readme."))
    home = args.home or scratch / "home"
    out = args.results or args.out or scratch / "quickstart"
    mirror = os.environ.get("HARNESS_MIRROR") or str(ROOT.parent / "shared" / "mirror")
    env = {**os.environ, "HARNESS_HOME": str(home), "HARNESS_MIRROR": mirror, "PYTHONUNBUFFERED": "1"}
    if args.results is None:
        print(f"running the quickstart into {out} (HARNESS_HOME={home}) ...", flush=True)
        cpu = cpu_seconds()
        with LoadSampler() as load:
            proc, first = harness("run", str(STUDY), "--out", str(out), "--no-progress", env=env)
        first_cpu, mean_load = cpu_seconds() - cpu, load.mean
    else:
        if args.first_run_seconds is None or args.first_run_cpu_seconds is None or args.load is None:
            raise SystemExit("--results needs --first-run-seconds, --first-run-cpu-seconds and --load (of the run "
                             "that made it: /usr/bin/time -v gives the first two, uptime the load)")
        first, first_cpu, mean_load = args.first_run_seconds, args.first_run_cpu_seconds, args.load
    rerun, rerun_seconds = harness("run", str(STUDY), "--out", str(out), "--no-progress", env=env)
    plan, plan_seconds = harness("plan", str(STUDY), "--out", str(out), env=env)
    jobs = int(re.search(r": (\d+) jobs", plan.stdout).group(1))
    _, report_seconds = harness("report", str(STUDY), "--out", str(out), env=env)

    from harness.study import load_study

    study = load_study(STUDY)
    pretrain = study.config["pretrain"]
    compute = study.config["compute"]
    timings = {"first_run_seconds": round(first, 1), "first_run_cpu_seconds": round(first_cpu, 1),
               "rerun_seconds": round(rerun_seconds, 2),
               "plan_seconds": round(plan_seconds, 2), "report_seconds": round(report_seconds, 1), "jobs": jobs,
               "steps": int(pretrain["steps"]), "batch_size": int(pretrain["batch_size"]),
               "parallel": int(compute.get("max_parallel") or len(os.sched_getaffinity(0))),
               "machine": machine(), "load": round(mean_load, 1),
               **record_timings(out, home)}

    from results.readme import snapshot

    snap = snapshot(out / "report", out / "results.parquet", study.config, timings)
    SNAPSHOT.write_text(json.dumps(snap, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    README.write_text(replace_blocks(README.read_text(encoding="utf-8"), render_blocks(snap)), encoding="utf-8")
    print(f"first run {first:.0f} s ({first_cpu:.0f} s CPU), rerun {rerun_seconds:.1f} s, plan {plan_seconds:.1f} s, report "
          f"{report_seconds:.0f} s")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} and the README's blocks; run: {out}; report: {out / 'report'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
