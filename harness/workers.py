"""Warm local workers: small jobs run in long-lived processes that have torch imported.

A local study is mostly small jobs (an embedding extraction takes about a second, a probe
sweep a fifth of one) next to a few long pre-trainings. Started as a fresh Python each,
a small job pays more to import torch than it computes. :class:`WorkerPool` keeps one
worker process per slot instead, and sends it job after job; pre-training keeps its own
process (:data:`OWN_PROCESS`, submitted through submitit as before).

Why a pool of our own, on :mod:`multiprocessing`'s *forkserver*:

- submitit has nothing to offer here: its ``LocalExecutor`` starts one process per job,
  and its batching only groups the submission of Slurm arrays.
- :class:`concurrent.futures.ProcessPoolExecutor` breaks as a whole when one worker dies
  (every pending future fails with ``BrokenProcessPool``), and :class:`multiprocessing.Pool`
  waits forever for the task of a killed worker. Here a job whose worker crashes or is
  killed (SIGKILL, the OOM killer, a segfault in native code) fails alone, with the cause
  in one line, and a new worker takes the slot.
- The forkserver imports torch once (``set_forkserver_preload``: :data:`PRELOAD`); each
  worker is forked from it, so it starts in milliseconds with torch imported and with none
  of the driver's state (no threads, no open files, no progress display). That makes
  recycling cheap. (A fork of a process that has imported torch but run no operation is
  safe: its thread pools start at the first operation, in the worker.)

What a job keeps from the guarantees of a process of its own:

- **Nothing half-written is published.** The job is the same :class:`~harness.job.StageJob`:
  it builds its node in ``<key>.work/`` and the store publishes it by one rename.
- **No state leaks from one job into the next.** Before each job the worker restores the
  environment variables and the working folder it started with, seeds ``random``, numpy
  and torch as a fresh process would be (torch's default seed; ``random`` and numpy at 0),
  turns gradients back on and restores the default dtype; the job sets its threads. A worker
  is recycled (exits, and a fresh fork replaces it) after :data:`RECYCLE_AFTER` jobs, after
  any job that raised, and when its resident memory passes :data:`RECYCLE_RSS_GB`, so a job
  that leaks memory or module state affects at most a bounded number of later jobs, and
  never their results (which depend only on their inputs and seeds).
- **Logs and causes as before.** A job's stdout and stderr go to its own
  ``<log dir>/<job id>/<job id>_0_log.out|err`` (file descriptors 1 and 2, so native code's
  output is caught too); a job that raises leaves its traceback there, and its cause is
  the traceback's last line.
- **Time limit.** A job running longer than the limit (``compute.timeout_min``) has its
  worker killed and fails with that cause.

The pool is torch-free on the driver's side: only the forkserver and the workers import it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

OWN_PROCESS = frozenset({"pretrain"})  # stages that keep a process of their own (long, resumable, DDP)
RECYCLE_AFTER = 20  # jobs a worker runs before a fresh one replaces it
RECYCLE_RSS_GB = 4.0  # a worker whose resident memory passes this after a job is replaced
# Imported once by the forkserver, so every worker starts with them: torch, and what the
# embedding and probe stages import (seconds for a fresh process on a loaded 2-core machine).
PRELOAD = ["torch", "numpy", "torchaudio", "lhotse", "soundfile"]
TORCH_DEFAULT_SEED = 67280421310721  # torch.initial_seed() of a fresh process


class WorkerJobError(RuntimeError):
    """A job that failed in a worker; its message is the one-line cause."""


@dataclass
class _Paths:
    stdout: Path
    stderr: Path


@dataclass
class PoolJob:
    """A job sent to a worker, with the interface of a submitit job that the scheduler uses."""

    job_id: str
    paths: _Paths
    pool: "WorkerPool"
    outcome: tuple[str, str | None] | None = None  # ("ok", None) or ("error", cause)

    def done(self) -> bool:
        if self.outcome is None:
            self.pool.poll()
        return self.outcome is not None

    def exception(self) -> BaseException | None:
        if self.outcome is None or self.outcome[0] == "ok":
            return None
        return WorkerJobError(self.outcome[1])


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process
    conn: Connection
    jobs_run: int = 0
    job: PoolJob | None = None
    started: float = 0.0


@dataclass
class WorkerPool:
    """At most ``slots`` worker processes, each running one job at a time."""

    slots: int
    log_dir: Path
    timeout_s: float
    recycle_after: int = RECYCLE_AFTER
    workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._cwd = os.getcwd()

    # ------------------------------------------------------------------ driver side

    def submit(self, job: Any) -> PoolJob:
        """Send a picklable callable to an idle worker (a new one if none is idle)."""
        worker = next((w for w in self.workers if w.job is None), None)
        if worker is None:
            if len(self.workers) >= self.slots:
                raise RuntimeError(f"all {self.slots} workers are busy")
            worker = self._start()
        job_id = f"{worker.process.pid}.{worker.jobs_run + 1}"
        folder = Path(self.log_dir) / job_id
        folder.mkdir(parents=True, exist_ok=True)
        paths = _Paths(folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err")
        pool_job = PoolJob(job_id, paths, self)
        worker.conn.send((job, str(paths.stdout), str(paths.stderr)))
        worker.job, worker.started = pool_job, time.monotonic()
        worker.jobs_run += 1
        return pool_job

    def poll(self) -> None:
        """Collect what the busy workers finished; fail the jobs of workers that died or ran
        over the time limit."""
        for worker in list(self.workers):
            if worker.job is None:
                continue
            if worker.conn.poll():
                try:
                    status, detail, rss_gb = worker.conn.recv()
                except (EOFError, OSError):  # died as it answered
                    self._died(worker)
                    continue
                worker.job.outcome = (status, detail)
                worker.job = None
                if status != "ok" or worker.jobs_run >= self.recycle_after or rss_gb > RECYCLE_RSS_GB:
                    self._stop(worker)
            elif not worker.process.is_alive():
                self._died(worker)
            elif time.monotonic() - worker.started > self.timeout_s:
                worker.process.kill()
                worker.process.join()
                worker.job.outcome = ("error", f"time limit of {self.timeout_s / 60:g} min reached "
                                               "(compute.timeout_min): the worker was killed")
                self._discard(worker)

    def wait(self, timeout: float) -> None:
        """Return once a busy worker answers or dies, or after ``timeout`` seconds."""
        busy = [w for w in self.workers if w.job is not None]
        if busy:
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        for worker in list(self.workers):
            if worker.job is None:
                self._stop(worker)
            else:
                worker.process.kill()
                worker.process.join()
                self._discard(worker)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        log = Path(self.log_dir) / "workers"
        log.mkdir(parents=True, exist_ok=True)
        # not a daemon: a stage may start processes of its own (the mini suite does)
        process = self._ctx.Process(target=_worker_main, args=(child, str(log), self._cwd), name="harness-worker")
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def _died(self, worker: _Worker) -> None:
        worker.process.join()
        code = worker.process.exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        worker.job.outcome = ("error", f"the worker process running this job died ({how})")
        self._discard(worker)

    def _stop(self, worker: _Worker) -> None:
        try:
            worker.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        self._discard(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.conn.close()
        self.workers.remove(worker)


# ---------------------------------------------------------------------- worker side


def _worker_main(conn: Connection, log_dir: str, cwd: str) -> None:
    """A worker's loop: receive ``(job, stdout, stderr)``, run it in a clean state, answer
    ``(status, cause, rss_gb)``; exit on ``None`` or when the driver is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the pool
    own = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(own, 1)
    os.dup2(own, 2)
    env = dict(os.environ)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job, stdout, stderr = message
        status, cause = _run_one(job, stdout, stderr, env, cwd, own)
        conn.send((status, cause, _rss_gb()))


def _run_one(job: Any, stdout: str, stderr: str, env: dict[str, str], cwd: str, own: int) -> tuple[str, str | None]:
    import sys

    clean_state(env, cwd)
    out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    try:
        job()
        return "ok", None
    except BaseException as exc:  # noqa: BLE001 - the job's failure is reported, the worker goes on
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        return "error", _cause(exc)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(own, 1)
        os.dup2(own, 2)


def clean_state(env: dict[str, str], cwd: str) -> None:
    """The state of a fresh process, before each job: the environment and working folder
    given, ``random`` and numpy seeded at 0, torch at its default seed, autograd on, fp32."""
    import random

    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    random.seed(0)
    import numpy
    import torch

    numpy.random.seed(0)
    torch.manual_seed(TORCH_DEFAULT_SEED)
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)


def _cause(exc: BaseException) -> str:
    """One line: the exception as the last line of its traceback reads."""
    return "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1][:500]


def _rss_gb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return 0.0
