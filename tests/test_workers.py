"""Warm local workers (harness/workers.py): a job that crashes, is killed or raises fails alone
with its cause, the pool goes on with a fresh worker, and no job sees the state another left."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.workers import TORCH_DEFAULT_SEED, WorkerPool


@dataclass
class Job:
    """A picklable job that does one thing (the worker imports this module to run it)."""

    action: str
    out: str = ""

    def __call__(self) -> None:
        import torch

        if self.action == "raise":
            raise ValueError("bad input 42")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.action == "sleep":
            time.sleep(120)
        if self.action == "dirty":  # leave every kind of state behind
            os.environ["LEAK"] = "1"
            os.chdir("/")
            torch.manual_seed(5)
            torch.set_grad_enabled(False)
            torch.set_default_dtype(torch.float64)
            random.seed(9)
            print("to stdout", flush=True)
            os.write(2, b"to fd 2\n")
        if self.action == "look":
            Path(self.out).write_text(json.dumps({
                "pid": os.getpid(), "leak": os.environ.get("LEAK"), "cwd": os.getcwd(),
                "seed": torch.initial_seed(), "grad": torch.is_grad_enabled(), "dtype": str(torch.get_default_dtype()),
                "random": random.random(), "torch": torch.rand(1).item()}))


def run(pool: WorkerPool, job: Job, timeout: float = 120):
    pool_job = pool.submit(job)
    end = time.time() + timeout
    while not pool_job.done():
        assert time.time() < end, "the job did not finish"
        pool.wait(0.1)
    return pool_job


def look(pool: WorkerPool, tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert run(pool, Job("look", str(out))).exception() is None
    return json.loads(out.read_text())


def test_jobs_fail_alone_and_never_see_another_jobs_state(tmp_path):
    with WorkerPool(slots=1, log_dir=tmp_path / "logs", timeout_s=60, recycle_after=3) as pool:
        first = look(pool, tmp_path, "first")
        assert first["seed"] == TORCH_DEFAULT_SEED and first["grad"] and first["dtype"] == "torch.float32"
        assert first["leak"] is None and first["cwd"] == os.getcwd()

        dirty = run(pool, Job("dirty"))
        assert dirty.exception() is None
        assert dirty.paths.stdout.read_text() == "to stdout\n" and dirty.paths.stderr.read_text() == "to fd 2\n"
        second = look(pool, tmp_path, "second")
        assert second == first  # same worker (pid too), same state, same random numbers
        third = look(pool, tmp_path, "third")  # the worker ran 3 jobs: a fresh one runs this
        assert third["pid"] != first["pid"] and {**third, "pid": 0} == {**first, "pid": 0}

        failed = run(pool, Job("raise"))
        assert str(failed.exception()) == "ValueError: bad input 42"
        assert "Traceback" in failed.paths.stderr.read_text() and "bad input 42" in failed.paths.stderr.read_text()

        killed = run(pool, Job("kill"))
        assert str(killed.exception()) == "the worker process running this job died (killed by SIGKILL)"
        after = look(pool, tmp_path, "after")  # the pool goes on, with a fresh worker
        assert {**after, "pid": 0} == {**first, "pid": 0}
        assert len({first["pid"], third["pid"], after["pid"]}) == 3
    assert not pool.workers


def test_a_job_over_the_time_limit_is_killed_and_fails_with_that_cause(tmp_path):
    with WorkerPool(slots=2, log_dir=tmp_path, timeout_s=3) as pool:
        slow = pool.submit(Job("sleep"))
        assert look(pool, tmp_path, "beside")["leak"] is None  # the other slot works meanwhile
        started = time.time()
        while not slow.done():
            pool.wait(0.2)
        assert time.time() - started < 30
        assert "time limit of 0.05 min reached" in str(slow.exception())
        with pytest.raises(RuntimeError, match="busy"):
            for _ in range(3):
                pool.submit(Job("sleep"))
