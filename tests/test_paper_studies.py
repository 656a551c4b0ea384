"""The paper studies (studies/paper/) are valid and plan the graphs the papers describe.

The datasets are not here: the probe tasks' roots point at tiny trees in each official
layout (built by the adapter tests' helpers). The corpora are read only when a study runs,
but planning checks that the files and folders a reader is given exist, so empty
placeholders stand in for them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.graph import expand
from harness.study import load_study
from test_adapters import (audiocaps_tree, clotho_tree, cremad_tree, esc50_tree, fsd50k_tree, mtat_tree, nsynth_tree,
                           us8k_tree, vggsound_tree, voxceleb2_tree)

PAPER = Path(__file__).resolve().parent.parent / "studies" / "paper"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness-data")
    fsd50k_tree(root / "FSD50K")
    vggsound_tree(root / "VGGSound")
    voxceleb2_tree(root / "VoxCeleb2")
    cremad_tree(root / "CREMA-D")
    mtat_tree(root / "MagnaTagATune")
    nsynth_tree(root / "NSynth")
    esc50_tree(root / "ESC-50-master")  # BLAT's zero-shot and retrieval tasks
    us8k_tree(root / "UrbanSound8K")
    audiocaps_tree(root / "AudioCaps")
    clotho_tree(root / "Clotho")
    for folder in ("UTS/audio", "AudioSet/audio", "CaptionStew"):
        (root / folder).mkdir(parents=True)
    for name in ("UTS/uts_400k.jsonl.gz", "CaptionStew/captions.csv", "AudioSet/unbalanced_train_segments.csv",
                 "AudioSet/balanced_train_segments.csv", "AudioSet/eval_segments.csv"):
        (root / name).touch()
    return root


@pytest.fixture
def paper_env(data_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(data_root))
    for var in ("UTS_MANIFESTS", "UTS_AUDIO", "AUDIOSET_ROOT", "CAPTIONSTEW_CSV"):
        monkeypatch.delenv(var, raising=False)
    return data_root


def plan(name: str):
    study = load_study(PAPER / name)
    return study, expand(study.config).by_stage()


def test_uts_main_plans_every_objective_on_six_tasks_with_two_poolings(paper_env) -> None:
    study, stages = plan("uts_main.yaml")
    runs = {n.coords["objective"] for n in stages["pretrain"]}
    assert runs == {"mtc", "par", "captioning", "contrastive", "multitask", "random"}
    assert len(stages["pretrain"]) == 6
    assert {n.coords["task"] for n in stages["probe"]} == {f"paper/{t}" for t in
                                                           ("fsd50k", "vggsound", "voxceleb2", "cremad", "mtat", "nsynth")}
    assert len(stages["probe"]) == 6 * 6
    assert stages["probe"][0].config["poolings"] == ["mean", "attention"]
    (tagsystem,) = stages["tagsystem"]
    assert tagsystem.config["size"] == 1500
    (source,) = [n for n in stages["dataset"] if n.config["kind"] == "uts"]
    assert source.config["args"]["manifests"] == str(paper_env / "UTS" / "uts_400k.jsonl.gz")
    assert study.config["compute"]["executor"] == "slurm"


def test_tag_size_ablation_has_the_papers_five_sizes(paper_env) -> None:
    _, stages = plan("uts_tag_size.yaml")
    assert sorted(n.config["size"] for n in stages["tagsystem"]) == [800, 1000, 1500, 2000, 3000]
    assert sorted(n.coords.get("tag_system_size") or 0 for n in stages["pretrain"]) == [0, 800, 1000, 1500, 2000, 3000]


def test_captionstew_scaling_nests_five_data_sizes_per_objective_from_scratch_and_supervised_init(paper_env) -> None:
    _, stages = plan("captionstew_scaling.yaml")

    def arm(node):
        return node.coords.get("arm", node.coords["objective"]), node.coords.get("init")

    sizes: dict[tuple, list] = {}
    for node in stages["pretrain"]:
        sizes.setdefault(arm(node), []).append((node.config.get("subset") or {}).get("size"))
    scaling = [400000, 1000000, 2000000, 4000000, 9300000]
    init = "audioset/audioset_sl"
    assert {k: sorted(v, key=lambda x: x or 0) for k, v in sizes.items()} == {
        ("contrastive", None): scaling, ("captioning", None): scaling,
        ("contrastive", init): scaling, ("captioning", init): scaling,
        ("audioset_sl", None): [None]}  # the supervised run trains once, on AudioSet, and starts every size
    (supervised,) = [n for n in stages["pretrain"] if arm(n) == ("audioset_sl", None)]
    assert supervised.coords["source"] == "audioset" and supervised.config["objective"]["name"] == "supervised"
    for node in stages["pretrain"]:
        name, start = arm(node)
        if start is not None:
            assert node.inputs["init"] is supervised and node.coords["source"] == "captionstew"
            (twin,) = [n for n in stages["pretrain"] if arm(n) == (name, None)
                       and n.config["subset"] == node.config["subset"]]
            assert twin.config["objective"] == node.config["objective"]  # the same options from scratch
        elif name != "audioset_sl":
            assert "init" not in node.inputs and node.coords["source"] == "captionstew"


def test_audioset_baseline_is_supervised_on_audioset(paper_env) -> None:
    _, stages = plan("uts_audioset_baseline.yaml")
    (run,) = stages["pretrain"]
    assert run.config["objective"]["name"] == "supervised"
    (source,) = [n for n in stages["dataset"] if n.config["kind"] == "audioset"]
    assert source.config["args"]["segments"][0].endswith("AudioSet/unbalanced_train_segments.csv")


@pytest.mark.parametrize("name", sorted(p.name for p in PAPER.glob("[!_]*.yaml")))
def test_harness_plan_accepts_every_paper_study(name, paper_env, capsys) -> None:
    assert main(["plan", str(PAPER / name), "--out", str(paper_env / "runs" / name)]) == 0
    assert "jobs" in capsys.readouterr().out


def test_a_missing_dataset_root_is_one_line(paper_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HARNESS_DATA", str(paper_env / "nowhere"))
    assert main(["plan", str(PAPER / "uts_main.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "fsd50k" in err.lower()
