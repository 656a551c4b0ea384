"""Study files: load YAML with ``include:``, validate strictly, resolve defaults.

A study declares data sources, tagging, pre-training, probes, compute and the report.
Every problem is reported as one line ``FILE: KEY.PATH: what was expected, found what``
and raises :class:`~harness.errors.StudyError` (the CLI exits with code 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import tasks as task_registry
from harness.errors import StudyError
from harness.yamlio import display as _display, load_with_includes
from harness.schema import MISSING, Any_, Bool, Context, File, List, Map, Num, Obj, Str

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

SOURCE = Obj({
    "name": Str(pattern=NAME, doc="name of the source, used in tables"),
    "kind": Str(choices=["minisuite"], doc="source adapter"),
    "seed": Num(0, integer=True, min=0, doc="generation seed (minisuite)"),
    "scale": Num(1.0, min=0.05, max=20.0, doc="size multiplier (minisuite)"),
})

TAGGING = Obj({
    "captioner": Obj({
        "backend": Str("manifest", choices=["manifest"], doc="where captions come from"),
        "field": Str("caption", pattern=NAME, doc="the manifest's caption field"),
    }, default={}, shorthand="backend"),
    "parser": Obj({
        "backend": Str("rules", choices=["rules"], doc="caption -> tags parser"),
        "max_tags": Num(None, integer=True, min=1, doc="keep at most this many tags per caption"),
    }, default={}, shorthand="backend"),
    "sizes": List(Num(integer=True, min=1), default=[], unique=True, doc="tag-system sizes K"),
    "files": List(File(), default=[], unique=True,
                  doc="tag-system files in the released format, used as they are"),
}, default={})

COMPONENT = {"name": Str(pattern=NAME), "options": Map(Any_(), default={})}

PRETRAIN = Obj({
    "encoder": Obj({**COMPONENT, "size": Str("tiny", pattern=NAME)}, shorthand="name"),
    "objectives": List(Obj(dict(COMPONENT), shorthand="name"), min_len=1),
    "baselines": List(Str(choices=["random"]), default=[], unique=True),
    "seeds": List(Num(integer=True, min=0), default=[0], min_len=1, unique=True),
    "steps": Num(300, integer=True, min=1),
    "batch_size": Num(32, integer=True, min=1),
    "lr": Num(1e-3, min=0.0),
    "weight_decay": Num(0.01, min=0.0),
    "warmup_steps": Num(None, integer=True, min=0),
    "grad_clip": Num(1.0, min=0.0),
    "grad_accum": Num(1, integer=True, min=1),
    "checkpoint_every": Num(100, integer=True, min=1),
    "specaugment": Bool(True),
})

PROBES = Obj({
    "tasks": List(Str(pattern=r"[A-Za-z0-9_./-]+"), min_len=1, unique=True),
    "layer": Num(-1, integer=True),
    "heads": List(Str(choices=["linear"]), default=["linear"], min_len=1, unique=True),
    "poolings": List(Str(choices=["mean"]), default=["mean"], min_len=1, unique=True),
    "lrs": List(Num(min=0.0), default=[1e-3, 3e-3, 1e-2], min_len=1, unique=True),
    "weight_decays": List(Num(min=0.0), default=[0.0, 1e-3, 1e-2], min_len=1, unique=True),
    "epochs": Num(100, integer=True, min=1),
    "batch_size": Num(64, integer=True, min=1),
    "seeds": List(Num(integer=True, min=0), default=[0], min_len=1, unique=True),
})

COMPUTE = Obj({
    "executor": Str("local", choices=["local", "debug"]),
    "max_parallel": Num(None, integer=True, min=1, doc="jobs at once (default: CPU cores)"),
    "threads_per_job": Num(1, integer=True, min=1, doc="torch threads in each job (fixed: results do not depend on it)"),
    "timeout_min": Num(240, min=1),
}, default={})

REPORT = Obj({"title": Str("", doc="title of the report")}, default={})

STUDY = Obj({
    "name": Str(pattern=NAME),
    "description": Str(""),
    "data": Obj({"sources": List(SOURCE, min_len=1)}),
    "tagging": TAGGING,
    "pretrain": PRETRAIN,
    "probes": PROBES,
    "compute": COMPUTE,
    "report": REPORT,
})


@dataclass(frozen=True)
class Study:
    """A validated study: its name, source file and fully resolved configuration."""

    name: str
    path: Path
    config: dict[str, Any]

    def digest(self) -> str:
        from harness.store import digest

        return digest(self.config)


def load_study(path: str | os.PathLike) -> Study:
    """Load, merge includes, validate. Raises StudyError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    raw, origins = load_with_includes(path.resolve())
    ctx = Context(base_dir=path.resolve().parent)
    config = STUDY.validate(raw, "", ctx)
    if not ctx.problems:
        _check_components(config, ctx)
    if ctx.problems:
        raise StudyError([f"{_origin(origins, p.path, path)}: {p.path}: {p.message}" for p in ctx.problems])
    _check_consistency(config, path)
    return Study(name=config["name"], path=path.resolve(), config=config)


def _origin(origins: dict[str, Path], key_path: str, default: Path) -> str:
    """The file a key came from: the longest prefix of its path that a file set."""
    parts = key_path.replace("[", ".[").split(".")
    for n in range(len(parts), 0, -1):
        where = origins.get(".".join(parts[:n]).replace(".[", "["))
        if where is not None:
            return _display(where)
    return _display(default)


def _check_components(config: dict, ctx: Context) -> None:
    """Names that refer to registries: objectives, encoders and tasks must exist."""
    from harness import components

    pre = config["pretrain"]
    if pre["encoder"]["name"] not in components.ENCODERS:
        ctx.error("pretrain.encoder.name", f"unknown encoder; expected one of: {', '.join(components.ENCODERS)}, "
                  f"found {pre['encoder']['name']!r}")
    for i, obj in enumerate(pre["objectives"]):
        if obj["name"] not in components.OBJECTIVES:
            ctx.error(f"pretrain.objectives[{i}].name", "unknown objective; expected one of: "
                      f"{', '.join(components.OBJECTIVES)}, found {obj['name']!r}")
    known = task_registry.available()
    for i, name in enumerate(config["probes"]["tasks"]):
        if name not in known:
            ctx.error(f"probes.tasks[{i}]", f"unknown task; expected one of: {', '.join(sorted(known))}, found {name!r}")


def _check_consistency(config: dict, path: Path) -> None:
    from harness import components

    needs_tags = [o["name"] for o in config["pretrain"]["objectives"]
                  if components.objective_needs(o["name"]) == "tags"]
    tagging = config["tagging"]
    if needs_tags and not (tagging["sizes"] or tagging["files"]):
        raise StudyError(f"{_display(path)}: tagging.sizes: objectives {needs_tags} train on tags, "
                         "so the study needs at least one tag-system size (or tagging.files)")


def dump_config(config: dict) -> str:
    """Canonical JSON of a resolved config (sorted keys), as stored with results."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


__all__ = ["Study", "load_study", "dump_config", "MISSING"]
