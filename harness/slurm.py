"""Slurm: settings (study overlaid on a cluster profile), whole-graph submission as job
arrays with ``afterok`` dependencies, and the state of every job read back from sacct.

Jobs are submitted through submitit's ``SlurmExecutor`` (``executor.batch()`` makes one
array per group of nodes that wait on the same jobs). States are read with one ``sacct``
call per poll (:func:`sacct`): the job rows *and* their step rows (submitit runs Python
in an srun step, and only the step shows OUT_OF_MEMORY), every earlier run of a requeued
job (``--duplicates``), and an error when sacct does not answer, where submitit's watcher
would warn and guess. No torch is imported.

How a graph is submitted. Stages go in in graph order (dataset, captions, ..., probe).
Within a stage, the nodes to run are grouped by the set of Slurm jobs they wait on; each
group is one job array whose ``--dependency=afterok:...`` names exactly those jobs, with
``--kill-on-invalid-dep=yes``: when a job fails, Slurm cancels the jobs that wait on it
(reported as *blocked*), while every branch that does not depend on it runs on. Nodes
already complete in the store are never submitted, and a node whose job is still queued
or running (from an earlier ``--detach``) is waited on, not submitted again. With
``compute.group_small_jobs`` (the default) the embed and probe nodes of one pre-trained
run are one job that runs them in sequence (:func:`batches`, :class:`harness.job.GroupJob`):
each keeps its key, completion record and classification, so a rerun submits exactly the
nodes still missing.

Failures. Each finished job is classified from its sacct state, its steps' states and
its submitit result: COMPLETED, FAILED (with the traceback's last line and the log's
tail), TIMEOUT, PREEMPTED, OUT_OF_MEMORY, CANCELLED, NODE_FAIL. Every job is requeued by
submitit on the time-limit signal (``StageJob.checkpoint``), at most ``retries`` times;
preemption and node failures are resubmitted by a waiting ``harness run``, at most
``retries`` times. Code errors are never retried. Each requeue and resubmission is one
line of the run's output.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.components import stages
from harness.errors import HarnessError
from harness.slurm_settings import (  # noqa: F401  (the settings, re-exported)
    DEFAULTS, RESOURCES, SLURM, SlurmSettings, load_profile, resolve, timing_problems,
)

# sacct states, by what they mean here.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING",
          "STAGE_OUT", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD", "STOPPED", "UNKNOWN"}
RETRYABLE = {"PREEMPTED", "NODE_FAIL"}  # resubmitted by a waiting run, bounded; code errors never
CLASSES = {"BOOT_FAIL": "NODE_FAIL", "DEADLINE": "TIMEOUT", "REVOKED": "CANCELLED"}


def check_cluster() -> None:
    """Fail before anything is submitted when no Slurm cluster answers (one line; where the
    client has no configuration at all, it says how to give it one)."""
    for tool in ("sbatch", "sacct", "scontrol"):
        if shutil.which(tool) is None:
            raise HarnessError(f"slurm: {tool} not found on PATH (is this a Slurm login node? "
                               "To try Slurm on one machine: scripts/slurm-up.sh)")
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise HarnessError("slurm: `scontrol ping` did not answer within 30 s") from None
    if proc.returncode != 0 or "UP" not in proc.stdout:
        raise HarnessError(f"slurm: the controller does not answer: {_said('scontrol ping', proc)}")


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

SACCT_FIELDS = ("JobID", "State", "Reason", "ExitCode", "Elapsed", "NodeList", "Submit")
CONFIG_HINT = "source the env.sh of your cluster, or set SLURM_CONF"


class SlurmUnreachable(HarnessError):
    """sacct or scontrol did not answer. Nothing is guessed in its place: a status that
    cannot read the states says so and exits non-zero."""


def _said(tool: str, proc: subprocess.CompletedProcess) -> str:
    """One line for a Slurm command that failed: its last line of output, then the fix when
    the client found no cluster configuration at all."""
    text = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
    last = text[-1] if text else f"exit code {proc.returncode}"
    hint = f"; {CONFIG_HINT}" if any("configuration source" in line for line in text) else ""
    return f"`{tool}`: {last}{hint}"


def sacct(job_ids: list[str], since: float | None = None, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The sacct record of each job, keyed ``<array>_<index>`` for array tasks.

    A record holds State, Reason, ExitCode, Elapsed, NodeList and Submit of the job's
    latest run, ``steps`` (step name -> state in that run: ``batch``, ``extern``, and ``0``,
    the srun step in which submitit runs Python) and ``earlier`` (the states of its earlier
    runs under the same id: a requeue leaves one each, read with ``--duplicates``). A job
    sacct does not know yet maps to ``{}``. ``since`` (epoch seconds) bounds the search,
    so that a job id reused long ago is never mistaken for an earlier run.

    Raises :class:`SlurmUnreachable` when sacct does not answer (no cluster configuration,
    controller or slurmdbd down): no state is ever guessed.
    """
    if not job_ids:
        return {}
    if shutil.which("sacct") is None:
        raise SlurmUnreachable("slurm: sacct not found on PATH: this study's jobs were sent to Slurm; "
                               "run this where Slurm answers")
    command = ["sacct", "--duplicates", "--parsable2", "-o", ",".join(SACCT_FIELDS)]
    if since is not None:
        command += ["-S", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))]
    for array in sorted({str(j).split("_")[0] for j in job_ids}, key=lambda a: (len(a), a)):
        command += ["-j", array]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmUnreachable(f"slurm: cannot read the job states: `sacct` did not answer within {timeout:.0f} s") \
            from None
    if proc.returncode != 0:
        raise SlurmUnreachable(f"slurm: cannot read the job states: {_said('sacct', proc)}")
    records = parse_sacct(proc.stdout)
    return {str(j): records.get(str(j), {}) for j in job_ids}


def parse_sacct(text: str) -> dict[str, dict[str, Any]]:
    """``sacct --parsable2 --duplicates`` output -> one record per job (see :func:`sacct`).

    Rows come in time order; a job row opens a run of that job (an earlier run of the same
    id is kept in ``earlier``), and the step rows after it (``<job>.<step>``) belong to it.
    A pending array range (``48_[2-5%1]``) stands for each of its tasks until a task has
    a row of its own."""
    from submitit.slurm.slurm import read_job_id

    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    names = lines[0].split("|")
    out: dict[str, dict[str, Any]] = {}
    ranged: set[str] = set()  # keys whose record is a pending range's
    for line in lines[1:]:
        row = {name: value.strip() for name, value in zip(names, line.split("|"))}
        job_id = row.get("JobID", "")
        if not job_id:
            continue
        if "." in job_id:
            key, step = job_id.split(".", 1)
            if key in out:
                out[key]["steps"][step] = row.get("State", "")
            continue
        try:
            parts = read_job_id(job_id)
        except Exception:  # noqa: BLE001 - a JobID this cannot read names none of our jobs
            continue
        is_range = "[" in job_id
        keys: list[str] = []
        for part in parts:
            if len(part) >= 3:
                keys += [f"{part[0]}_{i}" for i in range(int(part[1]), int(part[2]) + 1)]
            else:
                keys.append("_".join(part[:2]))
        for key in keys:
            prev = out.get(key)
            if is_range and prev is not None and key not in ranged:
                continue  # the task has its own row: the range's does not speak for it
            earlier = [] if prev is None or key in ranged else [*prev["earlier"], prev.get("State", "")]
            out[key] = {**{n: v for n, v in row.items() if n != "JobID"}, "steps": {}, "earlier": earlier}
            (ranged.add if is_range else ranged.discard)(key)
    return out


# States an earlier run of a job ended in when it ran again under the same id.
REQUEUE_CAUSES = {"REQUEUED": "requeued", "REQUEUE_FED": "requeued", "REQUEUE_HOLD": "requeued (held)",
                  "PREEMPTED": "preempted", "NODE_FAIL": "node failure", "BOOT_FAIL": "node failure",
                  "TIMEOUT": "time limit"}


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
    requeues: list[str] = field(default_factory=list)  # the cause of each requeue under this job id, in order

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


def _word(state: str) -> str:
    """The state's name: ``CANCELLED by 0`` -> CANCELLED, ``RUNNING+`` -> RUNNING."""
    return state.split()[0].rstrip("+").upper() if state and state.strip() else "UNKNOWN"


def view(job_id: str, row: dict[str, Any], log_dir: Path, in_store: bool, retries: int | None = None,
         mem_gb: float | None = None, node_id: str | None = None) -> JobView:
    """Classify one job from its sacct record (:func:`sacct`), its submitit result and the store.

    Read the job's state *before* looking at the store: a job that finishes in between then
    reads COMPLETED and done, never "ended without publishing its output". ``retries`` and
    ``mem_gb`` (the node's settings when it was submitted) make the causes exact. For a
    node run in a group job (:class:`harness.job.GroupJob`), ``node_id`` picks its own
    outcome from the group's result: FAILED with its traceback's last line, or cancelled
    because an input in the group failed; a state of the whole job (time limit, memory,
    preemption, cancellation) is the state of each of its nodes that is not complete.
    """
    paths = job_paths(log_dir, job_id)
    raw = (row.get("State") or "UNKNOWN").strip()
    word = _word(raw)
    out = JobView(job_id, word, raw, row.get("Reason", ""), stdout=str(paths.stdout), stderr=str(paths.stderr))
    earlier = [_word(s) for s in row.get("earlier") or []]
    out.requeues = [REQUEUE_CAUSES.get(s, s.lower()) for s in earlier]
    if word in ("REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"):  # requeued, the next run not started yet
        out.requeues.append(REQUEUE_CAUSES[word])
    if in_store:
        out.cls = "COMPLETED"
        return out
    if word in ACTIVE:
        out.cls = "RUNNING" if word in ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT") else "PENDING"
        return out
    outcome, value = _result(paths.result_pickle)
    trace = value if isinstance(value, str) else ""
    out.cls = CLASSES.get(word, word)
    own = value.get(node_id) if isinstance(value, dict) and outcome == "success" else None
    if own and own.startswith("blocked: "):  # not run: an input in the same group job failed
        out.cls, out.by_dependency, out.cause = "CANCELLED", True, f"cancelled (an input failed: {own[9:]})"
        return out
    if own:  # this node raised in its group job, which went on with the others
        out.cls, out.cause = "FAILED", _last_error_line(own)
        return out
    steps = {name: _word(state) for name, state in (row.get("steps") or {}).items()}
    if word == "CANCELLED" and raw == "CANCELLED" and "Dependency" in out.reason:
        out.by_dependency = True  # Slurm cancelled it (an input failed); a user's scancel reads 'CANCELLED by UID'
    oom = sorted(name for name, state in steps.items() if state == "OUT_OF_MEMORY")
    if oom and out.cls not in ("CANCELLED", "PREEMPTED", "NODE_FAIL"):
        # The job reads FAILED 1:0; the step that ran Python (submitit's srun step 0) was killed for memory.
        limit = f"{mem_gb:g} GB" if mem_gb else "the cluster's default memory"
        out.cls = "OUT_OF_MEMORY"
        out.cause = (f"out of memory: step {', '.join(oom)} went over its {limit} and was killed; "
                     "raise compute.slurm.mem_gb (or stages.<stage>.mem_gb)")
        return out
    if outcome == "error":
        out.cause = _last_error_line(trace)
        if "timed-out too many times" in trace or "timed-out and not checkpointable" in trace:
            out.cls, out.cause = "TIMEOUT", _timeout_cause(retries, len(out.requeues))
        elif out.cls == "COMPLETED":
            out.cls = "FAILED"
    elif out.cls == "COMPLETED":
        out.cls, out.cause = "FAILED", "the job ended without publishing its output"
    if not out.cause:
        out.cause = {
            "TIMEOUT": _timeout_cause(retries, len(out.requeues)),
            "OUT_OF_MEMORY": "out of memory: raise compute.slurm.mem_gb (or stages.<stage>.mem_gb)",
            "CANCELLED": "cancelled" + (" (an input failed)" if out.by_dependency else f" ({raw.lower()})"),
            "NODE_FAIL": "node failure", "PREEMPTED": "preempted",
            "FAILED": f"the job failed (exit code {row.get('ExitCode', '?')}) without a Python error",
        }.get(out.cls, f"slurm state {raw}")
    return out


def _timeout_cause(retries: int | None, requeued: int) -> str:
    """Why a job ended TIMEOUT, true to how often it was requeued and was allowed to be."""
    fix = "raise time_min, or retries with checkpoints"
    if requeued:
        return (f"time limit reached again after {requeued} requeue{'s' if requeued > 1 else ''}"
                + (f" (retries: {retries})" if retries is not None else "") + f"; {fix}")
    if retries == 0:
        return f"time limit reached (retries is 0: not requeued); {fix}"
    return f"time limit reached; {fix}"


def requeue_cause(log: str | Path, run: int, fallback: str) -> str:
    """The cause of the requeue that ended run ``run`` (0: the first) of a job, as submitit's
    log (its stdout, where its INFO lines go) tells it: each run starts with ``Starting
    with JobEnvironment``, and its signal handler writes ``this job is timed-out`` or ``this
    job is preempted`` before it requeues. ``fallback`` when that run caught no signal
    (``scontrol requeue``)."""
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fallback
    runs = text.split("Starting with JobEnvironment")[1:]
    if run >= len(runs):
        return fallback
    for line in reversed(runs[run].splitlines()):
        if "Caught signal" in line and "this job is" in line:
            case = line.rsplit("this job is", 1)[1].strip(" .")
            return {"timed-out": "time limit (signalled before it, checkpointed)",
                    "preempted": "preempted (signalled, checkpointed)"}.get(case, fallback)
    return fallback


def _result(path: Path) -> tuple[str | None, Any]:
    """(``"success"`` or ``"error"``, the job's return value or traceback) from submitit's result."""
    if not path.exists():
        return None, None
    try:
        from submitit.core.utils import pickle_load

        return pickle_load(path)
    except Exception:  # noqa: BLE001 - a result being written, or unreadable: no verdict from it
        return None, None


def _last_error_line(trace: str) -> str:
    lines = [line.rstrip() for line in trace.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")):
            return line.strip()[:500]
    return (lines[-1].strip() if lines else "")[:500]


def log_tail(path: str | Path, lines: int = 12) -> list[str]:
    """The last ``lines`` non-empty lines of a log (read from its last 16 KiB)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


# ---------------------------------------------------------------- the scheduler


UNREACHABLE_S = 300  # a waiting run rides out Slurm not answering for this long, then stops (the jobs go on)
UNKNOWN_AFTER_S = 120  # a job sacct has no row for is pending this long after its submission, then UNKNOWN


def run(graph, layout, settings: SlurmSettings, study: str, detach: bool = False, progress: bool = True):
    """Submit every incomplete node of the graph; with ``detach`` return at once, else wait,
    resubmitting retryable failures. Every requeue (same job id: a time limit, ``scontrol
    requeue``) and every resubmission (a new job: preemption, node failure) is one line with
    its cause and attempt number. Returns a :class:`harness.dispatch.RunSummary`."""
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
    resubmit: dict[str, str] = {}  # node id -> why it is submitted again in this run
    executor = make_executor(layout.log_dir / "%j", settings)
    poll = float(settings["poll_s"])
    retries = int(settings["retries"])
    silent_since: float | None = None  # since when sacct has not answered

    with GraphProgress(graph, {n.id for n in summary.skipped}, enabled=progress) as bar:
        while True:
            live = {nid: r for nid, r in records.items() if nid not in final}
            try:
                rows = sacct([r["job_id"] for r in live.values()], since=_since(live.values())) if live else {}
            except SlurmUnreachable as exc:  # no state is guessed: wait for Slurm to answer, within bounds
                now = time.time()
                if silent_since is None:
                    silent_since = now
                    bar.say(f"{exc.problems[0]}; waiting up to {UNREACHABLE_S} s for it to answer (the jobs go on)")
                elif now - silent_since > UNREACHABLE_S:
                    raise SlurmUnreachable(f"{exc.problems[0]} (for {now - silent_since:.0f} s); the queued jobs go "
                                           "on: run the same command again to attach to them") from None
                time.sleep(poll)
                continue
            if silent_since is not None:
                bar.say(f"slurm: sacct answers again after {time.time() - silent_since:.0f} s")
                silent_since = None
            views: dict[str, JobView] = {}
            for nid, rec in live.items():
                node = by_id[nid]
                # the store is read after the job states: a job that finishes in between is done, not failed
                views[nid] = v = view(rec["job_id"], rows.get(rec["job_id"], {}), layout.log_dir, layout.is_done(node),
                                      retries=rec.get("retries"), mem_gb=rec.get("mem_gb"), node_id=nid)
                if v.cls == "UNKNOWN" and (rec["job_id"] in ours or _recent(rec)):
                    v.cls = "PENDING"  # just submitted (here or by a --detach a moment ago): sacct has no row yet
                _report_requeues(node, rec, v, bar, summary, layout, write_state)
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
                    retry = v.cls in RETRYABLE and attempts.get(nid, 0) <= retries
                    # Inputs come first in graph order: their status is already decided.
                    orphaned = v.orphaned(all(status.get(d.id) == "done" for d in node.inputs.values()))
                    if not (retry or orphaned):
                        status[nid] = "failed"
                        continue
                    resubmit[nid] = f"{v.cls} ({v.cause})" if retry else "an input was resubmitted"
                inputs = [status.get(dep.id, "done") for dep in node.inputs.values()]
                if any(s in ("failed", "blocked") for s in inputs):
                    status[nid] = "blocked"
                elif all(s in ("done", "live", "submit") for s in inputs):
                    status[nid] = "submit"
                    submit.append(node)
                else:
                    status[nid] = "blocked"
            # Submit stage by stage: one array per set of jobs waited on (batches()).
            if submit:
                live = {nid for nid, st in status.items() if st in ("live", "submit")}
                for stage, waits, units in batches(submit, live, bool(settings["group_small_jobs"])):
                    deps = tuple(sorted({records[d]["job_id"] for d in waits}))
                    jobs = _submit(executor, settings, stage, study, units, deps, layout)
                    res = settings.resources(stage)
                    for unit, job in zip(units, jobs):
                        for node in unit:
                            attempts[node.id] = attempts.get(node.id, 0) + 1
                            prev = records.get(node.id) or {}
                            paths = job_paths(layout.log_dir, str(job.job_id))
                            records[node.id] = {
                                "executor": "slurm", "job_id": str(job.job_id), "stdout": str(paths.stdout),
                                "stderr": str(paths.stderr), "attempt": int(prev.get("attempt", 0)) + 1,
                                "dependency": list(deps), "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "retries": retries, "time_min": res.get("time_min"), "mem_gb": res.get("mem_gb")}
                            if len(unit) > 1:
                                records[node.id]["group"] = [n.id for n in unit]
                            ours.add(str(job.job_id))
                            write_state(layout, node, "submitted", extra=records[node.id])
                            if node.id in resubmit and prev.get("job_id") in ours:
                                why = resubmit.pop(node.id)
                                summary.requeued.setdefault(node.id, []).append(why)
                                bar.note(node, "resubmitted", f"{why}; attempt {attempts[node.id]} of at most "
                                         f"{retries + 1} [job {job.job_id}, was {prev['job_id']}]")
                        summary.submitted.update({n.id: records[n.id]["job_id"] for n in unit})
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
                    log = v.stderr if Path(v.stderr).is_file() else "none (the job never started)"
                    bar.advance(node, "failed", f"{v.cls}: {v.cause} (log: {log})")
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


def _since(records) -> float | None:
    """An hour before the earliest submission among ``records``: the start of the sacct
    search, so that an id that Slurm used for another job long ago is never read as ours."""
    from datetime import datetime

    times = []
    for rec in records:
        try:
            times.append(datetime.strptime(rec["submitted_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp())
        except (KeyError, TypeError, ValueError):
            return None  # a record without a readable time: no bound
    return min(times) - 3600 if times else None


def _recent(rec: dict) -> bool:
    """Whether the record's job was submitted less than ``UNKNOWN_AFTER_S`` ago."""
    since = _since([rec])
    return since is not None and time.time() - since - 3600 < UNKNOWN_AFTER_S


def _report_requeues(node, rec: dict, v: JobView, bar, summary, layout, write_state) -> None:
    """One line for each requeue of the node's job not reported yet (by this run or an
    earlier one: the count is kept in the node's state record)."""
    seen = int(rec.get("requeues", 0))
    if len(v.requeues) <= seen:
        return
    limit = rec.get("retries")
    for n in range(seen, len(v.requeues)):
        cause = v.requeues[n]
        if cause == "requeued":
            cause = requeue_cause(v.stdout, n, "requeued (scontrol requeue)")
        bound = f" of at most {int(limit) + 1}" if cause.startswith("time limit") and limit is not None else ""
        summary.requeued.setdefault(node.id, []).append(cause)
        bar.note(node, "requeued", f"{cause}; attempt {n + 2}{bound} [job {v.job_id}]")
    rec["requeues"] = len(v.requeues)
    write_state(layout, node, "submitted", extra=rec)


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


GROUPED = ("embed", "probe")  # the small stages whose nodes of one run go out as one job (group_small_jobs)


def batches(submit: list, live: set[str], group: bool) -> list[tuple[str, tuple[str, ...], list[list]]]:
    """The sbatch submissions that queue ``submit`` (nodes in graph order), in order:
    ``(stage, node ids waited on, units)``, one job array each, one array element per unit.

    A unit is the nodes one job runs: a single node, or with ``group`` the embed and probe
    nodes of one pre-trained run (:data:`GROUPED`), run in sequence by a
    :class:`~harness.job.GroupJob`, under the resources of its first node's stage. A unit
    waits on the nodes outside it that are in ``live`` (queued, running, or being
    submitted); units of one stage that wait on the same nodes share an array. Stages go in
    graph order, so every job waited on is submitted before the jobs that wait on it."""
    units: dict[tuple[str, str], list] = {}
    for node in submit:
        run = _run_of(node) if group and node.stage in GROUPED else None
        units.setdefault(("run", run) if run else ("node", node.id), []).append(node)
    arrays: dict[tuple[str, tuple[str, ...]], list[list]] = {}
    for unit in units.values():
        ids = {n.id for n in unit}
        waits = tuple(sorted({d.id for n in unit for d in n.inputs.values() if d.id in live and d.id not in ids}))
        arrays.setdefault((unit[0].stage, waits), []).append(unit)
    order = {stage: i for i, stage in enumerate(stages())}
    return [(stage, waits, found) for (stage, waits), found in
            sorted(arrays.items(), key=lambda item: order[item[0][0]])]


def _run_of(node) -> str | None:
    """The id of the pre-trained run (or external encoder) an embed or probe node measures."""
    while True:
        up = [d for d in node.inputs.values() if d.stage in GROUPED]
        if not up:
            run = node.inputs.get("pretrain")
            return run.id if run is not None else None
        node = up[0]


def count_submissions(graph, group: bool) -> tuple[int, int]:
    """(sbatch submissions, Slurm jobs) that queue a whole graph from an empty store."""
    nodes = list(graph)
    plan = batches(nodes, {n.id for n in nodes}, group)
    return len(plan), sum(len(units) for _, _, units in plan)


def _submit(executor, settings: SlurmSettings, stage: str, study: str, units: list[list], deps: tuple[str, ...],
            layout):
    from harness.dispatch import make_job
    from harness.job import GroupJob

    params = executor_parameters(settings, stage, study)
    if any(len(unit) > 1 for unit in units):
        params["job_name"] = f"{_safe(study)}.{'+'.join(GROUPED)}"
    executor.parameters.clear()  # parameters persist across calls: no dependency or GPU may leak to the next group
    if deps:
        params["dependency"] = "afterok:" + ":".join(deps)
    executor.update_parameters(**params)
    jobs = []
    try:
        with executor.batch():
            for unit in units:
                job = make_job(unit[0], layout) if len(unit) == 1 else GroupJob([make_job(n, layout) for n in unit])
                jobs.append(executor.submit(job))
    except Exception as exc:  # noqa: BLE001 - sbatch refused: say why, in one line
        text = str(exc).strip().splitlines()
        raise HarnessError(f"slurm: sbatch refused the {stage} jobs: {text[-1] if text else exc}") from None
    return jobs


# ---------------------------------------------------------------- status


def describe(graph, layout) -> list[dict[str, Any]]:
    """The state of every node of a study run through Slurm, read from sacct.

    The job states are read first and the store after them, so that a job that completes
    during the poll reads done, never "ended without publishing its output". When sacct
    cannot answer, :class:`SlurmUnreachable` is raised: no state is shown that was not read
    now. A BLOCKED node points at the input that failed and at that input's log; a failed
    node names its log only if the job wrote one.
    """
    from harness.dispatch import read_state

    rows, asked = [], []
    for node in graph:
        row = {"id": node.id, "stage": node.stage, "key": node.key, "label": node.label, "state": "pending"}
        rec = read_state(layout, node)
        if rec:
            row.update({k: rec[k] for k in ("job_id", "stdout", "stderr", "cause", "attempt") if k in rec})
        if layout.is_done(node):
            row["state"] = "done"
        elif rec and rec.get("executor") == "slurm" and rec.get("job_id"):
            asked.append((row, node, rec))
        elif rec and rec.get("state") == "failed":
            row["state"] = "failed"
        rows.append(row)
    if not asked:
        return rows
    states = sacct([row["job_id"] for row, _, _ in asked], since=_since(rec for _, _, rec in asked))
    by_id = {row["id"]: row for row in rows}
    for row, node, rec in asked:  # graph order: a node's inputs are decided before it
        # read the store only now, after the job states
        v = view(row["job_id"], states.get(row["job_id"], {}), layout.log_dir, layout.is_done(node),
                 retries=rec.get("retries"), mem_gb=rec.get("mem_gb"), node_id=node.id)
        row["slurm"] = v.cls
        row["stderr"] = v.stderr
        if v.requeues:
            row["requeues"] = v.requeues
        if v.cls == "COMPLETED":
            row["state"] = "done"
        elif v.active:
            row["state"] = v.cls
        elif v.cls == "UNKNOWN":  # sacct has no row for it: just submitted, or purged from accounting
            since = _since([rec])
            if since is None or _recent(rec):
                row["state"] = "pending"
            else:
                row["state"] = "UNKNOWN"
                row["cause"] = (f"sacct has no record of job {row['job_id']}, submitted "
                                f"{(time.time() - since - 3600) / 60:.0f} min ago (purged from accounting, "
                                "or another cluster's?)")
        elif v.orphaned(all(by_id[d.id]["state"] == "done" for d in node.inputs.values())):
            row["state"] = "BLOCKED"
            culprit = _failed_input(node, by_id)
            row["blocked_by"] = culprit["id"] if culprit else None
            row["cause"] = (f"an input failed: {culprit['stage']} {culprit['label']} ({culprit['state']})"
                            if culprit else "an input failed")
            row["stderr"] = culprit.get("stderr") if culprit else None  # this job never ran: no log of its own
        else:
            row["state"], row["cause"] = v.cls, v.cause
            row["tail"] = log_tail(v.stderr)
    for row in rows:  # a log is shown only if it was written
        if row.get("stderr") and not Path(row["stderr"]).is_file():
            row["stderr"] = None
    return rows


def _failed_input(node, by_id: dict[str, dict]) -> dict | None:
    """The row of the failed job that blocks ``node``: an input that failed, or the input
    that blocks a blocked input."""
    for dep in node.inputs.values():
        row = by_id.get(dep.id)
        if row is None or row["state"] in ("done", "pending", "PENDING", "RUNNING"):
            continue
        if row["state"] == "BLOCKED":
            return by_id.get(row.get("blocked_by")) if row.get("blocked_by") else row
        return row
    return None


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


__all__ = ["SLURM", "SlurmSettings", "SlurmUnreachable", "resolve", "run", "describe", "sacct", "parse_sacct",
           "view", "check_cluster", "executor_parameters", "FAILED_STATES", "OptunaWorker", "optimize_on_slurm",
           "journal_storage", "batches", "count_submissions"]
