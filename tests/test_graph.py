"""Job graph: the cross product, content keys, and which nodes a changed setting touches."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from harness import components
from harness.graph import expand
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def real_quickstart():
    return load_study(ROOT / "studies" / "quickstart.yaml").config


@pytest.fixture
def quickstart(real_quickstart):
    """The quickstart with MTC as its only objective: the counting below stays readable."""
    cfg = copy.deepcopy(real_quickstart)
    cfg["pretrain"]["objectives"] = [{"name": "mtc", "options": {}}]
    return cfg


def counts(graph):
    return {stage: len(nodes) for stage, nodes in graph.by_stage().items()}


def test_quickstart_graph_shape(real_quickstart):
    graph = expand(real_quickstart)
    # MTC, PAR, multi-task at 2 sizes; captioning, contrastive once; the random baseline: 9 runs x 6 tasks.
    assert counts(graph) == {"dataset": 1, "captions": 1, "tags": 1, "tagsystem": 2, "pretrain": 9,
                             "embed": 54, "probe": 54}
    runs = {(n.coords["objective"], n.coords["tag_system"]) for n in graph.by_stage()["pretrain"]}
    assert runs == {("mtc", "K=32"), ("mtc", "K=64"), ("par", "K=32"), ("par", "K=64"), ("multitask", "K=32"),
                    ("multitask", "K=64"), ("captioning", "-"), ("contrastive", "-"), ("random", "-")}


def test_mtc_only_graph_shape(quickstart):
    # 1 source x 2 sizes x 1 objective x 1 seed MTC runs, plus the random baseline: 3 runs x 6 tasks.
    assert counts(expand(quickstart)) == {"dataset": 1, "captions": 1, "tags": 1, "tagsystem": 2, "pretrain": 3,
                                          "embed": 18, "probe": 18}


def test_topological_order(quickstart):
    seen = set()
    for node in expand(quickstart):
        assert all(dep.id in seen for dep in node.inputs.values())
        seen.add(node.id)


def test_keys_are_stable_and_content_addressed(quickstart):
    a = {n.id for n in expand(quickstart)}
    b = {n.id for n in expand(copy.deepcopy(quickstart))}
    assert a == b


def test_cross_product_of_sources_sizes_objectives_seeds(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["data"]["sources"].append({"name": "mini2", "kind": "minisuite", "seed": 1, "scale": 1.0,
                                    "args": {}, "subsets": [], "subset_seed": 0})
    cfg["pretrain"]["seeds"] = [0, 1, 2]
    graph = expand(cfg)
    c = counts(graph)
    # 2 sources x 2 sizes x 3 seeds MTC runs + 3 random seeds
    assert c["pretrain"] == 2 * 2 * 3 + 3
    assert c["embed"] == c["pretrain"] * 6 and c["probe"] == c["embed"]
    # the probe tasks read the seed-0 suite, which is also the first source: 2 datasets in all
    assert c["dataset"] == 2


def test_objectives_without_tags_are_not_multiplied_by_size(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["pretrain"]["objectives"] += [{"name": n, "options": {}}
                                      for n in ("par", "captioning", "contrastive", "multitask", "supervised")]
    runs = expand(cfg).by_stage()["pretrain"]
    by_objective: dict[str, list] = {}
    for node in runs:
        by_objective.setdefault(node.coords["objective"], []).append(node)
    assert {k: len(v) for k, v in by_objective.items()} == {
        "mtc": 2, "par": 2, "multitask": 2, "captioning": 1, "contrastive": 1, "supervised": 1, "random": 1}
    inputs = {name: set(nodes[0].inputs) for name, nodes in by_objective.items()}
    assert inputs["captioning"] == inputs["contrastive"] == {"dataset", "captions"}
    assert inputs["multitask"] == {"dataset", "captions", "tags", "tagsystem"}
    assert inputs["par"] == inputs["mtc"] == {"dataset", "tags", "tagsystem"}
    assert inputs["supervised"] == {"dataset"} and inputs["random"] == set()


def changed_stages(before, after) -> dict[str, int]:
    old = {n.id for n in expand(before)}
    out: dict[str, int] = {}
    for node in expand(after):
        if node.id not in old:
            out[node.stage] = out.get(node.stage, 0) + 1
    return out


def test_probe_setting_changes_only_probe_nodes(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["probes"]["lrs"] = [0.1]
    assert changed_stages(quickstart, cfg) == {"probe": 18}


def test_training_setting_changes_only_downstream_of_pretrain(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["pretrain"]["steps"] = 301
    # the random baseline does not train, so it is untouched
    assert changed_stages(quickstart, cfg) == {"pretrain": 2, "embed": 12, "probe": 12}


def test_tag_system_size_change_touches_one_branch(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["tagging"]["sizes"] = [32, 48]
    assert changed_stages(quickstart, cfg) == {"tagsystem": 1, "pretrain": 1, "embed": 6, "probe": 6}


def test_runtime_settings_do_not_change_keys(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["compute"]["threads_per_job"] = 2
    cfg["pretrain"]["checkpoint_every"] = 7
    cfg["compute"]["max_parallel"] = 1
    assert changed_stages(quickstart, cfg) == {}


def test_component_version_is_part_of_the_key(quickstart, monkeypatch):
    before = {n.id for n in expand(quickstart)}
    monkeypatch.setattr(components, "stage_version",
                        lambda stage, real=components.stage_version: "999" if stage == "probe" else real(stage))
    after = expand(quickstart)
    assert {n.stage for n in after if n.id not in before} == {"probe"}


def _tagging_ids(cfg):
    graph = expand(cfg).by_stage()
    return {stage: {n.id for n in graph[stage]} for stage in ("captions", "tags", "tagsystem", "pretrain")}


def test_runtime_settings_of_model_backends_stay_out_of_keys(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["tagging"]["captioner"] = {"backend": "openai", "model": "qwen3-omni-captioner",
                                   "base_url": "http://a:8000/v1", "concurrency": 8, "timeout": 120}
    cfg["tagging"]["parser"] = {"backend": "openai", "model": "qwen2.5-7b", "base_url": "http://b:8000/v1"}
    base = _tagging_ids(cfg)
    node = next(n for n in expand(cfg) if n.stage == "captions")
    assert node.runtime["base_url"] == "http://a:8000/v1" and "base_url" not in node.config

    moved = copy.deepcopy(cfg)
    moved["tagging"]["captioner"].update(base_url="http://other:9000/v1", concurrency=64, timeout=5)
    moved["tagging"]["parser"]["base_url"] = "http://other:9001/v1"
    assert _tagging_ids(moved) == base

    hotter = copy.deepcopy(cfg)
    hotter["tagging"]["captioner"]["temperature"] = 0.8
    changed = _tagging_ids(hotter)
    assert all(changed[s].isdisjoint(base[s]) for s in ("captions", "tags", "tagsystem"))  # and downstream
    assert len(changed["pretrain"] & base["pretrain"]) == 1  # only the random baseline, which reads no data

    other_parser = copy.deepcopy(cfg)
    other_parser["tagging"]["parser"]["model"] = "qwen2.5-72b"
    changed = _tagging_ids(other_parser)
    assert changed["captions"] == base["captions"] and changed["tags"].isdisjoint(base["tags"])


def test_local_model_is_keyed_by_content_not_path(quickstart, tmp_path):
    import shutil

    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    cfg = copy.deepcopy(quickstart)
    cfg["tagging"]["parser"] = {"backend": "transformers", "model": str(folder), "seed": 0}
    base = _tagging_ids(cfg)
    shutil.copytree(folder, tmp_path / "moved")
    cfg["tagging"]["parser"]["model"] = str(tmp_path / "moved")
    assert _tagging_ids(cfg) == base
    (tmp_path / "moved" / "config.json").write_text('{"model_type": "llama", "retrained": 1}')
    assert _tagging_ids(cfg)["tags"].isdisjoint(base["tags"])


def test_synonym_merging_changes_tag_systems_not_tags(quickstart):
    base = _tagging_ids(quickstart)
    cfg = copy.deepcopy(quickstart)
    cfg["tagging"]["merge_synonyms"] = {"threshold": 0.9, "model": None}
    merged = _tagging_ids(cfg)
    assert merged["tags"] == base["tags"] and merged["tagsystem"].isdisjoint(base["tagsystem"])
    cfg["tagging"]["merge_synonyms"]["threshold"] = 0.95
    assert _tagging_ids(cfg)["tagsystem"].isdisjoint(merged["tagsystem"])
