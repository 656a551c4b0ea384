"""Study files: load YAML with ``include:``, validate strictly, resolve defaults.

A study declares data sources, tagging, pre-training, probes, compute and the report.
Every problem is reported as one line ``FILE: KEY.PATH: what was expected, found what``
and raises :class:`~harness.errors.StudyError` (the CLI exits with code 2).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import tasks as task_registry
from harness.errors import StudyError
from harness.yamlio import display as _display, load_with_includes
from harness.schema import MISSING, Any_, Bool, Context, File, List, Map, Num, Obj, PathArg, Str
from harness.registry import registry
from harness.search_schema import SEARCH, check_search
from harness.slurm_settings import SLURM

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

# The built-in mini suite, every corpus reader declared in harness/sources/, and a weighted
# mix of the study's other sources.
SOURCE_KINDS = ["minisuite", *registry("source").names(), "mix"]

SOURCE = Obj({
    "name": Str(pattern=NAME, doc="name of the source, used in tables"),
    "kind": Str(choices=SOURCE_KINDS, doc="source reader (docs/sources.md)"),
    "seed": Num(0, integer=True, min=0, doc="generation seed (minisuite)"),
    "scale": Num(1.0, min=0.05, max=20.0, doc="size multiplier (minisuite)"),
    "args": Map(Any_(), default={}, doc="the reader's arguments: files and folders of the corpus (docs/sources.md)"),
    "subsets": List(Num(integer=True, min=1), default=[], unique=True,
                    doc="data-scaling: pre-train on nested subsets of these sizes (each contained in the next)"),
    "subset_seed": Num(0, integer=True, min=0, doc="the seed that orders clips for the nested subsets"),
    "train": Bool(True, doc="pre-train on this source (false: only an ingredient of a mix)"),
    "exclude": List(Str(pattern=r"[A-Za-z0-9_./-]+"), default=[], unique=True,
                    doc="probe tasks whose valid and test clips are removed from this corpus (test leakage), "
                        "matched by clip or YouTube id; each removal is counted in the dataset record"),
})

def _model_fields(role: str) -> dict:
    """Settings of a model backend (``openai`` / ``transformers``) of the captioner or the parser."""
    return {
        "model": Str(None, doc=f"{role}: the served model name (openai) or a local model folder (transformers)"),
        "prompt": Str(None, doc=f"{role}: the instruction (default: the paper's)"),
        "temperature": Num(None, min=0, max=2, doc=f"{role}: sampling temperature"),
        "top_p": Num(None, min=0.01, max=1, doc=f"{role}: nucleus sampling"),
        "max_tokens": Num(None, integer=True, min=1, max=32768, doc=f"{role}: reply length limit"),
        "base_url": Str(None, pattern=r"https?://[^\s'\"]+", doc=f"{role}: the OpenAI-compatible endpoint (openai)"),
        "api_key_env": Str("OPENAI_API_KEY", pattern=r"[A-Za-z_][A-Za-z0-9_]*",
                           doc="environment variable holding the API key (read at call time, never written)"),
        "concurrency": Num(8, integer=True, min=1, max=512, doc="requests in flight (openai)"),
        "timeout": Num(120, min=1, doc="seconds per request before a retry (openai)"),
        "max_retries": Num(5, integer=True, min=0, max=50, doc="retries of a failed request (openai)"),
        "batch_size": Num(None, integer=True, min=1, doc="clips read per batch / prompts per generate call"),
    }


# Settings that never change what a backend returns: kept out of node keys (see graph.expand).
RUNTIME_KEYS = ("base_url", "api_key_env", "concurrency", "timeout", "max_retries", "batch_size", "device")

# keyword: how BLAT's keyword-conditioned captioner is trained (harness/tagging/keyword.py).
KEYWORD_TRAIN = Obj({
    "source": Str(pattern=NAME, doc="the data source it trains on (its clips' captions; BLAT: AudioCaps)"),
    "keyword_source": Str(None, pattern=NAME, doc="a source whose clips carry the keywords, matched by clip or "
                                                  "YouTube id (BLAT: AudioSet); default: the training source"),
    "caption_field": Str("captions", pattern=NAME, doc="the training clips' caption field (one or a list)"),
    "keyword_field": Str("labels", pattern=NAME, doc="the keyword field (AudioSet labels)"),
    "encoder": Str("cnn14", doc="its audio encoder, from the encoder registry (on that encoder's front end)"),
    "size": Str("tiny", doc="the encoder's preset"),
    "dim": Num(256, integer=True, min=8, doc="decoder width (the authors': 256)"),
    "layers": Num(2, integer=True, min=1, doc="decoder layers (the authors': 2)"),
    "dropout": Num(0.2, min=0.0, max=1.0, doc="decoder dropout (the authors': 0.2)"),
    "label_smoothing": Num(0.1, min=0.0, max=1.0, doc="(the authors': 0.1)"),
    "keyword_dropout": Num(0.0, min=0.0, max=1.0, doc="each keyword dropped with this probability in training"),
    "max_tokens": Num(30, integer=True, min=4, doc="caption tokens, BOS and EOS included"),
    "steps": Num(1000, integer=True, min=1, doc="optimizer steps"),
    "batch_size": Num(32, integer=True, min=1, doc="captions per step"),
    "lr": Num(5e-4, min=0.0, doc="peak learning rate (the authors' Adam: 5e-4)"),
    "weight_decay": Num(1e-6, min=0.0, doc="(the authors': 1e-6)"),
    "seed": Num(0, integer=True, min=0, doc="initialisation and batch order"),
}, default=None, doc="keyword: train the captioner on a captioned source with its clips' tags as keywords")

TAGGING = Obj({
    "captioner": Obj({
        "backend": Str("manifest", choices=registry("captioner").names(), doc="where captions come from"),
        "field": Str(None, pattern=NAME, doc="manifest: the caption field (default caption); "
                                             "template: the tag-list field (default events); "
                                             "openai: a tag/label field put in the prompt (BLAT tag-guided captions)"),
        "seed": Num(0, integer=True, min=0, doc="template: picks each clip's template"),
        "audio_format": Str("input_audio", choices=["input_audio", "audio_url"],
                            doc="openai: how audio is sent (OpenAI input_audio, or a data: audio_url)"),
        "sample_rate": Num(16000, integer=True, min=8000, max=48000, doc="openai: audio sent at this rate"),
        "train": KEYWORD_TRAIN,
        **_model_fields("captioner"),
    }, default={}, shorthand="backend"),
    "parser": Obj({
        "backend": Str("rules", choices=registry("parser").names(), doc="caption -> tags parser"),
        "max_tags": Num(None, integer=True, min=1, doc="keep at most this many tags per caption"),
        "field": Str(None, pattern=NAME, doc="manifest: the source's tag-list field (default tags)"),
        "min_tags": Num(None, integer=True, min=1, doc="openai/transformers: reject replies with fewer (default 3)"),
        "gguf_file": Str(None, doc="transformers: a GGUF file inside the model folder"),
        "seed": Num(0, integer=True, min=0, doc="transformers: sampling seed"),
        "device": Str(None, pattern=r"cpu|cuda(:[0-9]+)?", doc="transformers: cpu or cuda (default: cuda if any)"),
        **_model_fields("parser"),
    }, default={}, shorthand="backend"),
    "merge_synonyms": Obj({
        "threshold": Num(0.9, min=0.5, max=1.0, doc="merge a tag into a more frequent one at this cosine similarity"),
        "model": Str(None, doc="a local sentence-transformers folder (default: all-MiniLM-L6-v2 from its wheel)"),
    }, default=None, doc="optional, beyond the paper: merge synonyms by sentence-embedding similarity"),
    "sizes": List(Num(integer=True, min=1), default=[], unique=True, doc="tag-system sizes K"),
    "files": List(File(), default=[], unique=True,
                  doc="tag-system files in the released format, used as they are"),
}, default={})

COMPONENT = {"name": Str(pattern=NAME), "options": Map(Any_(), default={})}

# Which captions an objective trains on (and parses its tags from), when not tagging.captioner:
# `captions: weak_caption` is the manifest captioner on that field (the data-quality comparison).
OBJECTIVE_CAPTIONS = Obj(dict(TAGGING.fields["captioner"].fields), default=None, shorthand="field",
                         doc="the captioner of this objective's captions (a field name: the manifest captioner)")

OBJECTIVE = Obj({
    **COMPONENT,
    "label": Str(None, pattern=NAME, doc="the arm's name in tables and in init.from (default: the objective name)"),
    "captions": OBJECTIVE_CAPTIONS,
    "sources": List(Str(pattern=NAME), default=[], unique=True,
                    doc="train only on these data sources (default: every source)"),
    "init": Obj({
        "from": Str(None, pattern=NAME, doc="an objective (its label or name) of this study whose encoder starts this one"),
        "checkpoint": File(None, doc="an encoder checkpoint (encoder.pt of a pretrain node) to start from"),
        "source": Str(None, pattern=NAME, doc="with from: the source the init run trained on (default: any)"),
    }, default=None, shorthand="from", doc="initialise the encoder from another run or a checkpoint, then train"),
}, shorthand="name")

PRETRAIN = Obj({
    "encoder": Obj({**COMPONENT, "size": Str("tiny", pattern=NAME)}, shorthand="name"),
    "objectives": List(OBJECTIVE, min_len=1),
    "baselines": List(Any_(doc="random, or an encoder trained elsewhere: {name: hf | hear | checkpoint, ...its "
                                "options} (docs/encoders.md); checked by _check_baselines"), default=[], unique=True),
    "seeds": List(Num(integer=True, min=0), default=[0], min_len=1, unique=True),
    "steps": Num(300, integer=True, min=1),
    "batch_size": Num(32, integer=True, min=1),
    "max_duration": Num(None, min=0.1, doc="seconds of audio per optimizer step, all GPUs together (the "
                                          "authors' per-GPU value times the GPUs): duration-bucketed batches "
                                          "(Lhotse) instead of batch_size clips"),
    "num_buckets": Num(10, integer=True, min=1, doc="duration buckets, with max_duration"),
    "optimizer": Obj(dict(COMPONENT), default=None, shorthand="name",
                     doc="the optimiser and its schedule (encoders/optim/: adamw, the default, or scaled_adam)"),
    "average_period": Num(None, integer=True, min=1,
                          doc="the run's encoder is the running average of its weights, updated every this "
                              "many steps (the UTS authors': 200)"),
    "lr": Num(1e-3, min=0.0),
    "weight_decay": Num(0.01, min=0.0),
    "warmup_steps": Num(None, integer=True, min=0),
    "grad_clip": Num(1.0, min=0.0),
    "grad_accum": Num(1, integer=True, min=1),
    "checkpoint_every": Num(100, integer=True, min=1),
    "specaugment": Bool(True),
    "stream": Obj({
        "shard_size": Num(1000, integer=True, min=1, doc="clips per shard (Lhotse Shar, FLAC)"),
        "workers": Num(2, integer=True, min=1, doc="decoding processes, each streaming its own shards"),
        "buffer": Num(500, integer=True, min=1, doc="clips in each worker's shuffle buffer (compressed audio)"),
    }, default=None, doc="stream the pool from shards with bounded memory instead of holding its features "
                         "(harness.sources.shards.ShardFeed)"),
})

PROBES = Obj({
    "tasks": List(Str(pattern=r"[A-Za-z0-9_./-]+"), min_len=1, unique=True),
    "layer": Num(-1, integer=True),
    "heads": List(Str(choices=["linear", "mlp"]), default=["linear"], min_len=1, unique=True,
                  doc="probe heads (probes/heads.py HEADS), all trained in one sweep"),
    "poolings": List(Str(choices=["mean", "max", "attention"]), default=["mean"], min_len=1, unique=True,
                     doc="mean / max over frames, or multi-head attention pooling trained from the cached frames"),
    "lrs": List(Num(min=0.0), default=[1e-3, 3e-3, 1e-2], min_len=1, unique=True),
    "weight_decays": List(Num(min=0.0), default=[0.0, 1e-3, 1e-2], min_len=1, unique=True),
    "epochs": Num(100, integer=True, min=1),
    "batch_size": Num(64, integer=True, min=1),
    "seeds": List(Num(integer=True, min=0), default=[0], min_len=1, unique=True),
    "precision": Str("auto", choices=["auto", "fp32", "bf16"],
                     doc="the sweep's training matmuls: bf16 where the hardware has bf16 matrix units "
                         "(CUDA, a CPU with AMX-BF16) with auto; weights, optimiser and evaluation stay fp32"),
})

COMPUTE = Obj({
    "executor": Str("local", choices=["local", "debug", "slurm"]),
    "max_parallel": Num(None, integer=True, min=1, doc="jobs at once (default: CPU cores)"),
    "threads_per_job": Num(1, integer=True, min=1, doc="torch threads in each job (fixed: results do not depend on it)"),
    "timeout_min": Num(240, min=1),
    "profile": File(None, doc="slurm: cluster profile (YAML with the keys of compute.slurm), overlaid by them"),
    "slurm": SLURM,  # harness/slurm.py: partition, account, qos, GPUs, time, retries, ... (strictly validated)
    "group_small_jobs": Bool(True, doc="slurm: the embed and probe nodes of one pre-trained run go out as one job"),
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
    "search": SEARCH,  # harness/search.py
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
    config = _validate(raw, path, origins)
    return Study(name=config["name"], path=path.resolve(), config=config)


def _validate(raw: dict, path: Path, origins: dict[str, Path]) -> dict:
    ctx = Context(base_dir=path.resolve().parent)
    config = STUDY.validate(raw, "", ctx)
    if not ctx.problems:
        _check_components(config, ctx)
    if not ctx.problems and config["search"] is not None:
        check_search(config, lambda c: _problems(c, path), ctx)
    if ctx.problems:
        raise StudyError([f"{_origin(origins, p.path, path)}: {p.path}: {p.message}" for p in ctx.problems])
    _check_consistency(config, path)
    if config["search"] is None:  # absent unless set: configs and digests of other studies stay as they were
        del config["search"]
    for key in ("stream", "optimizer", "average_period"):  # absent unless set: other studies' keys stay
        if config["pretrain"][key] is None:
            del config["pretrain"][key]
    return config


def revalidate(config: dict, path: str | os.PathLike) -> dict:
    """Validate a resolved config again (after a search set some of its values)."""
    path = Path(path)
    return _validate(json.loads(json.dumps(config)), path, {"": path})


def _problems(config: dict, path: Path) -> list[str]:
    try:
        revalidate(config, path)
    except StudyError as exc:
        return [p.split(": ", 1)[1] if ": " in p else p for p in exc.problems]
    return []


def _origin(origins: dict[str, Path], key_path: str, default: Path) -> str:
    """The file a key came from: the longest prefix of its path that a file set."""
    parts = key_path.replace("[", ".[").split(".")
    for n in range(len(parts), 0, -1):
        where = origins.get(".".join(parts[:n]).replace(".[", "["))
        if where is not None:
            return _display(where)
    return _display(default)


def _check_components(config: dict, ctx: Context) -> None:
    """Names that refer to registries (encoders, objectives, tasks) exist, and every option
    of a component is one it declares, of the declared type: all problems, one line each."""
    pre = config["pretrain"]
    encoder = pre["encoder"]
    _check_component("encoder", encoder["name"], encoder["options"], "pretrain.encoder", ctx)
    encoders = registry("encoder")
    if encoder["name"] in encoders:
        sizes = encoders.get(encoder["name"]).presets()
        if sizes and encoder["size"] not in sizes:
            hint = difflib.get_close_matches(encoder["size"], sizes, n=1)
            ctx.error("pretrain.encoder.size", f"expected one of {', '.join(sizes)} (the {encoder['name']!r} "
                      f"presets), found {encoder['size']!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    for i, obj in enumerate(pre["objectives"]):
        _check_component("objective", obj["name"], obj["options"], f"pretrain.objectives[{i}]", ctx)
    if pre["optimizer"] is not None:
        _check_component("optimizer", pre["optimizer"]["name"], pre["optimizer"]["options"], "pretrain.optimizer", ctx)
    _check_tagging(config["tagging"], ctx)
    _check_sources(config["data"]["sources"], ctx)
    _check_objectives(config, ctx)
    _check_baselines(config, ctx)
    if pre["stream"] is not None and pre["max_duration"] is not None:
        ctx.error("pretrain.stream", "streamed batches have batch_size clips; duration bucketing (max_duration) "
                  "needs every clip's duration up front: set one of the two")
    _check_front_ends(config, ctx)
    for i, name in enumerate(config["probes"]["tasks"]):
        _check_task(name, f"probes.tasks[{i}]", ctx)


def _check_front_ends(config: dict, ctx: Context) -> None:
    """Streaming computes the Kaldi fbank only, so it cannot feed an encoder that declares
    another front end (CNN14's log-mel); a trained captioner names a registered encoder."""
    from harness.components import features_for

    encoders = registry("encoder").names()
    name = config["pretrain"]["encoder"]["name"]
    if config["pretrain"]["stream"] is not None and name in encoders and features_for(name)["kind"] != "kaldi-fbank":
        ctx.error("pretrain.stream", f"streamed clips get the Kaldi fbank, but {name!r} reads "
                  f"{features_for(name)['kind']!r}: leave stream unset for this encoder")
    train = config["tagging"]["captioner"].get("train")
    if train and train["encoder"] not in encoders:
        hint = difflib.get_close_matches(train["encoder"], encoders, n=1)
        ctx.error("tagging.captioner.train.encoder", f"expected one of {', '.join(encoders)}, found "
                  f"{train['encoder']!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))


def _check_baselines(config: dict, ctx: Context) -> None:
    """Each baseline is ``random`` or an encoder trained elsewhere: ``{name: <an external
    adapter (encoders/external/)>, ...its options}``. Options are checked against the
    adapter's declaration (paths expanded, resolved against the study file and checked to
    exist), then by the adapter's own plan-time ``check`` (no torch: a folder with its
    config, a module with the HEAR API, a layer in range). Each entry gets its arm's name
    (``label``: given, else the adapter's, e.g. the folder's name), unique among the arms."""
    import importlib

    pre = config["pretrain"]
    adapters = registry("external")
    kinds = ["random", *sorted(adapters.names())]
    taken = {"random"} | {o["name"] for o in pre["objectives"]} | {o.get("label") for o in pre["objectives"]}
    for i, entry in enumerate(pre["baselines"]):
        where = f"pretrain.baselines[{i}]"
        if entry == "random":
            continue
        if isinstance(entry, str) and entry in adapters:
            entry = {"name": entry}  # its required options are reported below
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            hint = difflib.get_close_matches(str(entry), kinds, n=1) if isinstance(entry, str) else []
            ctx.error(where, f"expected 'random' or a mapping {{name: {' | '.join(kinds[1:])}, ...}}, found "
                             f"{entry!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + " (docs/encoders.md)")
            continue
        problem = adapters.problem(entry["name"])
        if problem:
            ctx.error(f"{where}.name", f"{problem} (an encoder trained elsewhere: docs/encoders.md)")
            continue
        adapter = adapters.get(entry["name"])
        options, before = {k: v for k, v in entry.items() if k != "name"}, len(ctx.problems)
        for key, value in options.items():
            node = adapter.options.get(key)
            if node is None:
                hint = difflib.get_close_matches(str(key), list(adapter.options), n=1)
                ctx.error(f"{where}.{key}", f"not an option of the {adapter.name!r} encoder adapter"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; its options: "
                          f"{', '.join(adapter.options)} (docs/encoders.md)")
                continue
            checked = node.validate(value, f"{where}.{key}", ctx)
            if isinstance(node, PathArg) and checked is not MISSING:
                options[key] = checked  # the resolved absolute path: what the node's key hashes
        for key, node in adapter.options.items():
            if node.required and key not in options:
                ctx.error(f"{where}.{key}", f"missing: the {adapter.name!r} adapter needs it ({node.expected}; "
                          "docs/encoders.md)")
        if len(ctx.problems) > before:
            continue
        module = importlib.import_module(adapter.module)
        probe = dict(options)
        if adapter.meta.get("layers"):
            probe["layer"] = config["probes"]["layer"] if options.get("layer") is None else options["layer"]
        for key, message in getattr(module, "check", lambda _: [])(probe):
            ctx.error(f"{where}.{key}" if key else where, message)
        label = options.get("label") or module.describe(options)["label"]
        if label in taken:
            ctx.error(f"{where}.label", f"the arm name {label!r} is taken by another arm of this study; "
                                        "give this entry a label")
        taken.add(label)
        pre["baselines"][i] = {"name": adapter.name, **options, "label": label}


def _check_component(kind: str, name: str, options: dict, where: str, ctx: Context) -> None:
    """``name`` is a registered ``kind`` and ``options`` fit its declared option schema."""
    entries = registry(kind)
    problem = entries.problem(name)
    if problem:
        ctx.error(f"{where}.name", problem)
        return
    entries.get(name).check_options(options, f"{where}.options", ctx)


def _check_task(name: str, where: str, ctx: Context) -> None:
    """A task that exists, and whose file is valid: each of its problems is one line."""
    known = task_registry.available()
    if name not in known:
        hint = difflib.get_close_matches(name, list(known), n=1)
        ctx.error(where, f"unknown task {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") +
                  f"; expected one of: {', '.join(sorted(known))} (task files are read from probes/tasks/ and "
                  "from the folders in HARNESS_TASK_PATH; docs/tasks.md)")
        return
    try:
        task_registry.load_task(name)
    except StudyError as exc:
        for line in exc.problems:
            ctx.error(where, line)


def _check_sources(sources: list[dict], ctx: Context) -> None:
    """Names are unique; a corpus reader gets the arguments it declares (paths expanded and
    checked to exist), the mini suite none."""
    seen: set[str] = set()
    for i, src in enumerate(sources):
        where = f"data.sources[{i}]"
        if src["name"] in seen:
            ctx.error(f"{where}.name", f"source names must be unique, found {src['name']!r} twice")
        seen.add(src["name"])
        if src["kind"] == "minisuite":
            if src["args"]:
                ctx.error(f"{where}.args", "the minisuite source takes seed and scale, not args")
            if src["exclude"]:
                ctx.error(f"{where}.exclude", "the mini suite's pool is disjoint from its tasks by construction")
            continue
        if src["kind"] == "mix":
            _check_mix(src, sources, where, ctx)
            continue
        for j, name in enumerate(src["exclude"]):
            _check_task(name, f"{where}.exclude[{j}]", ctx)
        src["args"] = _reader_args(registry("source").get(src["kind"]), src["args"], f"{where}.args", ctx)


def _reader_args(entry, args: dict, where: str, ctx: Context) -> dict:
    """A reader's arguments as the user set them, every one checked against the reader's
    declaration; path arguments (:class:`~harness.schema.PathArg`) expanded and resolved
    against the study file, which is what the reader gets and the dataset key hashes."""
    out = dict(args)
    for key, value in args.items():
        node = entry.options.get(key)
        if node is None:
            hint = difflib.get_close_matches(str(key), list(entry.options), n=1)
            ctx.error(f"{where}.{key}", f"not an argument of the {entry.name!r} reader"
                      + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + f"; it takes: {', '.join(entry.options)} (docs/sources.md)")
            continue
        checked = node.validate(value, f"{where}.{key}", ctx)
        if isinstance(node, PathArg) and checked is not MISSING:
            out[key] = checked
    for key, node in entry.options.items():
        if node.required and key not in args:
            ctx.error(f"{where}.{key}", f"missing: the {entry.name!r} reader needs it ({node.expected}; "
                      "docs/sources.md)")
    return out


def _check_mix(src: dict, sources: list[dict], where: str, ctx: Context) -> None:
    """``args: {of: {source: weight, ...}, total: N, seed: S}`` over the study's other, non-mix sources."""
    args = src["args"]
    for key in args:
        if key not in ("of", "total", "seed"):
            ctx.error(f"{where}.args.{key}", "not an argument of a mix; it takes: of, total, seed")
    names = {s["name"] for s in sources if s["kind"] != "mix"}
    weights = args.get("of")
    if not isinstance(weights, dict) or len(weights) < 2:
        ctx.error(f"{where}.args.of", f"expected a mapping of two or more sources to weights, found {weights!r}")
        return
    for name, weight in weights.items():
        if name not in names:
            ctx.error(f"{where}.args.of.{name}", f"not a source of this study to mix; expected one of: "
                      f"{', '.join(sorted(names))}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            ctx.error(f"{where}.args.of.{name}", f"expected a weight > 0, found {weight!r}")
    total = args.get("total")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 1):
        ctx.error(f"{where}.args.total", f"expected a number of clips >= 1 (or none: the largest mix), found {total!r}")
    seed = args.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        ctx.error(f"{where}.args.seed", f"expected an integer >= 0, found {seed!r}")


def _check_tagging(tagging: dict, ctx: Context) -> None:
    """Each backend block sets only what its backend reads, and everything it needs."""
    for role in ("captioner", "parser"):
        tagging[role] = _check_backend_block(tagging[role], role, f"tagging.{role}", ctx)
    merge = tagging["merge_synonyms"]
    if merge and merge.get("model"):
        folder = Path(merge["model"]).expanduser()
        folder = folder if folder.is_absolute() else ctx.base_dir / folder
        if not folder.is_dir():
            ctx.error("tagging.merge_synonyms.model", f"expected a local model folder, found {merge['model']!r}")
        else:
            merge["model"] = str(folder.resolve())


def _check_backend_block(block: dict, role: str, where: str, ctx: Context) -> dict:
    """A captioner or parser block: only the keys its backend reads, defaults filled, the
    resolved block keeping only those keys."""
    from harness.components import backend_keys

    allowed = backend_keys(role)
    fields = TAGGING.fields[role].fields
    backend = block["backend"]
    for key, value in block.items():
        if key != "backend" and key not in allowed[backend] and value != fields[key].default:
            ctx.error(f"{where}.{key}", f"not used by the {backend!r} backend; it reads: "
                      f"{', '.join(sorted(allowed[backend])) or 'nothing else'}")
    for key in registry(role).get(backend).meta.get("requires", ()):
        if block.get(key) is None:
            ctx.error(f"{where}.{key}", f"missing required key for the {backend!r} backend")
    if role == "parser" and backend == "transformers" and block.get("model"):
        folder = Path(block["model"]).expanduser()
        folder = folder if folder.is_absolute() else ctx.base_dir / folder
        if not folder.is_dir():
            ctx.error(f"{where}.model", f"expected a local model folder, found {block['model']!r} "
                      "(no such folder; nothing is downloaded)")
        else:
            block["model"] = str(folder.resolve())
    if role == "captioner" and block["field"] is None and backend != "openai":
        block["field"] = {"template": "events"}.get(backend, "caption")
    if role == "parser" and backend == "manifest" and block["field"] is None:
        block["field"] = "tags"
    # The resolved study keeps only what the backend reads.
    return {k: v for k, v in block.items() if k == "backend" or (k in allowed[backend] and v is not None)}


def _check_objectives(config: dict, ctx: Context) -> None:
    """Objective entries: their captioner blocks, unique arm labels, sources that exist,
    and an init that names one other arm (no cycles) or a checkpoint."""
    from harness import components

    objectives = config["pretrain"]["objectives"]
    sources = {s["name"] for s in config["data"]["sources"]}
    labels: dict[str, list[int]] = {}
    for i, obj in enumerate(objectives):
        labels.setdefault(obj["label"] or obj["name"], []).append(i)
    for i, obj in enumerate(objectives):
        where = f"pretrain.objectives[{i}]"
        if obj["captions"] is not None and obj["name"] in registry("objective"):
            obj["captions"] = _check_backend_block(obj["captions"], "captioner", f"{where}.captions", ctx)
            needs = set(components.objective_needs(obj["name"]).split("+"))
            uses = "captions" in needs or ("tags" in needs and config["tagging"]["parser"]["backend"] != "manifest")
            if not uses:
                ctx.error(f"{where}.captions", f"the {obj['name']!r} objective trains on "
                          f"{components.objective_needs(obj['name'])}, not on captions (or tags parsed from them)")
        if obj["label"] and obj["label"] in registry("objective") and obj["label"] != obj["name"]:
            ctx.error(f"{where}.label", f"{obj['label']!r} is the name of another objective; choose another label")
        for name in obj["sources"]:
            if name not in sources:
                ctx.error(f"{where}.sources", f"no data source named {name!r}; sources: {', '.join(sorted(sources))}")
        init = obj["init"]
        if init is None:
            continue
        if (init["from"] is None) == (init["checkpoint"] is None):
            ctx.error(f"{where}.init", "expected exactly one of from (an objective of this study) or checkpoint")
            continue
        if init["checkpoint"] is not None:
            if init["source"] is not None:
                ctx.error(f"{where}.init.source", "only with init.from")
            continue
        target = labels.get(init["from"], [])
        if len(target) != 1:
            ctx.error(f"{where}.init.from", (f"{len(target)} objectives are called {init['from']!r}; give them "
                                             "distinct labels" if target else
                                             f"no objective called {init['from']!r}; objectives: "
                                             f"{', '.join(labels)}"))
        elif target[0] == i:
            ctx.error(f"{where}.init.from", "an objective cannot start from itself")
        if init["source"] is not None and init["source"] not in sources:
            ctx.error(f"{where}.init.source", f"no data source named {init['source']!r}")
    if not ctx.problems:  # cycles
        for i in range(len(objectives)):
            seen, j = {i}, i
            while objectives[j]["init"] and objectives[j]["init"]["from"]:
                j = labels[objectives[j]["init"]["from"]][0]
                if j in seen:
                    ctx.error(f"pretrain.objectives[{i}].init.from", "objectives start from each other in a cycle")
                    break
                seen.add(j)
    # The resolved entries keep only what is set: {name, options} as before, plus any of
    # label, captions, sources, init (so configs and digests of existing studies stay as they were).
    for i, obj in enumerate(objectives):
        if obj["init"]:
            obj["init"] = {k: v for k, v in obj["init"].items() if v is not None}
        objectives[i] = {k: v for k, v in obj.items() if k in ("name", "options") or v not in (None, [])}


def _check_consistency(config: dict, path: Path) -> None:
    from harness import components

    needs_tags = [o["name"] for o in config["pretrain"]["objectives"]
                  if "tags" in components.objective_needs(o["name"]).split("+")]
    tagging = config["tagging"]
    if needs_tags and not (tagging["sizes"] or tagging["files"]):
        raise StudyError(f"{_display(path)}: tagging.sizes: objectives {needs_tags} train on tags, "
                         "so the study needs at least one tag-system size (or tagging.files)")


def dump_config(config: dict) -> str:
    """Canonical JSON of a resolved config (sorted keys), as stored with results."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


__all__ = ["Study", "load_study", "dump_config", "MISSING"]
