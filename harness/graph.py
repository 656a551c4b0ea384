"""Expand a study into its job graph.

sources × tag-system sizes × objectives × seeds, then × tasks:

    dataset ─▶ captions ─▶ tags ─▶ tagsystem(K) ─▶ pretrain(objective, encoder, seed)
                                                      ─▶ embed(task, layer) ─▶ probe(task, sweep)

Objectives that do not train on tags (captions, labels, none) are not multiplied by the
tag-system size. Each node's key hashes its resolved config, the keys of its inputs and
the version of the component that runs it, so equal work has equal keys: nodes are
deduplicated across the grid, and a changed setting re-runs only what lies downstream.
"""

from __future__ import annotations

import itertools

from dataclasses import dataclass, field
from typing import Any, Iterator

from harness import components, tasks as task_registry
from harness.store import digest, file_digest



@dataclass(frozen=True)
class Node:
    """One job: a pure function of its config and its inputs."""

    stage: str
    key: str
    config: dict[str, Any]
    inputs: dict[str, "Node"]
    version: str
    coords: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # settings that never change the output

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.key}"

    @property
    def label(self) -> str:
        """The job's label for status lines (:func:`harness.labels.node_label`)."""
        from harness.labels import node_label

        return node_label(self.coords, self.stage)


def make_node(stage: str, config: dict, inputs: dict[str, Node], version: str,
              coords: dict | None = None, runtime: dict | None = None) -> Node:
    key = digest({"stage": stage, "config": config, "version": version,
                  "inputs": {name: node.id for name, node in sorted(inputs.items())}})
    return Node(stage, key, config, inputs, version, coords or {}, runtime or {})


@dataclass
class Graph:
    """Nodes in a topological order (every node after its inputs), deduplicated by id."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        for dep in node.inputs.values():
            self.add(dep)
        return self.nodes.setdefault(node.id, node)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def by_stage(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {s: [] for s in components.stages()}
        for node in self:
            out[node.stage].append(node)
        return {s: n for s, n in out.items() if n}


def tag_system_name(size: int | None = None, file: str | None = None) -> str:
    from pathlib import Path

    return f"K={size}" if size is not None else Path(file).stem


def expand(config: dict[str, Any]) -> Graph:
    """The job graph of a validated study config."""
    graph = Graph()
    pre, probes, tagging = config["pretrain"], config["probes"], config["tagging"]
    runtime = {"threads": config["compute"]["threads_per_job"]}
    encoder_cfg = {"name": pre["encoder"]["name"], "size": pre["encoder"]["size"], **pre["encoder"]["options"]}
    encoder_version = components.encoder_version(encoder_cfg["name"])
    train_cfg = {k: pre[k] for k in ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip",
                                      "grad_accum", "specaugment")}
    if pre["max_duration"] is not None:  # duration bucketing (absent otherwise, so older keys stay valid)
        train_cfg.update(max_duration=pre["max_duration"], num_buckets=pre["num_buckets"])
    if pre.get("stream"):  # streamed from shards: the order of clips depends on these (absent otherwise)
        train_cfg["stream"] = dict(pre["stream"])
    if pre.get("optimizer"):  # another optimiser than the default AdamW (absent otherwise: keys stay valid)
        train_cfg["optimizer"] = {"name": pre["optimizer"]["name"], **pre["optimizer"]["options"]}
    if pre.get("average_period"):  # the encoder is the weights' running average (absent otherwise)
        train_cfg["average_period"] = pre["average_period"]
    features = components.features_for(encoder_cfg["name"])  # the encoder's front end

    runs: list[Node] = []
    sources = {src["name"]: src for src in config["data"]["sources"]}
    datasets = {name: (dataset_node(src["kind"], {"seed": src["seed"], "scale": src["scale"]}, name)
                       if src["kind"] == "minisuite" else source_node(src))
                for name, src in sources.items() if src["kind"] != "mix"}
    datasets.update({name: mix_node(src, datasets) for name, src in sources.items() if src["kind"] == "mix"})
    merge, merge_runtime = _merge_config(tagging["merge_synonyms"])

    def supervision_chain(src: dict, captioner: dict, own: bool = False) -> tuple[Node, Node, list[Node]]:
        """captions -> tags -> tag systems of one source with one captioner (``own``: an
        objective's own captioner, named in the coordinates)."""
        dataset, coords = datasets[src["name"]], {"source": src["name"]}
        if own:
            coords["captions"] = captions_label(captioner)
        cap_cfg, cap_runtime = backend_settings(captioner, components.backend_keys("captioner"))
        cap_inputs = {"dataset": dataset}
        if cap_cfg.get("train"):  # a captioner trained here first (keyword: BLAT's)
            cap_inputs["captioner"] = captioner_node(cap_cfg, datasets, {**runtime,
                                                                         "checkpoint_every": pre["checkpoint_every"]})
        captions = make_node("captions", cap_cfg, cap_inputs,
                             _v("captions", components.captioner_version(cap_cfg["backend"])), coords,
                             {**runtime, **cap_runtime})
        parser_cfg, parser_runtime = backend_settings(tagging["parser"], components.backend_keys("parser"))
        tags = make_node("tags", parser_cfg,
                         {"dataset": dataset} if parser_cfg["backend"] == "manifest" else {"captions": captions},
                         _v("tags", components.parser_version(parser_cfg["backend"])), coords,
                         {**runtime, **parser_runtime})
        tag_systems = [make_node("tagsystem", {"size": k, **merge}, {"tags": tags},
                                 _v("tagsystem", components.tagsystem_version(bool(merge))),
                                 {**coords, "tag_system": tag_system_name(size=k), "tag_system_size": k},
                                 merge_runtime)
                       for k in tagging["sizes"]]
        tag_systems += [make_node("tagsystem", {"file": f, "sha256": file_digest(f)}, {}, _v("tagsystem", components.tagsystem_version()),
                                  {**coords, "tag_system": tag_system_name(file=f)})
                        for f in tagging["files"]]
        return captions, tags, tag_systems

    objectives = pre["objectives"]
    arm_of = {(o.get("label") or o["name"]): i for i, o in enumerate(objectives)}
    runs_of: dict[int, list[Node]] = {}

    def objective_runs(index: int) -> list[Node]:
        """The pretrain nodes of one objective entry, over sources, tag systems, seeds, subsets
        (and the runs it starts from, with init.from)."""
        if index in runs_of:
            return runs_of[index]
        objective = objectives[index]
        needs = set(components.objective_needs(objective["name"]).split("+"))
        obj_cfg = {"name": objective["name"], **objective["options"]}
        init = objective.get("init") or {}
        init_runs = objective_runs(arm_of[init["from"]]) if init.get("from") else []
        out: list[Node] = []
        for src in config["data"]["sources"]:
            if objective.get("sources") and src["name"] not in objective["sources"]:
                continue
            if not src.get("train", True) and not objective.get("sources"):
                continue  # only an ingredient of a mix
            dataset = datasets[src["name"]]
            captions, tags, tag_systems = supervision_chain(src, tagging["captioner"])
            if objective.get("captions") is not None:
                captions, tags, tag_systems = supervision_chain(src, objective["captions"], own=True)
            for ts, seed, size in itertools.product(tag_systems if "tags" in needs else [None], pre["seeds"],
                                                    src["subsets"] or [None]):
                inputs = {"dataset": dataset}
                if ts is not None:
                    inputs.update(tags=tags, tagsystem=ts)
                if "captions" in needs:
                    inputs["captions"] = captions
                base_coords = ts.coords if ts else {"source": src["name"], "tag_system": "-"}
                run_coords = {**base_coords, "objective": objective["name"], "seed": seed,
                              "encoder": f"{encoder_cfg['name']}-{encoder_cfg['size']}"}
                if objective.get("label"):
                    run_coords["arm"] = objective["label"]
                if objective.get("captions") is not None:
                    run_coords["captions"] = captions_label(objective["captions"])
                run_cfg = {"encoder": encoder_cfg, "objective": obj_cfg, "train": train_cfg, "seed": seed,
                           "features": features}
                if size is not None:  # a nested data-scaling subset (absent otherwise: keys stay valid)
                    run_cfg["subset"] = {"size": size, "seed": src["subset_seed"]}
                    run_coords["data_size"] = size
                starts: list[tuple[Node | None, str | None]] = [(None, None)]
                if init.get("checkpoint"):
                    run_cfg["init"] = {"checkpoint": init["checkpoint"], "sha256": file_digest(init["checkpoint"])}
                    starts = [(None, "checkpoint")]
                elif init.get("from"):
                    starts = [(r, init_label(r, src["name"])) for r in _init_candidates(init_runs, init, seed, size)]
                    if not starts:
                        from harness.errors import StudyError

                        raise StudyError(f"pretrain.objectives[{index}].init.from: {init['from']!r} has no run of "
                                         f"seed {seed}" + (f" on source {init['source']!r}" if init.get("source") else ""))
                for start, start_label in starts:
                    node_inputs = dict(inputs) if start is None else {**inputs, "init": start}
                    coords = run_coords if start_label is None else {**run_coords, "init": start_label}
                    out.append(make_node(
                        "pretrain",
                        run_cfg,
                        node_inputs, _v("pretrain", encoder_version, components.objective_version(objective["name"])),
                        coords,
                        {**runtime, "checkpoint_every": pre["checkpoint_every"]}))
        runs_of[index] = out
        return out

    seen: set[str] = set()
    for src in config["data"]["sources"]:  # runs source by source, in the study's order
        for index in range(len(objectives)):
            for r in objective_runs(index):
                if r.coords["source"] == src["name"] and r.id not in seen:
                    seen.add(r.id)
                    runs.append(r)
    for baseline in pre["baselines"]:  # a randomly initialised encoder: no data, no training
        if baseline != "random":  # an encoder trained elsewhere, one arm (harness/stages/external.py)
            from harness.stages.external import plan_external

            ext_cfg, ext_version, ext_coords = plan_external(baseline, probes["layer"])
            runs.append(make_node("external", ext_cfg, {}, _v("external", ext_version),
                                  {**ext_coords, "seed": pre["seeds"][0]}, runtime))
            continue
        for seed in pre["seeds"]:
            runs.append(make_node("pretrain", {"encoder": encoder_cfg, "objective": {"name": baseline}, "seed": seed,
                                               "features": features},
                                  {}, _v("pretrain", encoder_version),
                                  {"source": "-", "objective": baseline, "seed": seed, "tag_system": "-",
                                   "encoder": f"{encoder_cfg['name']}-{encoder_cfg['size']}"}, runtime))

    probe_cfg = {k: probes[k] for k in ("heads", "poolings", "lrs", "weight_decays", "epochs", "batch_size",
                                        "precision")}
    for run in runs:
        graph.add(run)
        for task_name in probes["tasks"]:
            task = task_registry.load_task(task_name)
            task_data = dataset_node(task["adapter"], task["args"], task_name)
            embed = make_node("embed", {"task": task, "layer": probes["layer"], "features": features},
                              {"pretrain": run, "data": task_data}, components.stage_version("embed"),
                              {**run.coords, "task": task_name, "domain": task["domain"]}, runtime)
            for probe_seed in probes["seeds"]:
                graph.add(make_node("probe", {**probe_cfg, "seed": probe_seed, "task": task},
                                    {"embed": embed}, components.stage_version("probe"),
                                    {**embed.coords, "probe_seed": probe_seed}, runtime))
    return graph


def captioner_node(captioner: dict[str, Any], datasets: dict[str, Node], runtime: dict[str, Any]) -> Node:
    """The node that trains a captioner block's model (``train``) on its source's clips."""
    train = dict(captioner["train"])
    for key in ("source", "keyword_source"):
        if train.get(key) is not None and train[key] not in datasets:
            from harness.errors import StudyError

            raise StudyError(f"tagging.captioner.train.{key}: no data source named {train[key]!r} "
                             f"(sources: {', '.join(datasets)})")
    inputs = {"dataset": datasets[train.pop("source")]}
    if train.get("keyword_source"):
        inputs["keywords"] = datasets[train["keyword_source"]]
    train.pop("keyword_source", None)
    encoder = {"name": train.pop("encoder"), "size": train.pop("size")}
    config = {**train, "encoder": encoder}
    config["features"] = components.features_for(config["encoder"]["name"])
    return make_node("captioner", config, inputs,
                     _v("captioner", components.captioner_version(captioner["backend"])),
                     {"source": captioner["train"]["source"], "captions": captions_label(captioner)}, runtime)


def captions_label(captioner: dict[str, Any]) -> str:
    """How a run's captions were made, for its coordinates and label: the field of a manifest
    captioner (``weak_caption``), else the backend and what it reads (``template:labels``,
    ``openai:<model>+labels``)."""
    backend = captioner["backend"]
    if backend == "manifest":
        return captioner.get("field") or "caption"
    if backend == "template":
        return f"template:{captioner.get('field') or 'events'}"
    if backend == "keyword":
        return f"keyword:{captioner['train']['source']}+{captioner['field']}"
    return f"{backend}:{captioner.get('model')}" + (f"+{captioner['field']}" if captioner.get("field") else "")


def init_label(run: Node, source: str) -> str:
    """The arm a fine-tuned run starts from: objective (or label), tag system, and the source
    when it is another one (:func:`harness.labels.init_label`)."""
    from harness.labels import init_label as label_of

    return label_of(run.coords, source)


def _init_candidates(runs: list[Node], init: dict[str, Any], seed: int, size: int | None) -> list[Node]:
    """Init runs for a fine-tuned run of ``seed`` (and data ``size``): the same seed, the
    chosen source, and the same data size where the init runs have that size."""
    chosen = [r for r in runs if r.coords["seed"] == seed
              and (init.get("source") is None or r.coords["source"] == init["source"])]
    same_size = [r for r in chosen if r.coords.get("data_size") == size]
    if same_size:
        return same_size
    return [r for r in chosen if r.coords.get("data_size") is None] or chosen


def backend_settings(block: dict[str, Any], keys: dict[str, set[str]]) -> tuple[dict, dict]:
    """A captioner/parser block split into (what decides the output, runtime-only settings).

    Only the settings that the block's backend reads are kept; a local model folder is
    replaced in the key by its content fingerprint (the folder may move, the key stays).
    """
    from harness.study import RUNTIME_KEYS

    used = keys[block["backend"]]
    config = {"backend": block["backend"]}
    runtime = {}
    for key in sorted(used):
        value = block.get(key)
        if value is None:
            continue
        (runtime if key in RUNTIME_KEYS else config)[key] = value
    if block["backend"] == "transformers":
        from harness.tagging.hf import folder_fingerprint

        config["model_fingerprint"] = folder_fingerprint(config["model"])
        runtime["model"] = config.pop("model")  # the folder's place is runtime; its content is the key
    return config, runtime


def _merge_config(merge: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Synonym merging: (its part of the tagsystem key, the model folder to load it from)."""
    if not merge:
        return {}, {}
    from harness.tagging.hf import folder_fingerprint
    from harness.tagging.synonyms import default_model_dir

    folder = merge.get("model") or str(default_model_dir())
    return ({"merge_synonyms": {"threshold": merge["threshold"], "model_fingerprint": folder_fingerprint(folder)}},
            {"merge_model": folder})


def source_node(src: dict[str, Any]) -> Node:
    """A pre-training corpus read by a :mod:`harness.sources` reader (shared across studies).

    Keyed by the reader, its arguments and the size and modification time of every file
    they name, so that a changed caption file is read again and an unchanged corpus never is.
    """
    from harness.registry import registry

    config = {"kind": src["kind"], "args": src["args"], "files": _file_stamps(src["args"])}
    inputs = {}
    if src.get("exclude"):  # evaluation clips to keep out of pre-training (absent otherwise: keys stay)
        config["exclude"] = []
        for i, name in enumerate(src["exclude"]):
            task = task_registry.load_task(name)
            inputs[f"exclude{i}"] = dataset_node(task["adapter"], task["args"], name)
            config["exclude"].append({"task": task, "splits": sorted({task["splits"]["valid"], task["splits"]["test"]})})
    return make_node("dataset", config, inputs, _v("dataset", registry("source").get(src["kind"]).version),
                     {"dataset": src["kind"], "for": src["name"]})


def mix_node(src: dict[str, Any], datasets: dict[str, Node]) -> Node:
    """A weighted mix of other sources' pools (``harness.sources.select.mix``), without replacement."""
    from harness.sources import SOURCE_VERSION

    weights = dict(sorted(src["args"]["of"].items()))
    config = {"kind": "mix", "weights": weights, "total": src["args"].get("total"), "seed": src["args"].get("seed", 0)}
    inputs = {f"part{i}": datasets[name] for i, name in enumerate(weights)}
    return make_node("dataset", config, inputs, _v("dataset", SOURCE_VERSION), {"dataset": "mix", "for": src["name"]})


def _file_stamps(args: dict[str, Any]) -> dict[str, list[int]]:
    import os

    stamps = {}
    for value in args.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and os.path.isfile(item):
                st = os.stat(item)
                stamps[item] = [st.st_size, int(st.st_mtime)]
    return dict(sorted(stamps.items()))


def dataset_node(kind: str, args: dict[str, Any], used_by: str | None = None) -> Node:
    """A generated or adapted dataset (shared across studies): keyed by the adapter and its
    args. ``used_by``: the task or source it is read for, which names the job in plan,
    status and progress (not part of the key: one dataset serves every task that reads it)."""
    from harness.sources import node_config

    config, version = node_config(kind, args)
    coords = {"dataset": kind, "for": used_by} if used_by else {"dataset": kind}
    return make_node("dataset", config, {}, _v("dataset", version), coords)


def _v(stage: str, *component_versions: str) -> str:
    """A node's version: its stage's code, then the components it runs."""
    return "+".join((components.stage_version(stage), *component_versions))
