"""Grouped small jobs on Slurm (``compute.group_small_jobs``): the embed and probe nodes of one
pre-trained run go out as one job, each node keeps its own record and classification, and a
rerun submits exactly the nodes still missing. The last test needs a real cluster
(``scripts/slurm-up.sh``; see tests/test_slurm.py); the others need none."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_slurm import BASE, cluster, harness, sacct_state, wait_for  # noqa: F401  (cluster: a fixture)

STUDY = """
include: {base}
name: {name}
tagging: {{sizes: [8]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  baselines: [random]
  steps: 4
  batch_size: 8
probes: {{tasks: [mini/env_event, mini/music_instrument], epochs: {epochs}, lrs: [0.01], weight_decays: [0.0]}}
compute: {{group_small_jobs: {group}, slurm: {{time_min: 20, poll_s: 1}}}}
"""


def write_study(folder: Path, name: str = "groups", epochs: int = 5, group: bool = True, baselines=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    text = STUDY.format(base=BASE, name=name, epochs=epochs, group=json.dumps(group))
    if baselines is not None:
        text = text.replace("baselines: [random]", f"baselines: {json.dumps(baselines)}")
    path.write_text(text)
    return path


def graph_of(path: Path):
    from harness.graph import expand
    from harness.study import load_study

    return list(expand(load_study(path).config))


# ------------------------------------------------------------------ the plan (no cluster)


def test_embed_and_probe_nodes_of_one_run_are_one_job_and_only_missing_ones_are_resubmitted(tmp_path):
    from harness.slurm import batches, count_submissions

    nodes = graph_of(write_study(tmp_path))
    runs = [n for n in nodes if n.stage == "pretrain"]
    small = {r.id: [n for n in nodes if n.stage in ("embed", "probe") and n.coords["objective"] == r.coords["objective"]]
             for r in runs}
    assert len(runs) == 2 and all(len(v) == 4 for v in small.values())  # 2 tasks: 2 embeds, 2 probes each

    plan = batches(nodes, {n.id for n in nodes}, group=True)
    grouped = [(stage, waits, unit) for stage, waits, units in plan for unit in units if len(unit) > 1]
    assert len(grouped) == 2
    for stage, waits, unit in grouped:
        run = next(r for r in runs if r.id in waits)
        assert stage == "embed" and [n.id for n in unit] == [n.id for n in small[run.id]]  # graph order
        assert set(waits) == {d.id for n in unit for d in n.inputs.values()} - {n.id for n in unit}
    # one array per set of jobs waited on; without grouping every probe waits on its own embed
    assert count_submissions(nodes, group=True) == (len(plan), len(nodes) - 2 * 4 + 2)
    ungrouped = batches(nodes, {n.id for n in nodes}, group=False)
    assert all(len(unit) == 1 for _, _, units in ungrouped for unit in units)
    probes = [(waits, units) for stage, waits, units in ungrouped if stage == "probe"]
    assert len(probes) == 4 and all(len(units) == 1 and len(waits) == 1 for waits, units in probes)

    # a rerun: the run's first embed and its probe are complete, its pre-training too
    run = runs[0]
    done = {run.id, small[run.id][0].id, small[run.id][1].id}
    missing = [n for n in nodes if n.id not in done and n.stage in ("embed", "probe") and n in small[run.id]]
    submit = [n for n in nodes if n.id not in done]
    plan = batches(submit, {n.id for n in submit}, group=True)
    (unit,) = [u for _, _, units in plan for u in units if u[0] in missing]
    assert unit == missing and len(unit) == 2
    (waits,) = [w for _, w, units in plan if unit in units]
    assert run.id not in waits  # complete: nothing to wait on


@dataclass
class FakeNode:
    stage: str
    key: str
    inputs: dict = field(default_factory=dict)
    fail: bool = False
    ran: list = field(default_factory=list)

    def __call__(self):
        self.ran.append(self.key)
        if self.fail:
            raise ValueError(f"bad {self.key}")


def test_a_group_job_runs_every_node_it_can_and_each_is_classified_on_its_own(tmp_path):
    from submitit.core.utils import cloudpickle_dump

    from harness.job import GroupJob
    from harness.slurm import job_paths, view

    ran: list = []
    embed_a = FakeNode("embed", "a", fail=True, ran=ran)
    probe_a = FakeNode("probe", "pa", {"embed": ("embed", "a", "/store")}, ran=ran)
    embed_b = FakeNode("embed", "b", ran=ran)
    probe_b = FakeNode("probe", "pb", {"embed": ("embed", "b", "/store")}, ran=ran)
    outcome = GroupJob([embed_a, probe_a, embed_b, probe_b])()
    assert ran == ["a", "b", "pb"]  # the failed node's dependant is not run, the other branch is
    assert "ValueError: bad a" in outcome["embed/a"] and outcome["probe/pa"] == "blocked: embed/a"
    assert outcome["embed/b"] is None and outcome["probe/pb"] is None

    result = job_paths(tmp_path, "7").result_pickle
    result.parent.mkdir(parents=True)
    cloudpickle_dump(("success", outcome), result)  # as submitit writes a job's result
    row = {"State": "COMPLETED", "Reason": "None", "ExitCode": "0:0"}

    def cls(node_id, in_store=False):
        return view("7", row, tmp_path, in_store, node_id=node_id)

    assert (cls("embed/a").cls, cls("embed/a").cause) == ("FAILED", "ValueError: bad a")
    blocked = cls("probe/pa")
    assert blocked.cls == "CANCELLED" and blocked.orphaned(False) and "embed/a" in blocked.cause
    assert cls("probe/pb", in_store=True).cls == "COMPLETED"
    assert cls("probe/pb").cause == "the job ended without publishing its output"
    # a state of the whole job is each incomplete node's
    gone = view("7", {**row, "State": "TIMEOUT"}, tmp_path / "none", False, retries=0, node_id="embed/b")
    assert gone.cls == "TIMEOUT"


# ------------------------------------------------------------------ a real cluster


def records(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "state").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except ValueError:  # being replaced
            continue
        found[record["id"]] = record
    return found


@pytest.mark.slurm
@pytest.mark.slow
def test_a_runs_small_nodes_are_one_slurm_job_and_a_rerun_after_scancel_completes_only_the_missing(
        cluster, tmp_path, harness_env):  # noqa: F811
    path = write_study(tmp_path, name="grouped", epochs=15000, baselines=[])  # each probe runs for >10 s,
    # longer than KillWait (5 s): the scancel kills the group job in its first probe
    out = tmp_path / "out"
    small = [n for n in graph_of(path) if n.stage in ("embed", "probe")]
    ids = [n.id for n in small]
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--executor", "slurm", "--out",
                            str(out), "--no-progress"], env=harness_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        def submitted():
            found = records(out)
            return found if all(i in found and found[i].get("job_id") for i in ids) else None

        found = wait_for(submitted, 120, "the embed and probe nodes to be submitted", every=0.5)
        (job,) = {found[i]["job_id"] for i in ids}  # one Slurm job for the run's 4 small nodes
        assert all(found[i]["group"] == ids for i in ids)  # in graph order: embed, its probe, embed, probe
        assert job not in {r["job_id"] for nid, r in found.items() if nid not in ids}

        def stored(node):
            return (out / "store" / node.stage / node.key / "_done.json").is_file()

        # cancel once the first embedding is complete: the first probe then runs for seconds
        wait_for(lambda: stored(small[0]), 900, "the first node of the group job", every=0.1)
        assert sacct_state(job) == "RUNNING"
        subprocess.run(["scancel", job], check=True)
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, stderr
    # sacct reads the job CANCELLED at once, while its processes may run on for KillWait (submitit
    # ignores SIGTERM) and publish one more node: read the store once Slurm has let go of the job
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                        text=True).stdout.strip(), 120, "the cancelled job's processes to end")
    done = {n.id: (out / "store" / n.stage / n.key / "_done.json").read_bytes() for n in small if stored(n)}
    missing = [i for i in ids if i not in done]
    assert small[0].id in done and missing, stderr
    assert all(f"FAILED {i}" in stderr for i in missing) and "CANCELLED" in stderr  # per node

    again = harness("run", path, "--executor", "slurm", "--out", out, "--no-progress", env=harness_env)
    assert again.returncode == 0, again.stderr
    assert f"{len(missing)} jobs run" in again.stderr
    after = records(out)
    (rerun_job,) = {after[i]["job_id"] for i in missing}  # the missing nodes, one job again
    assert rerun_job != job and all(after[i]["job_id"] == job for i in done)
    if len(missing) > 1:
        assert after[missing[0]]["group"] == missing
    for node in small:  # the nodes complete before the rerun were not run again
        if node.id in done:
            assert (out / "store" / node.stage / node.key / "_done.json").read_bytes() == done[node.id]
    import pandas as pd

    assert sorted(pd.read_parquet(out / "results.parquet")["task"]) == ["mini/env_event", "mini/music_instrument"]
