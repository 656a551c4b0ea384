"""The callable that submitit runs for every node, locally or on a cluster.

A :class:`StageJob` holds only plain data (it is pickled by submitit). In the job
process it takes the node's lock, returns at once if the node is already complete, runs
the stage function in the node's work folder, and publishes the folder with its
completion record. ``checkpoint()`` requeues the same job; stages that can resume
(pre-training) pick up their own checkpoint from the work folder, which survives.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.store import Store

@dataclass(frozen=True)
class InputRef:
    """A completed input node, as a stage sees it."""

    stage: str
    key: str
    path: Path

    @property
    def record(self) -> dict[str, Any]:
        import json

        return json.loads((self.path / "_done.json").read_text())


@dataclass
class StageContext:
    """Everything a stage function may use."""

    stage: str
    key: str
    config: dict[str, Any]
    runtime: dict[str, Any]
    inputs: dict[str, InputRef]
    workdir: Path
    cache_dir: Path  # $HARNESS_HOME: shared, content-addressed caches (features, embeddings)
    progress: bool = False
    coords: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {self.stage}/{self.key[:8]}: {message}", flush=True)


@dataclass
class StageJob:
    """A picklable job for one node of the graph."""

    stage: str
    key: str
    config: dict[str, Any]
    runtime: dict[str, Any]
    version: str
    coords: dict[str, Any]
    inputs: dict[str, tuple[str, str, str]]  # name -> (stage, key, store root)
    store_root: str
    cache_dir: str
    progress: bool = False

    def __call__(self) -> dict[str, Any] | None:
        rank, world = _distributed_env(self.stage)
        if world > 1:
            return self._call_distributed(rank)
        store = Store(self.store_root)
        with store.lock(self.stage, self.key):
            record = store.record(self.stage, self.key)
            if record is not None:
                return record
            work = store.work_path(self.stage, self.key)
            work.mkdir(parents=True, exist_ok=True)
            self._set_threads()
            ctx = self._context(work)
            started = time.time()
            outputs = stage_function(self.stage)(ctx) or {}
            return self._commit(store, outputs, started)

    def _commit(self, store: Store, outputs: dict[str, Any], started: float) -> dict[str, Any]:
        record = {
            "stage": self.stage, "key": self.key, "version": self.version, "config": self.config,
            "coords": self.coords, "inputs": {n: f"{s}/{k}" for n, (s, k, _) in self.inputs.items()},
            "outputs": outputs, "seconds": round(time.time() - started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
            "python": platform.python_version(),
        }
        store.commit(self.stage, self.key, record)
        return record

    def _context(self, work: Path) -> StageContext:
        return StageContext(
            stage=self.stage, key=self.key, config=self.config, runtime=self.runtime,
            inputs={name: InputRef(s, k, Store(root).path(s, k)) for name, (s, k, root) in self.inputs.items()},
            workdir=work, cache_dir=Path(self.cache_dir), progress=self.progress, coords=self.coords,
        )

    def _call_distributed(self, rank: int) -> dict[str, Any] | None:
        """One of several processes of a multi-GPU pre-training job (Slurm tasks). Every rank
        runs the stage (the trainer joins the process group from the environment that
        submitit's TorchDistributedEnvironment exported); only rank 0 writes the store, once
        every rank is through."""
        store = Store(self.store_root)
        record = store.record(self.stage, self.key)
        if record is not None:
            return record if rank == 0 else None
        work = store.work_path(self.stage, self.key)
        work.mkdir(parents=True, exist_ok=True)
        self._set_threads()
        started = time.time()
        outputs = stage_function(self.stage)(self._context(work)) or {}
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if rank != 0:
            return None
        with store.lock(self.stage, self.key):
            return self._commit(store, outputs, started)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on preemption or timeout: requeue the same job, which resumes."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)

    def _set_threads(self) -> None:
        threads = int(self.runtime.get("threads", 1))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if "torch" in sys.modules or self.stage in ("pretrain", "embed", "probe"):
            import torch

            torch.set_num_threads(threads)


@dataclass
class GroupJob:
    """Several nodes run in sequence by one process: on Slurm, the embed and probe nodes of
    one pre-trained run, as one job (``compute.group_small_jobs``).

    Each node stays a :class:`StageJob` of its own (its lock, content key, completion
    record), so a node complete in the store is skipped and a rerun runs exactly the nodes
    that are missing. Each runs in a clean state (:func:`harness.workers.clean_state`). A
    node that raises does not stop the others: its traceback goes to the job's stderr, the
    nodes that depend on it are not run, and the rest go on. The job returns each node's
    outcome by id: ``None`` (complete), the traceback, or ``"blocked: <input id>"``, which
    :func:`harness.slurm.view` reads to classify each node on its own. ``checkpoint()``
    requeues the whole group, which then skips what is complete.
    """

    jobs: list[StageJob]

    def __call__(self) -> dict[str, str | None]:
        import traceback

        from harness.workers import clean_state

        env, cwd = dict(os.environ), os.getcwd()
        outcome: dict[str, str | None] = {}
        for job in self.jobs:
            node_id = f"{job.stage}/{job.key}"
            failed = [f"{s}/{k}" for s, k, _ in job.inputs.values() if outcome.get(f"{s}/{k}")]
            if failed:
                outcome[node_id] = f"blocked: {failed[0]}"
                continue
            clean_state(env, cwd)
            try:
                job()
                outcome[node_id] = None
            except Exception:  # noqa: BLE001 - this node's failure; the others go on
                outcome[node_id] = traceback.format_exc()
                print(f"{node_id} failed:\n{outcome[node_id]}", file=sys.stderr, flush=True)
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeued on preemption or timeout: the nodes already complete are skipped."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _distributed_env(stage: str) -> tuple[int, int]:
    """(rank, world size) of this process. In a Slurm job with several tasks (multi-GPU
    pre-training), export what ``torch.distributed`` needs (MASTER_ADDR, MASTER_PORT, RANK,
    WORLD_SIZE, LOCAL_RANK) from submitit's environment; the trainer reads it."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return 0, 1
    import submitit

    env = submitit.helpers.TorchDistributedEnvironment()
    if stage == "pretrain":
        # keep every GPU visible: the trainer picks cuda:LOCAL_RANK
        env.export(set_cuda_visible_devices=False, overwrite=True)
    return env.rank, env.world_size


def stage_function(stage: str) -> Callable[[StageContext], dict[str, Any] | None]:
    """The ``run`` function a stage declares (imported here, inside the job only)."""
    from harness.registry import load

    return load("stage", stage)
