"""Where jobs run: submitit executors (local, debug, slurm) and the scheduler.

The scheduler submits every node whose inputs are complete, at most ``max_parallel`` at
a time, and waits. Nodes already complete in the store are never submitted. A failed
node is recorded with its cause and log path; nodes that depend on it are skipped and
the rest of the graph goes on. The same :class:`~harness.job.StageJob` runs under every
executor, so a local run takes the code path a cluster run takes.

Locally, pre-training runs in a process of its own (submitit's ``LocalExecutor``) and
every other job in a warm worker (:mod:`harness.workers`): one per slot, with torch
already imported, so a job of a fifth of a second costs about that. Ready pre-trainings,
and the jobs they wait on, are started before any other ready job: they are the long
ones, and the small jobs fill the slots around them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.components import shared_stages
from harness.graph import Graph, Node
from harness.job import StageJob
from harness.store import Store, atomic_write_json
from harness.workers import OWN_PROCESS, WorkerPool


@dataclass
class Layout:
    """Where a study's files live."""

    out: Path  # runs/<study>/
    cache: Path  # $HARNESS_HOME

    @property
    def store(self) -> Store:
        return Store(self.out / "store")

    @property
    def shared_store(self) -> Store:
        return Store(self.cache / "store")

    def store_for(self, stage: str) -> Store:
        return self.shared_store if stage in shared_stages() else self.store

    @property
    def state_dir(self) -> Path:
        return self.out / "state"

    @property
    def log_dir(self) -> Path:
        return self.out / "logs"

    def state_path(self, node: Node) -> Path:
        return self.state_dir / f"{node.stage}-{node.key}.json"

    def is_done(self, node: Node) -> bool:
        return self.store_for(node.stage).is_done(node.stage, node.key)


from harness.home import harness_home  # noqa: E402,F401  (re-exported: it lives in a leaf module)


def make_job(node: Node, layout: Layout, progress: bool = False) -> StageJob:
    return StageJob(
        stage=node.stage, key=node.key, config=node.config, runtime=node.runtime, version=node.version,
        coords=node.coords,
        inputs={name: (dep.stage, dep.key, str(layout.store_for(dep.stage).root)) for name, dep in node.inputs.items()},
        store_root=str(layout.store_for(node.stage).root), cache_dir=str(layout.cache), progress=progress,
    )


def make_executor(kind: str, layout: Layout, timeout_min: float):
    import submitit

    folder = layout.log_dir / "%j"
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=timeout_min)
    elif kind == "debug":
        executor = submitit.DebugExecutor(folder=folder)
    else:
        raise ValueError(f"unknown executor {kind!r}")
    return executor


@dataclass
class RunSummary:
    done: list[Node] = field(default_factory=list)  # completed in this run
    skipped: list[Node] = field(default_factory=list)  # already complete before it
    failed: dict[str, str] = field(default_factory=dict)  # node id -> cause
    blocked: list[Node] = field(default_factory=list)  # not run: an input failed
    submitted: dict[str, str] = field(default_factory=dict)  # node id -> Slurm job id (slurm executor)
    requeued: dict[str, list[str]] = field(default_factory=dict)  # node id -> cause of each requeue / resubmission

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def run_graph(graph: Graph, layout: Layout, executor_kind: str = "local", max_parallel: int | None = None,
              timeout_min: float = 240, progress: bool = True) -> RunSummary:
    """Run every incomplete node of the graph on this machine (``local`` processes, or
    ``debug``: in-process); return what happened. Slurm is another backend
    (:func:`harness.slurm.run`, which uses this module's job and state helpers): the CLI
    picks one, so this module never imports it.
    """
    from harness.progress import GraphProgress

    if executor_kind not in ("local", "debug"):
        raise ValueError(f"run_graph runs local or debug jobs, not {executor_kind!r} (Slurm: harness.slurm.run)")

    summary = RunSummary()
    pending: list[Node] = []
    for node in graph:
        (summary.skipped if layout.is_done(node) else pending).append(node)
    if not pending:
        return summary
    max_parallel = max_parallel or os.cpu_count() or 1
    if executor_kind == "debug":
        max_parallel = 1
    executor = make_executor(executor_kind, layout, timeout_min)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    done_ids = {n.id for n in summary.skipped}
    blocked_ids: set[str] = set()
    running: dict[str, tuple[Node, Any]] = {}
    pool = WorkerPool(max_parallel, layout.log_dir, timeout_min * 60) if executor_kind == "local" else None
    first = _feeding_long(graph)
    pending.sort(key=lambda n: n.id not in first)  # long jobs and their inputs first (see the module docstring)

    with GraphProgress(graph, done_ids, enabled=progress) as bar, pool or _nothing():
        while pending or running:
            for node in list(pending):  # skip nodes whose inputs failed
                if any(dep.id in summary.failed or dep.id in blocked_ids for dep in node.inputs.values()):
                    pending.remove(node)
                    summary.blocked.append(node)
                    blocked_ids.add(node.id)
                    bar.advance(node, "blocked")
            for node in list(pending):
                if len(running) >= max_parallel:
                    break
                if all(dep.id in done_ids for dep in node.inputs.values()):
                    pending.remove(node)
                    stage_job = make_job(node, layout, progress=executor_kind == "debug" and progress)
                    job = (pool.submit if pool and node.stage not in OWN_PROCESS else executor.submit)(stage_job)
                    _write_state(layout, node, "running", job=job)
                    running[node.id] = (node, job)
            for node_id, (node, job) in list(running.items()):
                finished, cause = _poll(job, executor_kind)
                if not finished:
                    continue
                del running[node_id]
                if cause is None and layout.is_done(node):
                    done_ids.add(node.id)
                    summary.done.append(node)
                    _write_state(layout, node, "done", job=job)
                    bar.advance(node, "done")
                else:
                    cause = cause or "the job ended without publishing its output"
                    summary.failed[node.id] = cause
                    _write_state(layout, node, "failed", job=job, cause=cause)
                    bar.advance(node, "failed", cause)
            if running:
                pool.wait(0.2) if pool else time.sleep(0.2)
    return summary


def _feeding_long(graph: Graph) -> set[str]:
    """Ids of the long jobs (:data:`~harness.workers.OWN_PROCESS`) and of every node upstream of one."""
    found: set[str] = set()
    stack = [n for n in graph if n.stage in OWN_PROCESS]
    while stack:
        node = stack.pop()
        if node.id not in found:
            found.add(node.id)
            stack.extend(node.inputs.values())
    return found


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _poll(job: Any, executor_kind: str) -> tuple[bool, str | None]:
    """(finished, cause of failure or None)."""
    if executor_kind == "debug":
        # DebugExecutor runs the job in this process now. On a terminal, result() opens pdb
        # on an exception (that is what debug mode is for); otherwise just record it.
        if sys.stdin.isatty():
            try:
                job.result()
                return True, None
            except Exception as exc:  # noqa: BLE001 - reported, not swallowed
                return True, _describe(exc)
        exc = job.exception()
        return True, (_describe(exc) if exc is not None else None)
    if not job.done():
        return False, None
    exc = job.exception()
    return True, (_describe(exc) if exc is not None else None)


def _describe(exc: BaseException) -> str:
    """One line: the innermost error of a job's traceback (submitit wraps it in its own message)."""
    text = str(exc)
    if "with trace:" in text:  # FailedJobError: the remote traceback sits between two dashed lines
        text = text.split("with trace:", 1)[1].split("\n----", 2)[1] if "\n----" in text else text
    lines = [line.rstrip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")):
            return line.strip()[:500]
    return "".join(traceback.format_exception_only(exc)).strip()[:500]


def read_state(layout: Layout, node: Node) -> dict[str, Any] | None:
    """The state record of a node's last dispatch, if any."""
    import json

    try:
        return json.loads(layout.state_path(node).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(layout: Layout, node: Node, state: str, cause: str | None = None,
                extra: dict[str, Any] | None = None) -> None:
    """Record a node's dispatch state (Slurm: job id, logs, attempt, Slurm state)."""
    record: dict[str, Any] = {"id": node.id, "stage": node.stage, "key": node.key, "label": node.label,
                              **(extra or {}), "state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if cause:
        record["cause"] = cause
    atomic_write_json(layout.state_path(node), record)


def _write_state(layout: Layout, node: Node, state: str, job: Any = None, cause: str | None = None) -> None:
    record: dict[str, Any] = {"id": node.id, "stage": node.stage, "key": node.key, "label": node.label,
                              "state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if job is not None:
        record["job_id"] = str(job.job_id)
        paths = getattr(job, "paths", None)
        if paths is not None:
            record["stdout"] = str(paths.stdout).replace("%t", "0")
            record["stderr"] = str(paths.stderr).replace("%t", "0")
    if cause:
        record["cause"] = cause
    atomic_write_json(layout.state_path(node), record)
