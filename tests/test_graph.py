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
def quickstart():
    return load_study(ROOT / "studies" / "quickstart.yaml").config


def counts(graph):
    return {stage: len(nodes) for stage, nodes in graph.by_stage().items()}


def test_quickstart_graph_shape(quickstart):
    graph = expand(quickstart)
    # 1 source x 2 sizes x 1 objective x 1 seed MTC runs, plus the random baseline: 3 runs x 5 tasks.
    assert counts(graph) == {"dataset": 1, "captions": 1, "tags": 1, "tagsystem": 2, "pretrain": 3,
                             "embed": 15, "probe": 15}
    runs = {(n.coords["objective"], n.coords["tag_system"]) for n in graph.by_stage()["pretrain"]}
    assert runs == {("mtc", "K=32"), ("mtc", "K=64"), ("random", "-")}


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
    cfg["data"]["sources"].append({"name": "mini2", "kind": "minisuite", "seed": 1, "scale": 1.0})
    cfg["pretrain"]["seeds"] = [0, 1, 2]
    graph = expand(cfg)
    c = counts(graph)
    # 2 sources x 2 sizes x 3 seeds MTC runs + 3 random seeds
    assert c["pretrain"] == 2 * 2 * 3 + 3
    assert c["embed"] == c["pretrain"] * 5 and c["probe"] == c["embed"]
    # the probe tasks read the seed-0 suite, which is also the first source: 2 datasets in all
    assert c["dataset"] == 2


def test_objectives_without_tags_are_not_multiplied_by_size(quickstart, monkeypatch):
    monkeypatch.setitem(components.OBJECTIVES, "captioning", components.OBJECTIVES["mtc"])
    monkeypatch.setattr(components, "objective_needs", lambda name: "captions" if name == "captioning" else "tags")
    cfg = copy.deepcopy(quickstart)
    cfg["pretrain"]["objectives"].append({"name": "captioning", "options": {}})
    runs = expand(cfg).by_stage()["pretrain"]
    captioning = [n for n in runs if n.coords["objective"] == "captioning"]
    assert len(captioning) == 1 and "tagsystem" not in captioning[0].inputs
    assert len([n for n in runs if n.coords["objective"] == "mtc"]) == 2


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
    assert changed_stages(quickstart, cfg) == {"probe": 15}


def test_training_setting_changes_only_downstream_of_pretrain(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["pretrain"]["steps"] = 301
    # the random baseline does not train, so it is untouched
    assert changed_stages(quickstart, cfg) == {"pretrain": 2, "embed": 10, "probe": 10}


def test_tag_system_size_change_touches_one_branch(quickstart):
    cfg = copy.deepcopy(quickstart)
    cfg["tagging"]["sizes"] = [32, 48]
    assert changed_stages(quickstart, cfg) == {"tagsystem": 1, "pretrain": 1, "embed": 5, "probe": 5}


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
