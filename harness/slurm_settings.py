"""Slurm settings: the ``compute.slurm`` schema of a study, cluster profiles, and the
resolved settings (study values overlaid on the profile). Pure data, no submission: the
study schema reads it, and :mod:`harness.slurm` submits with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.components import stages
from harness.errors import HarnessError
from harness.schema import Context, Num, Obj, Str

# Names that reach sbatch arguments: a strict charset, so no value can carry shell or
# sbatch syntax (spaces, quotes, $, ;, newlines, '=' or '#').
NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}"
NAMES = rf"{NAME}(,{NAME})*"  # partition lists: gpu,gpu-long
CONSTRAINT = r"[A-Za-z0-9_.,&|:-]{1,256}"  # node features: a100&ib, v100|a100

STAGES = stages()  # every stage, in graph order (their declarations)

RESOURCES = {
    "partition": Str(None, pattern=NAMES, doc="partition(s), comma-separated"),
    "account": Str(None, pattern=NAME, doc="account charged"),
    "qos": Str(None, pattern=NAME, doc="quality of service"),
    "constraint": Str(None, pattern=CONSTRAINT, doc="node features (sbatch --constraint)"),
    "nodes": Num(None, integer=True, min=1, max=1024, doc="nodes per job (pre-training only; other stages use 1)"),
    "gpus_per_node": Num(None, integer=True, min=0, max=64, doc="GPUs per node"),
    "tasks_per_node": Num(None, integer=True, min=1, max=256,
                          doc="processes per node (pre-training only; default: one per GPU, else 1)"),
    "cpus_per_task": Num(None, integer=True, min=1, max=1024, doc="CPUs per process (default: compute.threads_per_job)"),
    "mem_gb": Num(None, min=0.1, max=1e6, doc="memory per node, GB"),
    "time_min": Num(None, integer=True, min=1, max=525600, doc="time limit per job, minutes (default: compute.timeout_min)"),
}

SLURM = Obj({
    **RESOURCES,
    "array_parallelism": Num(None, integer=True, min=1, max=100000, doc="array tasks running at once"),
    "retries": Num(None, integer=True, min=0, max=20,
                   doc="requeues after a time limit, and resubmissions after preemption or node failure"),
    "signal_delay_s": Num(None, integer=True, min=10, max=3600,
                          doc="seconds before the time limit at which jobs are signalled to checkpoint"),
    "poll_s": Num(None, min=0.5, max=600, doc="seconds between sacct polls while waiting"),
    "stages": Obj({stage: Obj(dict(RESOURCES), default=None) for stage in STAGES}, default={},
                  doc="per-stage overrides of the resources (e.g. GPUs for pretrain only)"),
}, default={}, doc="Slurm settings; override the cluster profile's")

DEFAULTS = {"nodes": 1, "gpus_per_node": 0, "array_parallelism": 256, "retries": 2, "signal_delay_s": 90,
            "poll_s": 2.0}

@dataclass
class SlurmSettings:
    """Resolved Slurm settings: global values and per-stage overrides."""

    values: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def resources(self, stage: str) -> dict[str, Any]:
        out = {k: self.values.get(k) for k in RESOURCES}
        out.update({k: v for k, v in (self.stages.get(stage) or {}).items() if v is not None})
        if stage != "pretrain":  # only pre-training runs one process per GPU (DDP)
            out["nodes"], out["tasks_per_node"] = 1, 1
        elif out.get("tasks_per_node") is None:
            out["tasks_per_node"] = max(1, out.get("gpus_per_node") or 0)
        return out


def timing_problems(settings: SlurmSettings) -> list[str]:
    """Warnings for time limits not longer than ``signal_delay_s`` (one per limit, naming its
    stages): such jobs are signalled to checkpoint as they start, or before, so a time limit
    cannot be ridden out by a requeue from a checkpoint."""
    delay = int(settings["signal_delay_s"])
    short: dict[int, list[str]] = {}
    for stage in STAGES:
        minutes = settings.resources(stage).get("time_min")
        if minutes is not None and int(minutes) * 60 <= delay:
            short.setdefault(int(minutes), []).append(stage)
    return [f"compute.slurm: time_min {minutes} min ({', '.join(names)}) is not longer than signal_delay_s "
            f"{delay} s: these jobs are signalled to checkpoint before they can write one; raise time_min or "
            "lower signal_delay_s" for minutes, names in short.items()]


def resolve(compute: dict[str, Any], study_path: Path | str | None = None,
            profile: Path | str | None = None) -> SlurmSettings:
    """The study's ``compute.slurm`` overlaid on the cluster profile (``--profile`` or
    ``compute.profile``); every value validated; HarnessError lists every problem."""
    study_values = compute.get("slurm") or {}
    profile_path = Path(profile).expanduser().resolve() if profile else (
        Path(compute["profile"]) if compute.get("profile") else None)
    profile_values: dict[str, Any] = {}
    if profile_path is not None:
        profile_values = load_profile(profile_path)
    merged = {k: study_values.get(k) if study_values.get(k) is not None else profile_values.get(k)
              for k in SLURM.fields if k != "stages"}
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        a = (profile_values.get("stages") or {}).get(stage) or {}
        b = (study_values.get("stages") or {}).get(stage) or {}
        both = {k: b.get(k) if b.get(k) is not None else a.get(k) for k in RESOURCES}
        if any(v is not None for v in both.values()):
            stages[stage] = both
    for key, value in DEFAULTS.items():
        if merged.get(key) is None:
            merged[key] = value
    if merged.get("cpus_per_task") is None:
        merged["cpus_per_task"] = int(compute.get("threads_per_job") or 1)
    if merged.get("time_min") is None:
        merged["time_min"] = max(1, int(round(float(compute.get("timeout_min") or 240))))
    merged["group_small_jobs"] = bool(compute.get("group_small_jobs", True))
    return SlurmSettings(merged, stages, str(profile_path) if profile_path else None)


def load_profile(path: Path) -> dict[str, Any]:
    """A cluster profile: a YAML mapping of the keys of ``compute.slurm``."""
    from harness.yamlio import display, read_yaml

    if not path.is_file():
        raise HarnessError(f"{display(path)}: cluster profile not found")
    raw = read_yaml(path)
    if isinstance(raw.get("slurm"), dict) and len(raw) == 1:  # also accept {slurm: {...}}
        raw = raw["slurm"]
    ctx = Context(base_dir=path.parent)
    values = SLURM.validate(raw, "slurm", ctx)
    if ctx.problems:
        raise HarnessError([f"{display(path)}: {p.path}: {p.message}" for p in ctx.problems])
    return values
