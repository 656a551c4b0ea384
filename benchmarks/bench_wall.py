"""A study run's wall time against its jobs' compute: how well the slots are kept busy.

    python benchmarks/bench_wall.py studies/quickstart.yaml            # run it from an empty cache, then measure
    python benchmarks/bench_wall.py STUDY --results runs/x --home H    # measure a finished run (wall: the records' span)
    python benchmarks/bench_wall.py --sbatch studies/paper/*.yaml      # Slurm submissions, without and with grouping

The first form runs ``harness run STUDY`` into a scratch output folder with a scratch
``$HARNESS_HOME`` (``--out`` / ``--home`` keep them), timing the command, and samples the
load average while it runs (the cores may be shared). Then it reads the completion record
of every node of the study's graph: each record's ``seconds`` is the job's own compute,
from the start of its stage function to its completion record, without the process start.
It prints, per stage, the jobs and their compute, then

    wall / (total compute / slots)

which is 1.0 when every slot computes all the time, and grows with what is spent outside
the jobs (starting processes, importing torch, waiting for the scheduler) and with slots
left idle by the graph's dependencies. The same ratio without the dataset jobs follows: the
mini suite's build runs before anything else and keeps every core busy by itself, though it
counts as one slot's compute. ``slots`` is ``--max-parallel``, else the study's
``compute.max_parallel``, else the CPU cores (as ``harness run`` picks it).

``--sbatch`` prints, for each study, the sbatch submissions (job arrays) and the Slurm jobs
(array elements) that ``harness run --executor slurm`` makes from an empty store, without
and with ``compute.group_small_jobs`` (:func:`harness.slurm.count_submissions`). It submits
nothing and needs no cluster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def graph_and_layout(study_path: str, out: Path, home: Path):
    from harness.dispatch import Layout
    from harness.graph import expand
    from harness.study import load_study

    study = load_study(study_path)
    return study, expand(study.config), Layout(out, home)


def records(graph, layout) -> list[dict]:
    found = []
    for node in graph:
        record = layout.store_for(node.stage).record(node.stage, node.key)
        if record is not None:
            found.append(record)
    return found


def span_seconds(found: list[dict]) -> float:
    """From the first job's start to the last job's end, by the records (1 s resolution)."""
    ends = [datetime.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp() for r in found]
    starts = [end - r["seconds"] for end, r in zip(ends, found)]
    return max(ends) - min(starts)


class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds while the run goes on."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])


def run_study(study_path: str, out: Path, home: Path, max_parallel: int | None) -> tuple[float, list[float]]:
    if any(home.iterdir()) if home.exists() else False:
        raise SystemExit(f"{home} is not empty: the measurement starts from an empty cache")
    env = {**os.environ, "HARNESS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "harness", "run", study_path, "--out", str(out), "--no-progress"]
    if max_parallel:
        command += ["--max-parallel", str(max_parallel)]
    sampler = LoadSampler()
    sampler.start()
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"harness run failed with exit code {proc.returncode}")
    return wall, sampler.samples


def report(study, graph, layout, wall: float, slots: int, how: str, load: list[float] | None) -> None:
    found = records(graph, layout)
    by_stage: dict[str, list[float]] = {}
    for record in found:
        by_stage.setdefault(record["stage"], []).append(float(record["seconds"]))
    print(f"study {study.name}: {len(found)} of {len(graph)} jobs complete; {slots} slots")
    print(f"{'stage':<10} {'jobs':>5} {'compute s':>10} {'median s':>9}")
    for stage, seconds in by_stage.items():
        print(f"{stage:<10} {len(seconds):>5} {sum(seconds):>10.1f} {statistics.median(seconds):>9.2f}")
    total = sum(sum(s) for s in by_stage.values())
    ideal = total / slots
    print(f"total compute {total:.1f} s; / {slots} slots = {ideal:.1f} s")
    print(f"wall {wall:.1f} s ({how}) = {wall / ideal:.2f} x (compute / slots)")
    data = sum(by_stage.get("dataset", []))
    if data and total > data:  # the mini suite's build runs alone and uses every core by itself
        rest = (total - data) / slots
        print(f"without the dataset jobs ({data:.1f} s, run before anything else): wall {wall - data:.1f} s = "
              f"{(wall - data) / rest:.2f} x ({total - data:.1f} s / {slots} slots)")
    if load:
        print(f"load average (1 min) during the run: mean {statistics.fmean(load):.1f}, max {max(load):.1f} "
              f"({len(load)} samples, {os.cpu_count()} CPUs)")


def sbatch_counts(paths: list[str]) -> None:
    from harness import slurm
    from harness.graph import expand
    from harness.study import load_study

    print(f"{'study':<40} {'nodes':>6} {'sbatch before':>14} {'jobs before':>12} {'sbatch after':>13} "
          f"{'jobs after':>11}")
    for path in paths:
        graph = expand(load_study(path).config)
        before, after = slurm.count_submissions(graph, False), slurm.count_submissions(graph, True)
        print(f"{path:<40} {len(graph):>6} {before[0]:>14} {before[1]:>12} {after[0]:>13} {after[1]:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", nargs="+")
    parser.add_argument("--out", type=Path, help="the run's output folder (default: a scratch folder)")
    parser.add_argument("--home", type=Path, help="$HARNESS_HOME, empty (default: a scratch folder)")
    parser.add_argument("--results", type=Path, help="measure this finished run instead of running one")
    parser.add_argument("--max-parallel", type=int)
    parser.add_argument("--sbatch", action="store_true", help="count Slurm submissions instead")
    args = parser.parse_args()
    if args.sbatch:
        sbatch_counts(args.study)
        return
    (study_path,) = args.study
    if args.results:
        home = args.home or Path(os.environ.get("HARNESS_HOME", Path.home() / ".cache" / "harness"))
        study, graph, layout = graph_and_layout(study_path, args.results, home)
        slots = args.max_parallel or study.config["compute"]["max_parallel"] or os.cpu_count() or 1
        report(study, graph, layout, span_seconds(records(graph, layout)), slots, "span of the records", None)
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-wall-"))
    out, home = args.out or scratch / "out", args.home or scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    wall, load = run_study(study_path, out, home, args.max_parallel)
    study, graph, layout = graph_and_layout(study_path, out, home)
    slots = args.max_parallel or study.config["compute"]["max_parallel"] or os.cpu_count() or 1
    report(study, graph, layout, wall, slots, "the command, timed", load)
    print(f"run in {out}, cache in {home}")


if __name__ == "__main__":
    main()
