"""The Slurm executor, on a real Slurm cluster (no mocks).

Tests marked ``slurm`` need a running cluster that ``sbatch``/``sacct`` reach (SLURM_CONF):
``scripts/slurm-up.sh`` starts one on this machine and ``.ci/run`` does so in CI. Without a
cluster they skip with the reason, except where HARNESS_REQUIRE_SLURM=1 (CI), where they
fail. The validation tests at the top need no cluster.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError, StudyError
from harness.slurm import FAILED_STATES

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "studies" / "base" / "mini.yaml"

STUDY = """
include: {base}
name: {name}
tagging: {{sizes: [8], files: {files}}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  baselines: {baselines}
  steps: {steps}
  batch_size: 8
  checkpoint_every: {every}
probes: {{tasks: [mini/env_event], epochs: 5, lrs: [0.01], weight_decays: [0.0]}}
compute: {{slurm: {slurm}}}
"""


def write_study(folder: Path, name: str = "slurmtest", steps: int = 4, every: int = 100, files: list | None = None,
                baselines: list | None = None, slurm: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(base=BASE, name=name, steps=steps, every=every, files=json.dumps(files or []),
                                 baselines=json.dumps(["random"] if baselines is None else baselines),
                                 slurm=json.dumps({"time_min": 20, "poll_s": 1, **(slurm or {})})))
    return path


# ------------------------------------------------------------------ validation (no cluster)


def test_names_that_reach_sbatch_are_a_strict_charset(tmp_path):
    from harness.study import load_study

    path = write_study(tmp_path, slurm={
        "partition": "gpu --wrap=reboot", "account": "a b", "qos": "x;y", "constraint": "a100$(id)",
        "mem_gb": -1, "gpus_per_node": 100, "time_min": 0, "retries": 99, "nodes": "two",
        "stages": {"pretrain": {"partition": "ok\nbad"}, "probes": {}}})
    with pytest.raises(StudyError) as err:
        load_study(path)
    lines = err.value.problems
    for key in ("partition", "account", "qos", "constraint", "mem_gb", "gpus_per_node", "time_min", "retries",
                "nodes", "stages.pretrain.partition", "stages.probes"):
        assert any(f"compute.slurm.{key}:" in line for line in lines), (key, lines)
    assert all(line.startswith(os.path.relpath(path)) for line in lines)
    assert len(lines) == 11


def test_profile_is_overlaid_by_the_study_and_validated(tmp_path):
    from harness import slurm
    from harness.study import load_study

    profile = tmp_path / "cluster.yaml"
    profile.write_text("partition: gpu\naccount: lab\ntime_min: 600\ngpus_per_node: 8\n"
                       "stages: {probe: {gpus_per_node: 0, partition: cpu, time_min: 30}}\n")
    study = load_study(write_study(tmp_path, slurm={"time_min": 120, "retries": 3}))
    settings = slurm.resolve(study.config["compute"], study.path, profile)
    assert settings["partition"] == "gpu" and settings["account"] == "lab"
    assert settings["time_min"] == 120 and settings["retries"] == 3  # the study wins
    pre = slurm.executor_parameters(settings, "pretrain", "s")
    assert pre["gpus_per_node"] == 8 and pre["ntasks_per_node"] == 8 and pre["time"] == 120
    probe = slurm.executor_parameters(settings, "probe", "s")
    assert "gpus_per_node" not in probe and probe["ntasks_per_node"] == 1 and probe["partition"] == "cpu"
    assert probe["additional_parameters"]["kill-on-invalid-dep"] == "yes"

    profile.write_text("partition: 'gpu;reboot'\nqos: [a]\nbogus: 1\n")
    with pytest.raises(HarnessError) as err:
        slurm.resolve(study.config["compute"], study.path, profile)
    assert [line.split(": ")[1] for line in err.value.problems] == ["slurm.bogus", "slurm.partition", "slurm.qos"]
    assert all(line.startswith(os.path.relpath(profile)) for line in err.value.problems)
    example = slurm.resolve(study.config["compute"], study.path, ROOT / "studies" / "clusters" / "example.yaml")
    assert slurm.executor_parameters(example, "pretrain", "s")["ntasks_per_node"] == 8
    with pytest.raises(HarnessError, match="cluster profile not found"):
        slurm.resolve(study.config["compute"], study.path, tmp_path / "missing.yaml")


def test_cli_refuses_before_submitting_when_no_cluster_answers(tmp_path, harness_env):
    path = write_study(tmp_path)
    (tmp_path / "bin").mkdir()
    env = {**harness_env, "PATH": str(tmp_path / "bin")}  # no sbatch
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--executor", "slurm", "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: slurm: sbatch not found on PATH (is this a Slurm login node? To try Slurm on one machine: "
        "scripts/slurm-up.sh)"]
    assert not (tmp_path / "out" / "state").exists()


def test_job_states_are_classified(tmp_path):
    from harness.slurm import view

    def cls(state, reason="None", store=False):
        v = view("7", {"State": state, "Reason": reason, "ExitCode": "1:0"}, tmp_path, store)
        return v.cls, v.by_dependency

    assert cls("RUNNING") == ("RUNNING", False) and cls("REQUEUED") == ("PENDING", False)
    assert cls("COMPLETED", store=True) == ("COMPLETED", False)
    assert cls("COMPLETED") == ("FAILED", False)  # ended without publishing its output
    assert cls("CANCELLED by 0") == ("CANCELLED", False)
    assert cls("CANCELLED", "Dependency") == ("CANCELLED", True)
    for state in ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "FAILED"):
        assert cls(state) == (state, False)
    assert cls("BOOT_FAIL") == ("NODE_FAIL", False)

    # Slurm's own cancellation of a job whose input did not succeed, when sacct lost the reason:
    # plain CANCELLED with an input not done; never a user's scancel, never with inputs done.
    def orphaned(state, reason="None", inputs_done=False):
        return view("7", {"State": state, "Reason": reason}, tmp_path, False).orphaned(inputs_done)

    assert orphaned("CANCELLED") and orphaned("CANCELLED", "Dependency", inputs_done=True)
    assert not orphaned("CANCELLED", inputs_done=True)
    assert not orphaned("CANCELLED by 0") and not orphaned("FAILED") and not orphaned("PREEMPTED")


# sacct's own output, as the test cluster of scripts/slurm-up.sh wrote it (memory enforced):
# a job over its --mem (the Python step 0 killed), an array task requeued with `scontrol
# requeue`, and an array whose last tasks are still one pending range.
SACCT = """\
JobID|State|Reason|ExitCode|Elapsed|NodeList|Submit
7|FAILED|None|1:0|00:00:00|localhost|2026-12-07T13:22:23
7.batch|FAILED||1:0|00:00:00|localhost|2026-12-07T13:22:25
7.0|OUT_OF_MEMORY||0:125|00:00:00|localhost|2026-12-07T13:22:25
1_0|REQUEUED|None|0:0|00:00:03|localhost|2026-12-07T13:15:58
1_0.batch|CANCELLED||0:15|00:00:03|localhost|2026-12-07T13:15:59
1_1|COMPLETED|None|0:0|00:00:06|localhost|2026-12-07T13:15:58
1_1.batch|COMPLETED||0:0|00:00:06|localhost|2026-12-07T13:15:59
1_0|COMPLETED|BeginTime|0:0|00:00:06|localhost|2026-12-07T13:16:02
1_0.batch|COMPLETED||0:0|00:00:06|localhost|2026-12-07T13:16:14
3_0|COMPLETED|None|0:0|00:00:03|localhost|2026-12-07T13:17:01
3_0.batch|COMPLETED||0:0|00:00:03|localhost|2026-12-07T13:17:01
3_1|RUNNING|None|0:0|00:00:01|localhost|2026-12-07T13:17:01
3_[2-3%1]|PENDING|JobArrayTaskLimit|0:0|00:00:00|None assigned|2026-12-07T13:17:01
"""


def test_sacct_rows_steps_and_earlier_runs_are_read():
    from harness.slurm import parse_sacct

    rows = parse_sacct(SACCT)
    assert rows["7"]["State"] == "FAILED" and rows["7"]["steps"] == {"batch": "FAILED", "0": "OUT_OF_MEMORY"}
    assert rows["1_0"]["State"] == "COMPLETED" and rows["1_0"]["earlier"] == ["REQUEUED"]
    assert rows["1_0"]["steps"] == {"batch": "COMPLETED"}  # the steps of its latest run only
    assert rows["1_1"]["earlier"] == [] and rows["3_1"]["State"] == "RUNNING"
    assert rows["3_2"]["State"] == rows["3_3"]["State"] == "PENDING" and rows["3_2"]["earlier"] == []


def test_a_step_killed_for_memory_is_out_of_memory_not_failed(tmp_path):
    """sacct reads the job FAILED 1:0 and only its step 0 (where submitit runs Python)
    OUT_OF_MEMORY: the job is OUT_OF_MEMORY, with the limit and the fix."""
    from harness.slurm import parse_sacct, view

    rows = parse_sacct(SACCT)
    v = view("7", rows["7"], tmp_path, False, retries=2, mem_gb=0.25)
    assert v.cls == "OUT_OF_MEMORY"
    assert "0.25 GB" in v.cause and "raise compute.slurm.mem_gb" in v.cause
    failed = {**rows["7"], "steps": {"batch": "FAILED", "0": "FAILED"}}
    assert view("7", failed, tmp_path, False).cause == "the job failed (exit code 1:0) without a Python error"
    # a job requeued once, then completed and published: done, its requeue known
    done = view("1_0", rows["1_0"], tmp_path, True)
    assert done.cls == "COMPLETED" and done.requeues == ["requeued"]


def test_timeout_cause_is_true_to_the_retries(tmp_path):
    from submitit.core.utils import cloudpickle_dump

    from harness.slurm import job_paths, view

    trace = ("Traceback (most recent call last):\n  File ...\nsubmitit.core.utils.UncompletedJobError: "
             "Job not requeued because: timed-out too many times.")
    path = job_paths(tmp_path, "9").result_pickle
    path.parent.mkdir(parents=True)
    cloudpickle_dump(("error", trace), path)  # what submitit writes when it gives up
    never = view("9", {"State": "TIMEOUT", "ExitCode": "0:0"}, tmp_path, False, retries=0)
    assert never.cls == "TIMEOUT" and "too many" not in never.cause and "retries is 0" in never.cause
    twice = view("9", {"State": "TIMEOUT", "earlier": ["REQUEUED", "REQUEUED"]}, tmp_path, False, retries=2)
    assert twice.cause.startswith("time limit reached again after 2 requeues (retries: 2)")


def test_the_cause_of_each_requeue_is_read_from_the_run_it_ended(tmp_path):
    """submitit's log: each run starts with its JobEnvironment line; a run it requeued on a
    signal says why. A run that caught no signal was requeued from outside."""
    from harness.slurm import requeue_cause

    log = tmp_path / "48_0_log.out"
    log.write_text(
        "submitit INFO (2026-12-07 13:40:00,000) - Starting with JobEnvironment(job_id=48, hostname=n1)\n"
        "submitit WARNING (2026-12-07 13:40:30,000) - Caught signal SIGUSR2 on n1: this job is timed-out.\n"
        "submitit INFO (2026-12-07 13:40:31,000) - Requeued job 48 (1 remaining timeouts)\n"
        "submitit INFO (2026-12-07 13:40:45,000) - Starting with JobEnvironment(job_id=48, hostname=n1)\n"
        "step 10: loss 0.5\n"
        "submitit INFO (2026-12-07 13:41:45,000) - Starting with JobEnvironment(job_id=48, hostname=n1)\n")
    assert requeue_cause(log, 0, "?").startswith("time limit")
    assert requeue_cause(log, 1, "requeued (scontrol requeue)") == "requeued (scontrol requeue)"
    assert requeue_cause(tmp_path / "none.err", 0, "?") == "?"


def _slurm_graph(tmp_path):
    """A study's graph and layout with every node done except those of the mtc branch."""
    from harness.dispatch import Layout
    from harness.graph import expand
    from harness.study import load_study

    graph = expand(load_study(write_study(tmp_path)).config)
    layout = Layout(out=tmp_path / "out", cache=tmp_path / "home")
    nodes = {n.stage: n for n in graph if "random" not in n.label}  # the mtc branch, by stage
    for node in graph:
        if node.stage in ("dataset", "captions", "tags") or "random" in node.label:
            layout.store_for(node.stage).commit(node.stage, node.key, {"outputs": {}})
    return graph, layout, nodes


def _submitted(layout, node, job_id: str) -> None:
    """The state record a run writes when it submits ``node`` as ``job_id``."""
    from harness.dispatch import write_state
    from harness.slurm import job_paths

    paths = job_paths(layout.log_dir, job_id)
    write_state(layout, node, "submitted", extra={
        "executor": "slurm", "job_id": job_id, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "retries": 2,
        "stdout": str(paths.stdout), "stderr": str(paths.stderr)})


def test_a_job_completing_during_a_status_poll_is_done_not_failed(tmp_path, monkeypatch):
    """Completion races the poll: the job publishes its output and ends after status has
    looked at the store and before sacct answers. Status reads the job states first and the
    store after them, so the job is done; it never reads "ended without publishing"."""
    from harness import slurm

    graph, layout, nodes = _slurm_graph(tmp_path)
    node = nodes["tagsystem"]
    _submitted(layout, node, "41_0")
    polls = []

    def sacct(job_ids, since=None, timeout=60):
        polls.append(list(job_ids))
        if len(polls) == 1:  # the job finishes between the store check and sacct's answer
            layout.store_for(node.stage).commit(node.stage, node.key, {"outputs": {}})
        return {j: {"State": "COMPLETED", "ExitCode": "0:0", "steps": {"batch": "COMPLETED", "0": "COMPLETED"},
                    "earlier": []} for j in job_ids}

    monkeypatch.setattr(slurm, "sacct", sacct)
    rows = {r["id"]: r for r in slurm.describe(graph, layout)}
    assert polls == [["41_0"]] and rows[node.id]["state"] == "done"
    rows = {r["id"]: r for r in slurm.describe(graph, layout)}
    assert rows[node.id]["state"] == "done" and len(polls) == 1  # done in the store now: sacct is not asked

    # sacct says COMPLETED and nothing was published: that is a failure, said once the store is read after it
    other = nodes["pretrain"]
    _submitted(layout, other, "42_0")
    rows = {r["id"]: r for r in slurm.describe(graph, layout)}
    assert rows[other.id]["state"] == "FAILED" and rows[other.id]["cause"] == "the job ended without publishing its output"


def test_blocked_rows_point_at_the_failed_input_and_its_log(tmp_path, monkeypatch, capsys):
    """A job Slurm cancelled because its input failed never ran and wrote no log: its row
    names the failed input and that input's log; a failed job whose log was never written
    shows none."""
    from harness import cli, slurm

    graph, layout, nodes = _slurm_graph(tmp_path)
    for stage, job in (("tagsystem", "50_0"), ("pretrain", "51_0"), ("embed", "52_0"), ("probe", "53_0")):
        _submitted(layout, nodes[stage], job)
    log = slurm.job_paths(layout.log_dir, "50_0").stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback (most recent call last):\nValueError: label_bad.json: no tag 1\n")
    states = {"50_0": {"State": "FAILED", "ExitCode": "1:0"}, "51_0": {"State": "CANCELLED", "Reason": "Dependency"},
              "52_0": {"State": "CANCELLED"}, "53_0": {"State": "CANCELLED"}}
    monkeypatch.setattr(slurm, "sacct", lambda ids, since=None, timeout=60: {j: states[j] for j in ids})
    rows = {r["stage"]: r for r in slurm.describe(graph, layout) if "random" not in r["label"]}
    assert rows["tagsystem"]["state"] == "FAILED" and rows["tagsystem"]["stderr"] == str(log)
    for stage in ("pretrain", "embed", "probe"):
        assert rows[stage]["state"] == "BLOCKED" and rows[stage]["blocked_by"] == nodes["tagsystem"].id
        assert rows[stage]["cause"].startswith("an input failed: tagsystem mini K=8 (FAILED)")
        assert rows[stage]["stderr"] == str(log)  # the failed input's log: this job wrote none
    monkeypatch.setattr(cli, "_load", lambda args: (type("S", (), {"name": "s"})(), graph, layout))
    assert cli.cmd_status(type("A", (), {})()) == 1
    out = capsys.readouterr().out
    assert "no tag 1" in out and out.count(f"log:   {log} (the failed input's)") == 3
    assert not any(f"{j}_0_log.err" in out for j in (51, 52, 53))  # never a log that was not written


def test_status_without_a_reachable_slurm_says_so_in_one_line(tmp_path, harness_env):
    """No cluster configuration (SLURM_CONF unset): status prints one line, shows no state it
    could not read, and exits non-zero; run refuses in one line naming the fix."""
    if shutil.which("sacct") is None or shutil.which("scontrol") is None:
        pytest.skip("the Slurm client commands are not installed (scripts/slurm-up.sh --install installs them)")
    if any(Path(p).is_file() for p in ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf")):
        pytest.skip("this machine has a Slurm configuration of its own: unsetting SLURM_CONF still reaches it")
    from harness.dispatch import Layout, write_state
    from harness.graph import expand
    from harness.study import load_study

    path = write_study(tmp_path)
    out = tmp_path / "out"
    node = next(n for n in expand(load_study(path).config) if n.stage == "pretrain")
    write_state(Layout(out=out, cache=tmp_path), node, "submitted", extra={"executor": "slurm", "job_id": "12"})
    env = {k: v for k, v in harness_env.items() if k != "SLURM_CONF"}
    status = harness("status", path, "--out", out, env=env, timeout=120)
    assert status.returncode == 2 and status.stdout == "", status.stdout
    (line,) = status.stderr.strip().splitlines()
    assert line.startswith("error: slurm: cannot read the job states: `sacct`: ") and \
        "source the env.sh of your cluster, or set SLURM_CONF" in line, line
    run = harness("run", path, "--executor", "slurm", "--out", tmp_path / "out2", env=env, timeout=120)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "Could not establish a configuration source" in line and "or set SLURM_CONF" in line, line


def test_plan_warns_of_a_time_limit_within_the_checkpoint_signal(tmp_path, capsys):
    from harness import cli
    from harness.components import stages

    path = write_study(tmp_path, slurm={"time_min": 1, "signal_delay_s": 90,
                                        "stages": {"pretrain": {"time_min": 30}}})
    assert cli.main(["plan", str(path), "--out", str(tmp_path / "out")]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    short = ", ".join(stage for stage in stages() if stage != "pretrain")  # every stage but the one given 30 min
    assert warnings == [f"warning: compute.slurm: time_min 1 min ({short}) is not longer than signal_delay_s 90 s: "
                        "these jobs are signalled to checkpoint before they can write one; raise time_min or lower "
                        "signal_delay_s"]


# ------------------------------------------------------------------ on a real cluster


def _cluster_problem() -> str | None:
    for tool in ("sbatch", "sacct", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            said = (ping.stdout + ping.stderr).strip().splitlines()
            return f"the Slurm controller does not answer: {said[-1] if said else ping.returncode}"
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
        if acct.returncode != 0:
            return f"Slurm accounting (sacct) does not answer: {acct.stderr.strip()[-200:]}"
    except subprocess.TimeoutExpired as exc:
        return f"{exc.cmd[0]} did not answer"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem:
        message = f"no Slurm cluster ({problem}); start one with scripts/slurm-up.sh and export SLURM_CONF"
        if os.environ.get("HARNESS_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def harness(*args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def status_rows(path: Path, out: Path, env) -> tuple[int, list[dict], str]:
    proc = harness("status", path, "--out", out, env=env, timeout=120)
    rows = []
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("           "):
            rows.append({"state": parts[0], "stage": parts[1], "key": parts[2], "line": line})
    return proc.returncode, rows, proc.stdout


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def state(out: Path, stage: str, objective: str | None = None) -> dict:
    for path in sorted((out / "state").glob(f"{stage}-*.json")):
        record = json.loads(path.read_text())
        if objective is None or objective in record["label"]:
            return record
    raise AssertionError(f"no {stage} state in {out}")


def submitted_job(out: Path, stage: str) -> str | None:
    """The job id of the stage's node once the run has submitted it (the run writes the
    state folder first, then one record per node as its stage is submitted)."""
    try:
        return state(out, stage).get("job_id")
    except (AssertionError, ValueError):  # not submitted yet, or its record being replaced
        return None


def sacct_state(job_id: str) -> str:
    proc = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def values(out: Path) -> list[tuple]:
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet").sort_values(["run", "task"])
    return list(frame[["run", "task", "value"]].itertuples(index=False, name=None))


def losses(folder: Path) -> list[tuple[str, str]]:
    with open(folder / "train_log.csv") as f:
        return [(row["step"], row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.slurm
@pytest.mark.slow
def test_detach_status_requeue_and_same_results_as_local(cluster, tmp_path, harness_env):
    """--detach queues the graph in seconds; status tracks it; a pre-training requeued by
    `scontrol requeue` resumes from its checkpoint; results and the per-step losses equal
    the local executor's."""
    path = write_study(tmp_path, steps=60, every=10)
    local, out = tmp_path / "local", tmp_path / "slurm"
    ref = harness("run", path, "--out", local, "--no-progress", env=harness_env)
    assert ref.returncode == 0, ref.stderr

    t0 = time.time()
    detached = harness("run", path, "--executor", "slurm", "--detach", "--out", out, env=harness_env)
    took = time.time() - t0
    assert detached.returncode == 0, detached.stderr
    assert took < 20, f"--detach took {took:.1f} s"
    assert "queued 9 jobs" in detached.stderr and "1 already done" in detached.stderr  # the dataset is shared
    assert not (out / "results.parquet").exists()
    pre = state(out, "pretrain", "mtc")
    assert pre["executor"] == "slurm" and pre["job_id"] and pre["dependency"]  # waits on its inputs' jobs
    twice = harness("run", path, "--executor", "slurm", "--detach", "--out", out, env=harness_env)
    assert twice.returncode == 0 and "queued 0 jobs" in twice.stderr, twice.stderr  # queued jobs are not resubmitted

    # requeue the pre-training once it has written a checkpoint
    work = out / "store" / "pretrain" / f"{pre['key']}.work"
    wait_for(lambda: (work / "train_state.pt").exists(), 240, "the first pre-training checkpoint", every=0.2)
    assert sacct_state(pre["job_id"]) == "RUNNING"
    subprocess.run(["scontrol", "requeue", pre["job_id"]], check=True)

    seen: set[str] = set()

    def finished():
        code, rows, text = status_rows(path, out, harness_env)
        seen.update(r["state"] for r in rows)
        return text if code == 0 and all(r["state"] == "done" for r in rows) else None

    text = wait_for(finished, 400, "the graph to complete", every=2)
    assert text.splitlines()[0].endswith(": 10 done")
    assert seen & {"PENDING", "RUNNING"}
    assert not seen & FAILED_STATES, seen  # no poll caught a job between its end and its output

    # a plain run now finds everything done, submits nothing, and writes the results
    again = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert again.returncode == 0, again.stderr
    assert "0 jobs run, 10 already done" in again.stderr
    assert values(out) == values(local)
    folder = out / "store" / "pretrain" / pre["key"]
    assert losses(folder) == losses(local / "store" / "pretrain" / pre["key"]) and len(losses(folder)) == 60
    log = Path(pre["stdout"]).read_text() + Path(pre["stderr"]).read_text()
    assert log.count("Starting with JobEnvironment") == 2, log[-2000:]  # it did run twice
    assert "DUE TO JOB REQUEUE" in log
    resumed = json.loads((folder / "_done.json").read_text())["outputs"]["train"]["resumed_from"]
    assert 0 < resumed < 60  # from its checkpoint, not from scratch


@pytest.mark.slurm
def test_scancel_is_reported_cancelled_and_not_waited_on(cluster, tmp_path, harness_env):
    path = write_study(tmp_path, name="cancel", steps=100000, baselines=[])
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--executor", "slurm", "--out",
                            str(out), "--no-progress"], env=harness_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        job = wait_for(lambda: submitted_job(out, "pretrain"), 60, "submission")
        wait_for(lambda: sacct_state(job) == "RUNNING", 240, "the pre-training to run")
        subprocess.run(["scancel", job], check=True)
        t0 = time.time()
        _, stderr = run.communicate(timeout=30)  # the waiting run ends: nothing is waited on forever
        assert run.returncode == 1
        assert "FAILED pretrain/" in stderr and "CANCELLED" in stderr, stderr
    finally:
        if run.poll() is None:
            run.kill()

    code, rows, text = status_rows(path, out, harness_env)
    assert time.time() - t0 < 30
    assert code == 1
    by_stage = {r["stage"]: r["state"] for r in rows}
    assert by_stage["pretrain"] == "CANCELLED"  # not done
    assert by_stage["embed"] == "BLOCKED" and by_stage["probe"] == "BLOCKED"
    assert f"[job {job}]" in text and "log:" in text
    assert not (out / "store" / "pretrain" / state(out, "pretrain")["key"]).exists()


def memory_enforced() -> str | None:
    """None when the cluster kills a job over its --mem, else why not."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    values = dict(line.split("=", 1) for line in config.splitlines() if "=" in line)
    values = {k.strip(): v.strip() for k, v in values.items()}
    if "MEMORY" not in values.get("SelectTypeParameters", "").upper() or "cgroup" not in values.get("TaskPlugin", ""):
        return (f"the cluster enforces no memory limit (SelectTypeParameters={values.get('SelectTypeParameters')}, "
                f"TaskPlugin={values.get('TaskPlugin')}); scripts/slurm-up.sh enforces it where a memory cgroup "
                "can be made")
    return None


@pytest.mark.slurm
def test_a_job_over_its_memory_is_out_of_memory(cluster, tmp_path, harness_env):
    """On a cluster that enforces memory (scripts/slurm-up.sh does where it can), a
    pre-training over its mem_gb is killed in its srun step: the run and status say
    OUT_OF_MEMORY and how to fix it, and its dependants are blocked, pointing at its log."""
    why = memory_enforced()
    if why:
        pytest.skip(why)
    path = write_study(tmp_path, name="oom", baselines=[], slurm={"stages": {"pretrain": {"mem_gb": 0.2}}})
    out = tmp_path / "out"
    proc = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert proc.returncode == 1, proc.stderr
    (failed,) = [line for line in proc.stderr.splitlines() if line.startswith("FAILED pretrain/")]
    assert "OUT_OF_MEMORY: out of memory" in failed and "0.2 GB" in failed and "raise compute.slurm.mem_gb" in failed
    code, rows, text = status_rows(path, out, harness_env)
    assert code == 1
    by_stage = {r["stage"]: r["state"] for r in rows}
    assert by_stage["pretrain"] == "OUT_OF_MEMORY" and by_stage["embed"] == by_stage["probe"] == "BLOCKED"
    log = state(out, "pretrain")["stderr"]
    assert text.count(f"log:   {log} (the failed input's)") == 2 and "oom-kill" in Path(log).read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_failing_job_reports_traceback_and_independent_branches_complete(cluster, tmp_path, harness_env):
    bad = tmp_path / "label_bad.json"
    bad.write_text('{"0": "rain", "2": "wind"}')  # indices must be 0..K-1
    path = write_study(tmp_path, name="failing", files=[bad.name])
    out = tmp_path / "out"
    proc = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED tagsystem/")]
    assert len(failed) == 1 and "FAILED: ValueError" in failed[0] and "label_bad.json" in failed[0]
    assert "Traceback" in Path(proc.stderr.split("log: ")[1].split()[0]).read_text()
    # the K=8 branch and the random baseline completed
    assert {run for run, _, _ in values(out)} == {"mini/mtc K=8 s0", "random s0"}

    code, rows, text = status_rows(path, out, harness_env)
    assert code == 1
    states = sorted(r["state"] for r in rows)
    assert states.count("FAILED") == 1 and states.count("BLOCKED") == 3 and states.count("done") == 10
    i = text.splitlines().index(next(line for line in text.splitlines() if line.strip().startswith("FAILED")))
    after = text.splitlines()[i + 1:i + 40]
    assert after[0].strip().startswith("cause: ValueError") and after[1].strip().startswith("log:")
    assert any(line.strip().startswith("| Traceback") or "label_bad.json" in line for line in after[2:])


@pytest.mark.slurm
@pytest.mark.slow
def test_time_limit_requeues_bounded_by_retries(cluster, tmp_path, harness_env):
    """A pre-training over its 1-minute limit is signalled, checkpoints, is requeued
    `retries` times and then reported as TIMEOUT (not retried further)."""
    path = write_study(tmp_path, name="timeout", steps=100000, every=50, baselines=[],
                       slurm={"retries": 1, "signal_delay_s": 30,  # only the pre-training is short of time
                              "stages": {"pretrain": {"time_min": 1}}})
    out = tmp_path / "out"
    t0 = time.time()
    proc = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env, timeout=420)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED pretrain/" in proc.stderr and "TIMEOUT" in proc.stderr, proc.stderr
    record = state(out, "pretrain")
    log = Path(record["stdout"]).read_text() + Path(record["stderr"]).read_text()
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]
    assert log.count("Requeued job") == 1
    # the requeue is one line of the run's output, with its cause and attempt number
    requeued = [line for line in proc.stderr.splitlines() if "requeued pretrain" in line]
    assert len(requeued) == 1, proc.stderr
    assert "time limit" in requeued[0] and "attempt 2 of at most 2" in requeued[0] and record["job_id"] in requeued[0]
    assert "1 requeued or resubmitted" in proc.stderr
    assert "time limit reached again after 1 requeue (retries: 1)" in proc.stderr
    code, rows, _ = status_rows(path, out, harness_env)
    assert {r["stage"]: r["state"] for r in rows}["pretrain"] == "TIMEOUT"
    print(f"time-limit test took {time.time() - t0:.0f} s")


@pytest.mark.slurm
@pytest.mark.slow
def test_pretraining_with_two_tasks_runs_ddp_through_submitit(cluster, tmp_path, harness_env):
    """tasks_per_node: 2 runs the pre-training as 2 DDP ranks (gloo on CPU) from submitit's
    distributed environment; its losses match one process's, and rank 0 alone publishes."""
    path = write_study(tmp_path, name="ddp", steps=6, every=3, baselines=[],
                       slurm={"stages": {"pretrain": {"tasks_per_node": 2}}})
    # no dropout, no SpecAugment: ranks draw their own random numbers (as in tests/test_trainer.py)
    path.write_text(path.read_text().replace("encoder: {name: transformer, size: tiny}",
                                             "encoder: {name: transformer, size: tiny, options: {dropout: 0.0}}")
                    .replace("objectives: [mtc]", "objectives: [{name: mtc, options: {dropout: 0.0}}]\n"
                             "  specaugment: false"))
    local, out = tmp_path / "local", tmp_path / "slurm"
    ref = harness("run", path, "--out", local, "--no-progress", env=harness_env)
    assert ref.returncode == 0, ref.stderr
    proc = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert proc.returncode == 0, proc.stderr
    record = state(out, "pretrain")
    job = record["job_id"]
    assert Path(record["stdout"].replace(f"{job}_0_log", f"{job}_1_log")).is_file()  # a second task ran
    a, b = losses(local / "store" / "pretrain" / record["key"]), losses(out / "store" / "pretrain" / record["key"])
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 6
    assert [float(x) for _, x in b] == pytest.approx([float(x) for _, x in a], rel=1e-4)


@pytest.mark.slurm
def test_optuna_trials_run_as_array_tasks_sharing_one_journal(cluster, tmp_path, monkeypatch):
    import optuna

    from harness import slurm

    (tmp_path / "quad.py").write_text(
        "def objective(trial):\n    x = trial.suggest_float('x', -10, 10)\n    return (x - 2) ** 2\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}")  # the jobs import quad
    journal = tmp_path / "search" / "journal.log"
    jobs = slurm.optimize_on_slurm("quad:objective", total=24, workers=3, journal=journal, study_name="quad",
                                   folder=tmp_path / "logs", sampler_seed=0)
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1  # one array
    seen = [job.result() for job in jobs]  # waits; raises if a task failed
    study = optuna.load_study(study_name="quad", storage=slurm.journal_storage(journal))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 24 <= len(complete) <= 24 + 2 and max(seen) >= 24
    assert study.best_value < 1.0


@pytest.mark.slurm
def test_a_study_search_dispatches_its_trials_as_slurm_jobs(cluster, tmp_path, harness_env):
    """A study's search block on Slurm: each round of trials is a set of sbatch jobs, the
    journal lives in the study folder, the best values reach the results."""
    import optuna
    import pandas as pd

    from harness.slurm import journal_storage

    path = write_study(tmp_path, baselines=[])
    path.write_text(path.read_text() + "search: {trials: 2, parallel: 2, space: "
                                       "{probes.weight_decays: {low: 0.0001, high: 0.1, log: true}}}\n")
    out = tmp_path / "out"
    proc = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert proc.returncode == 0, proc.stderr
    journal = out / "search" / "journal.log"
    (name,) = optuna.get_all_study_names(journal_storage(journal))
    trials = optuna.load_study(study_name=name, storage=journal_storage(journal)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    probes = [json.loads(p.read_text()) for p in (out / "state").glob("probe-*.json")]
    assert len(probes) == 2 and all(p["executor"] == "slurm" and p["job_id"] for p in probes)
    # both trials' probes measure the same run: one Slurm job with its embedding (compute.group_small_jobs)
    assert len({p["job_id"] for p in probes}) == 1
    assert all(sorted(p["group"]) == sorted([f"probe/{q['key']}" for q in probes] + [p["group"][0]])
               and p["group"][0].startswith("embed/") for p in probes)
    # the accounting database may lag behind the jobs' own completion records
    wait_for(lambda: all(sacct_state(p["job_id"]) == "COMPLETED" for p in probes), 120,
             f"sacct to show the trial jobs {[p['job_id'] for p in probes]} COMPLETED", every=2)
    best = json.loads((out / "search" / "best.json").read_text())
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 1 and json.loads(frame["search"][0])["params"] == best["params"]
    assert json.loads(frame["hparams"][0])["weight_decay"] == pytest.approx(best["params"]["probes.weight_decays"])


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_job_is_resubmitted_and_resumes(cluster, tmp_path, harness_env):
    """A running pre-training preempted (cancelled) by a higher-priority job ends PREEMPTED;
    the waiting run resubmits it, and the jobs Slurm cancelled downstream of it; it resumes
    from its checkpoint and the graph completes."""
    urgent = subprocess.run(["sinfo", "-h", "-p", "urgent", "-o", "%P"], capture_output=True, text=True).stdout
    if not urgent.strip():
        pytest.skip("the cluster has no 'urgent' partition that preempts (scripts/slurm-up.sh makes one)")
    # 300 steps (about 30 s): the preempted job cannot finish within KillWait (submitit ignores SIGTERM)
    path = write_study(tmp_path, name="preempt", steps=300, every=10, baselines=[])
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--executor", "slurm", "--out",
                            str(out), "--no-progress"], env=harness_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: submitted_job(out, "pretrain"), 60, "submission")
        key = state(out, "pretrain")["key"]
        wait_for(lambda: (out / "store" / "pretrain" / f"{key}.work" / "train_state.pt").exists(), 240,
                 "the first checkpoint", every=0.2)
        cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0]
        subprocess.run(["sbatch", "-p", "urgent", "-n", cpus.rstrip("+"), "-o", "/dev/null", "--wrap", "sleep 2"],
                       check=True, capture_output=True)
        wait_for(lambda: sacct_state(first).startswith("PREEMPTED"), 60, "the preemption")
        _, stderr = run.communicate(timeout=400)
        assert run.returncode == 0, stderr
    finally:
        if run.poll() is None:
            run.kill()
    record = state(out, "pretrain")
    assert record["job_id"] != first and record["attempt"] == 2
    lines = [line for line in stderr.splitlines() if "resubmitted pretrain" in line]
    assert len(lines) == 1 and "PREEMPTED" in lines[0] and "attempt 2 of at most 3" in lines[0], stderr
    assert f"was {first}" in lines[0]
    done = json.loads((out / "store" / "pretrain" / key / "_done.json").read_text())
    assert done["outputs"]["train"]["resumed_from"] > 0
    assert {run for run, _, _ in values(out)} == {"mini/mtc K=8 s0"}
