"""Slurm: settings (study overlaid on a cluster profile), whole-graph submission as job
arrays with ``afterok`` dependencies, and the state of every job read back from sacct.

Everything here goes through submitit: jobs are submitted with ``SlurmExecutor``
(``executor.batch()`` makes one array per group of nodes that wait on the same jobs), and
states are read with submitit's sacct watcher. No torch is imported.

How a graph is submitted. Stages go in in graph order (dataset, captions, ..., probe).
Within a stage, the nodes to run are grouped by the set of Slurm jobs they wait on; each
group is one job array whose ``--dependency=afterok:...`` names exactly those jobs, with
``--kill-on-invalid-dep=yes``: when a job fails, Slurm cancels the jobs that wait on it
(reported as *blocked*), while every branch that does not depend on it runs on. Nodes
already complete in the store are never submitted, and a node whose job is still queued
or running (from an earlier ``--detach``) is waited on, not submitted again.

Failures. Each finished job is classified from its sacct state and its submitit result:
COMPLETED, FAILED (with the traceback's last line and the log's tail), TIMEOUT,
PREEMPTED, OUT_OF_MEMORY, CANCELLED, NODE_FAIL. Every job is requeued by submitit on the
time-limit signal (``StageJob.checkpoint``), at most ``retries`` times; preemption and node
failures are resubmitted by a waiting ``harness run``, at most ``retries`` times. Code
errors are never retried.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.components import stages
from harness.errors import HarnessError
from harness.slurm_settings import (  # noqa: F401  (the settings, re-exported)
    DEFAULTS, RESOURCES, SLURM, SlurmSettings, load_profile, resolve,
)

# sacct states, by what they mean here.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING",
          "STAGE_OUT", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD", "STOPPED", "UNKNOWN"}
RETRYABLE = {"PREEMPTED", "NODE_FAIL"}  # resubmitted by a waiting run, bounded; code errors never
CLASSES = {"BOOT_FAIL": "NODE_FAIL", "DEADLINE": "TIMEOUT", "REVOKED": "CANCELLED"}


def check_cluster() -> None:
    """Fail before anything is submitted when no Slurm cluster answers."""
    for tool in ("sbatch", "sacct", "scontrol"):
        if shutil.which(tool) is None:
            raise HarnessError(f"slurm: {tool} not found on PATH (is this a Slurm login node? "
                               "To try Slurm on one machine: scripts/slurm-up.sh)")
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise HarnessError("slurm: `scontrol ping` did not answer within 30 s") from None
    if proc.returncode != 0 or "UP" not in proc.stdout:
        text = (proc.stdout + proc.stderr).strip().splitlines()
        raise HarnessError(f"slurm: the controller does not answer (`scontrol ping`: {text[-1] if text else '?'})")


def executor_parameters(settings: SlurmSettings, stage: str, study: str) -> dict[str, Any]:
    """``SlurmExecutor.update_parameters`` keywords for one stage."""
    res = settings.resources(stage)
    params: dict[str, Any] = {
        "job_name": f"{_safe(study)}.{stage}",
        "time": int(res["time_min"]),
        "nodes": int(res["nodes"]),
        "ntasks_per_node": int(res["tasks_per_node"]),
        "cpus_per_task": int(res["cpus_per_task"]),
        "array_parallelism": int(settings["array_parallelism"]),
        "signal_delay_s": int(settings["signal_delay_s"]),
        "additional_parameters": {"kill-on-invalid-dep": "yes", "requeue": True},
    }
    if res.get("gpus_per_node"):
        params["gpus_per_node"] = int(res["gpus_per_node"])
    for key in ("partition", "account", "qos", "constraint"):
        if res.get(key):
            params[key] = res[key]
    if res.get("mem_gb"):
        params["mem"] = f"{int(round(res['mem_gb'] * 1024))}MB"
    return params


def _safe(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "harness"


def make_executor(folder: Path, settings: SlurmSettings):
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(settings["retries"]))
    executor._throttling = 0.02  # sbatch answers fast; submitit's 0.2 s pause per job is for big clusters
    return executor


# ---------------------------------------------------------------- job states from sacct


def sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """sacct rows (State, Reason, ExitCode, Elapsed, NodeList) of these jobs, through submitit's
    watcher; array tasks are keyed ``<array>_<index>``."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class Watcher(SlurmInfoWatcher):
        def _make_command(self):
            command = super()._make_command()
            if command is not None:
                command[2] = "JobID,State,Reason,ExitCode,Elapsed,NodeList"
            return command

    watcher = Watcher(delay_s=0)
    for job_id in job_ids:
        watcher.register_job(str(job_id))
    watcher.update()
    return {job_id: watcher._info_dict.get(str(job_id), {}) for job_id in job_ids}


@dataclass
class JobView:
    """What one Slurm job of a node tells."""

    job_id: str
    cls: str  # PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, PREEMPTED, OUT_OF_MEMORY, CANCELLED, NODE_FAIL
    raw: str = ""
    reason: str = ""
    cause: str = ""
    stdout: str = ""
    stderr: str = ""
    by_dependency: bool = False  # cancelled by Slurm because a job it waited on failed

    @property
    def active(self) -> bool:
        return self.cls in ("PENDING", "RUNNING")

    def orphaned(self, inputs_done: bool) -> bool:
        """Cancelled by Slurm because a job it waited on did not succeed. sacct does not always
        keep the Dependency reason, but Slurm's own cancellation reads plain "CANCELLED" (a
        user's scancel reads "CANCELLED by UID"): plain CANCELLED with an input not done is it."""
        return self.by_dependency or (self.cls == "CANCELLED" and self.raw == "CANCELLED" and not inputs_done)


def job_paths(log_dir: Path, job_id: str):
    from submitit.core.utils import JobPaths

    return JobPaths(log_dir / "%j", job_id=job_id, task_id=0)


def view(job_id: str, row: dict[str, str], log_dir: Path, in_store: bool) -> JobView:
    """Classify one job from its sacct row, its submitit result and the store."""
    paths = job_paths(log_dir, job_id)
    raw = (row.get("State") or "UNKNOWN").strip()
    word = raw.split()[0].rstrip("+").upper() if raw else "UNKNOWN"
    out = JobView(job_id, word, raw, row.get("Reason", ""), stdout=str(paths.stdout), stderr=str(paths.stderr))
    outcome, trace = _result(paths.result_pickle)
    if in_store:
        out.cls = "COMPLETED"
        return out
    if word in ACTIVE:
        out.cls = "RUNNING" if word in ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT") else "PENDING"
        return out
    out.cls = CLASSES.get(word, word)
    if word == "CANCELLED" and raw == "CANCELLED" and "Dependency" in out.reason:
        out.by_dependency = True  # Slurm cancelled it (an input failed); a user's scancel reads 'CANCELLED by UID'
    if outcome == "error":
        out.cause = _last_error_line(trace)
        if "timed-out too many times" in trace:
            out.cls, out.cause = "TIMEOUT", f"time limit reached after {out.cause.split('because: ')[-1]}"
        elif out.cls == "COMPLETED":
            out.cls = "FAILED"
    elif out.cls == "COMPLETED":
        out.cls, out.cause = "FAILED", "the job ended without publishing its output"
    if not out.cause:
        out.cause = {
            "TIMEOUT": "time limit reached", "OUT_OF_MEMORY": "out of memory (raise compute.slurm.mem_gb)",
            "CANCELLED": "cancelled" + (" (an input failed)" if out.by_dependency else f" ({raw.lower()})"),
            "NODE_FAIL": "node failure", "PREEMPTED": "preempted",
            "FAILED": f"the job failed (exit code {row.get('ExitCode', '?')}) without a Python error",
        }.get(out.cls, f"slurm state {raw}")
    return out


def _result(path: Path) -> tuple[str | None, str]:
    if not path.exists():
        return None, ""
    try:
        from submitit.core.utils import pickle_load

        outcome, value = pickle_load(path)
        return outcome, value if isinstance(value, str) else ""
    except Exception:  # noqa: BLE001 - a result being written, or unreadable: no verdict from it
        return None, ""


def _last_error_line(trace: str) -> str:
    lines = [line.rstrip() for line in trace.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")):
            return line.strip()[:500]
    return (lines[-1].strip() if lines else "")[:500]


def log_tail(path: str | Path, lines: int = 12) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


# ---------------------------------------------------------------- the scheduler


def run(graph, layout, settings: SlurmSettings, study: str, detach: bool = False, progress: bool = True):
    """Submit every incomplete node of the graph; with ``detach`` return at once, else wait,
    resubmitting retryable failures. Returns a :class:`harness.dispatch.RunSummary`."""
    from harness.dispatch import RunSummary, read_state, write_state
    from harness.progress import GraphProgress

    check_cluster()
    summary = RunSummary()
    nodes = list(graph)
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        if layout.is_done(node):
            summary.skipped.append(node)
    todo = [n for n in nodes if not layout.is_done(n)]
    if not todo:
        return summary
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    # What an earlier invocation submitted (a detached run): wait on live jobs, never submit twice.
    records = {n.id: r for n in todo if (r := read_state(layout, n)) and r.get("executor") == "slurm"
               and r.get("job_id")}
    ours: set[str] = set()  # jobs submitted by this invocation
    attempts: dict[str, int] = {}
    final: dict[str, str] = {}  # node id -> outcome reported (done, failed, blocked)
    executor = make_executor(layout.log_dir / "%j", settings)
    poll = float(settings["poll_s"])

    with GraphProgress(graph, {n.id for n in summary.skipped}, enabled=progress) as bar:
        while True:
            live_ids = [r["job_id"] for nid, r in records.items() if nid not in final]
            rows = sacct(live_ids) if live_ids else {}
            views: dict[str, JobView] = {}
            for nid, rec in records.items():
                if nid in final:
                    continue
                node = by_id[nid]
                views[nid] = view(rec["job_id"], rows.get(rec["job_id"], {}), layout.log_dir, layout.is_done(node))
                if rec["job_id"] in ours and views[nid].cls == "UNKNOWN":
                    views[nid].cls = "PENDING"  # just submitted: sacct has not seen it yet
            # Decide, in graph order: done, live, failed for good, blocked, or to submit.
            status: dict[str, str] = {}
            submit: list = []
            for node in nodes:
                nid = node.id
                if layout.is_done(node):
                    status[nid] = "done"
                    continue
                v = views.get(nid)
                if nid in final:
                    status[nid] = final[nid]
                    continue
                if v is not None and v.active:
                    status[nid] = "live"
                    continue
                if v is not None and v.cls != "UNKNOWN" and records[nid]["job_id"] in ours:
                    retry = v.cls in RETRYABLE and attempts.get(nid, 0) <= int(settings["retries"])
                    # Inputs come first in graph order: their status is already decided.
                    if not (retry or v.orphaned(all(status.get(d.id) == "done" for d in node.inputs.values()))):
                        status[nid] = "failed"
                        continue
                inputs = [status.get(dep.id, "done") for dep in node.inputs.values()]
                if any(s in ("failed", "blocked") for s in inputs):
                    status[nid] = "blocked"
                elif all(s in ("done", "live", "submit") for s in inputs):
                    status[nid] = "submit"
                    submit.append(node)
                else:
                    status[nid] = "blocked"
            # Submit stage by stage: one array per group of nodes that wait on the same jobs.
            if submit:
                groups: dict[tuple[str, tuple[str, ...]], list] = {}
                for node in submit:  # grouped by the nodes they wait on (their jobs exist once submitted)
                    waits = tuple(sorted({d.id for d in node.inputs.values() if status.get(d.id) in ("live", "submit")}))
                    groups.setdefault((node.stage, waits), []).append(node)
                for stage in stages():
                    for (gstage, waits), group in groups.items():
                        if gstage != stage:
                            continue
                        deps = tuple(sorted({records[d]["job_id"] for d in waits}))
                        jobs = _submit(executor, settings, stage, study, group, deps, layout)
                        for node, job in zip(group, jobs):
                            attempts[node.id] = attempts.get(node.id, 0) + 1
                            prev = records.get(node.id) or {}
                            paths = job_paths(layout.log_dir, str(job.job_id))
                            records[node.id] = {
                                "executor": "slurm", "job_id": str(job.job_id), "stdout": str(paths.stdout),
                                "stderr": str(paths.stderr), "attempt": int(prev.get("attempt", 0)) + 1,
                                "dependency": list(deps), "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                            ours.add(str(job.job_id))
                            write_state(layout, node, "submitted", extra=records[node.id])
                        summary.submitted.update({n.id: records[n.id]["job_id"] for n in group})
            # Report what ended.
            for node in nodes:
                nid = node.id
                if nid in final:
                    continue
                s, v = status[nid], views.get(nid)
                if s == "done" and node not in summary.skipped:
                    final[nid] = "done"
                    summary.done.append(node)
                    if nid in records:
                        write_state(layout, node, "done", extra={**records[nid], "slurm_state": "COMPLETED"})
                    bar.advance(node, "done")
                elif s == "failed" and v is not None:
                    final[nid] = "failed"
                    summary.failed[nid] = f"{v.cls}: {v.cause}"
                    write_state(layout, node, "failed", cause=v.cause,
                                extra={**records[nid], "slurm_state": v.cls, "raw_state": v.raw})
                    bar.advance(node, "failed", f"{v.cls}: {v.cause} (log: {v.stderr})")
                elif s == "blocked" and not detach and not any(
                        status.get(n.id) in ("live", "submit") for n in _upstream(node)):
                    final[nid] = "blocked"
                    summary.blocked.append(node)
                    write_state(layout, node, "blocked", extra={**records.get(nid, {}), "slurm_state": "BLOCKED"},
                                cause="an input failed")
                    bar.advance(node, "blocked")
            if detach:
                break
            if not any(status[n.id] in ("live", "submit") for n in nodes):
                break
            time.sleep(poll)
    return summary


def _upstream(node) -> list:
    out, stack, seen = [], list(node.inputs.values()), set()
    while stack:
        dep = stack.pop()
        if dep.id in seen:
            continue
        seen.add(dep.id)
        out.append(dep)
        stack.extend(dep.inputs.values())
    return out


def _submit(executor, settings: SlurmSettings, stage: str, study: str, group: list, deps: tuple[str, ...], layout):
    from harness.dispatch import make_job

    params = executor_parameters(settings, stage, study)
    executor.parameters.clear()  # parameters persist across calls: no dependency or GPU may leak to the next group
    if deps:
        params["dependency"] = "afterok:" + ":".join(deps)
    executor.update_parameters(**params)
    jobs = []
    try:
        with executor.batch():
            for node in group:
                jobs.append(executor.submit(make_job(node, layout)))
    except Exception as exc:  # noqa: BLE001 - sbatch refused: say why, in one line
        text = str(exc).strip().splitlines()
        raise HarnessError(f"slurm: sbatch refused the {stage} jobs: {text[-1] if text else exc}") from None
    return jobs


# ---------------------------------------------------------------- status


def describe(graph, layout) -> list[dict[str, Any]]:
    """The state of every node of a study run through Slurm, read from sacct."""
    from harness.dispatch import read_state

    rows, pending_rows = [], []
    for node in graph:
        row = {"id": node.id, "stage": node.stage, "key": node.key, "label": node.label, "state": "pending"}
        rec = read_state(layout, node)
        if rec:
            row.update({k: rec[k] for k in ("job_id", "stdout", "stderr", "cause", "attempt") if k in rec})
        if layout.is_done(node):
            row["state"] = "done"
        elif rec and rec.get("executor") == "slurm" and rec.get("job_id"):
            pending_rows.append((row, node))
        elif rec and rec.get("state") == "failed":
            row["state"] = "failed"
        rows.append(row)
    if pending_rows:
        if shutil.which("sacct") is None:
            raise HarnessError("slurm: sacct not found on PATH: this study's jobs were sent to Slurm; "
                               "run status where Slurm answers")
        states = sacct([row["job_id"] for row, _ in pending_rows])
        for row, node in pending_rows:
            v = view(row["job_id"], states.get(row["job_id"], {}), layout.log_dir, False)
            row["slurm"] = v.cls
            if v.active:
                row["state"] = v.cls
            elif v.cls == "UNKNOWN":
                row["state"] = "pending"
            elif v.orphaned(all(layout.is_done(d) for d in node.inputs.values())):
                row["state"], row["cause"] = "BLOCKED", "an input failed"
            else:
                row["state"], row["cause"] = v.cls, v.cause
                if v.cls != "COMPLETED":
                    row["tail"] = log_tail(v.stderr)
            row["stderr"] = v.stderr
    return rows


# ---------------------------------------------------------------- Optuna on Slurm


@dataclass
class OptunaWorker:
    """One array task of a search: trials of one Optuna study whose only shared state is a
    journal file (``JournalStorage(JournalFileBackend)``; SQLite corrupts on NFS). Workers
    stop once the study holds ``total`` complete trials, so a requeued worker (time limit,
    preemption) simply carries on where the journal stands."""

    journal: str
    study_name: str
    objective: Any  # a picklable callable(trial) -> float, or "module:function"
    total: int

    def __call__(self) -> int:
        import optuna
        from optuna.study import MaxTrialsCallback

        study = optuna.load_study(study_name=self.study_name, storage=journal_storage(self.journal))
        objective = self.objective
        if isinstance(objective, str):
            import importlib

            module, name = objective.split(":")
            objective = getattr(importlib.import_module(module), name)
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        if done < self.total:
            study.optimize(objective, n_trials=self.total - done, callbacks=[MaxTrialsCallback(self.total)])
        return len(study.trials)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def journal_storage(path: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def optimize_on_slurm(objective: Any, total: int, workers: int, journal: str | Path, study_name: str,
                      folder: str | Path, settings: SlurmSettings | None = None, direction: str = "minimize",
                      sampler_seed: int | None = None) -> list:
    """Run an Optuna search as one Slurm job array of ``workers`` tasks sharing ``journal``;
    returns the submitit jobs (``job.result()`` is the number of trials each saw)."""
    import optuna

    journal = Path(journal).resolve()
    journal.parent.mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed) if sampler_seed is not None else None
    optuna.create_study(study_name=study_name, storage=journal_storage(journal), direction=direction,
                        sampler=sampler, load_if_exists=True)
    settings = settings or resolve({})
    check_cluster()
    executor = make_executor(Path(folder) / "%j", settings)
    executor.update_parameters(**executor_parameters(settings, "probe", study_name))
    with executor.batch():
        jobs = [executor.submit(OptunaWorker(str(journal), study_name, objective, total)) for _ in range(workers)]
    return jobs


FAILED_STATES = {"FAILED", "TIMEOUT", "PREEMPTED", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "BLOCKED", "failed"}


__all__ = ["SLURM", "SlurmSettings", "resolve", "run", "describe", "sacct", "view", "check_cluster",
           "executor_parameters", "FAILED_STATES", "OptunaWorker", "optimize_on_slurm",
           "journal_storage"]
