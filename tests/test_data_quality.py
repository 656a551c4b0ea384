"""Which captions feed which objective, and initialisation from another run: the graph of
studies/data_quality.yaml (strong against weak captions), objective entries with their own
captions, labels and init, and the errors a study gets for them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from harness.errors import StudyError
from harness.graph import expand
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_quality():
    return load_study(ROOT / "studies" / "data_quality.yaml").config


@pytest.fixture(scope="module")
def quickstart():
    return load_study(ROOT / "studies" / "quickstart.yaml").config


def write_study(tmp_path: Path, objectives: str, extra: str = "") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"""
name: t
include: {ROOT / 'studies' / 'base' / 'mini.yaml'}
tagging: {{sizes: [32]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives:
{objectives}
  steps: 2
{extra}
""")
    return path


def runs(graph):
    return graph.by_stage()["pretrain"]


def test_data_quality_arms_differ_only_in_their_captions(data_quality):
    graph = expand(data_quality)
    captions = graph.by_stage()["captions"]
    assert sorted(n.config["field"] for n in captions) == ["caption", "weak_caption"]
    assert {n.config["backend"] for n in captions} == {"manifest"}
    trained = [r for r in runs(graph) if r.coords["objective"] != "random"]
    assert sorted((r.coords["objective"], r.coords["captions"]) for r in trained) == [
        ("captioning", "caption"), ("captioning", "weak_caption"),
        ("contrastive", "caption"), ("contrastive", "weak_caption")]
    for objective in ("contrastive", "captioning"):
        strong, weak = sorted((r for r in trained if r.coords["objective"] == objective),
                              key=lambda r: r.coords["captions"])
        assert strong.config == weak.config  # the same encoder, objective, training and seed
        assert strong.inputs["dataset"] is weak.inputs["dataset"]
        assert strong.inputs["captions"].config["field"] == "caption"
        assert weak.inputs["captions"].config["field"] == "weak_caption"
        assert strong.key != weak.key
    assert {n.coords.get("captions") for n in graph.by_stage()["probe"]} >= {"caption", "weak_caption"}


def test_run_labels_show_both_arms_side_by_side(data_quality):
    from harness.collect import _run_label
    from results.table import arm_label

    labels = {arm_label(_run_label(r.coords)) for r in runs(expand(data_quality))}
    assert labels == {"mini/contrastive [caption]", "mini/contrastive [weak_caption]",
                      "mini/captioning [caption]", "mini/captioning [weak_caption]", "random"}


def test_captions_equal_to_the_studys_change_only_coordinates(quickstart):
    """Naming the study's own caption field on an objective keeps every key: same nodes."""
    explicit = copy.deepcopy(quickstart)
    for obj in explicit["pretrain"]["objectives"]:
        if obj["name"] in ("captioning", "contrastive"):
            obj["captions"] = {"backend": "manifest", "field": "caption"}
    assert [n.id for n in expand(explicit)] == [n.id for n in expand(quickstart)]


def test_new_objective_keys_leave_quickstart_keys_alone(quickstart):
    """The quickstart's entries as they were before objectives had captions/label/init/sources."""
    bare = copy.deepcopy(quickstart)
    bare["pretrain"]["objectives"] = [{"name": o["name"], "options": o["options"]}
                                      for o in quickstart["pretrain"]["objectives"]]
    assert [n.id for n in expand(bare)] == [n.id for n in expand(quickstart)]
    assert all("captions" not in n.coords and "init" not in n.coords for n in expand(quickstart))


def test_tags_objectives_parse_their_own_captions(tmp_path):
    study = load_study(write_study(tmp_path, "    - mtc\n    - {name: mtc, label: mtc_weak, captions: weak_caption}"))
    graph = expand(study.config)
    assert len(graph.by_stage()["tags"]) == 2 and len(graph.by_stage()["tagsystem"]) == 2
    by_arm = {r.coords.get("arm", r.coords["objective"]): r for r in runs(graph)}
    weak = by_arm["mtc_weak"]
    assert weak.inputs["tags"].inputs["captions"].config["field"] == "weak_caption"
    assert by_arm["mtc"].inputs["tags"].inputs["captions"].config["field"] == "caption"
    assert weak.coords["captions"] == "weak_caption"


def test_template_and_openai_captions_get_readable_labels(tmp_path):
    study = load_study(write_study(tmp_path, "    - {name: contrastive, captions: {backend: template, field: labels}}"))
    (run,) = [r for r in runs(expand(study.config)) if r.coords["objective"] == "contrastive"]
    assert run.coords["captions"] == "template:labels"
    assert run.inputs["captions"].config == {"backend": "template", "field": "labels", "seed": 0}


@pytest.mark.parametrize("objectives, message", [
    ("    - {name: mtc, captions: weak_caption}\n  baselines: []",
     None),  # mtc with the rules parser parses the weak captions: fine
    ("    - {name: contrastive, captions: {backend: manifest, seed: 3}}",
     r"pretrain\.objectives\[0\]\.captions\.seed: not used by the .manifest. backend"),
    ("    - {name: contrastive, init: nothing}", "no objective called 'nothing'"),
    ("    - {name: contrastive, init: contrastive}", "cannot start from itself"),
    ("    - {name: mtc, init: contrastive}\n    - {name: contrastive, init: mtc}", "cycle"),
    ("    - mtc\n    - mtc\n    - {name: contrastive, init: mtc}", "2 objectives are called 'mtc'"),
    ("    - {name: contrastive, init: {from: mtc, checkpoint: /nonexistent.pt}}", "file not found"),
    ("    - {name: mtc, sources: [nope]}", "no data source named 'nope'"),
    ("    - {name: mtc, label: par}", "the name of another objective"),
])
def test_objective_entry_errors(tmp_path, objectives, message):
    path = write_study(tmp_path, objectives)
    if message is None:
        load_study(path)
        return
    with pytest.raises(StudyError, match=message):
        load_study(path)


def test_captions_on_an_objective_that_reads_no_captions_is_an_error(tmp_path):
    path = write_study(tmp_path, "    - {name: mtc, captions: weak_caption}", "tagging: {sizes: [32], parser: manifest}")
    path.write_text(path.read_text().replace("tagging: {sizes: [32]}\n", ""))
    with pytest.raises(StudyError, match="trains on tags, not on captions"):
        load_study(path)


def test_init_from_another_objective_makes_its_run_an_input(tmp_path):
    study = load_study(write_study(
        tmp_path, "    - {name: mtc, label: sup}\n    - {name: contrastive, init: sup}\n    - contrastive",
        "  seeds: [0, 1]"))
    graph = expand(study.config)
    ordered = list(graph)
    fine = [r for r in runs(graph) if r.coords.get("init")]
    plain = [r for r in runs(graph) if r.coords["objective"] == "contrastive" and not r.coords.get("init")]
    assert len(fine) == 2 and len(plain) == 2
    for run in fine:
        start = run.inputs["init"]
        assert start.coords["arm"] == "sup" and start.coords["seed"] == run.coords["seed"]
        assert run.coords["init"] == "sup K=32"
        assert ordered.index(start) < ordered.index(run)
    twin = {r.coords["seed"]: r for r in plain}
    for run in fine:  # the same config as the arm from random initialisation; the init input differs
        assert run.config == twin[run.coords["seed"]].config and run.key != twin[run.coords["seed"]].key


def test_init_from_a_checkpoint_keys_on_its_content(tmp_path):
    ckpt = tmp_path / "encoder.pt"
    ckpt.write_bytes(b"weights-1")
    path = write_study(tmp_path, f"    - {{name: contrastive, init: {{checkpoint: {ckpt}}}}}")
    (run,) = [r for r in runs(expand(load_study(path).config)) if r.coords["objective"] == "contrastive"]
    assert run.config["init"]["checkpoint"] == str(ckpt) and run.coords["init"] == "checkpoint"
    ckpt.write_bytes(b"weights-2")
    (again,) = [r for r in runs(expand(load_study(path).config)) if r.coords["objective"] == "contrastive"]
    assert again.key != run.key


def test_tag_guided_openai_captions_in_a_study(tmp_path):
    """BLAT: the openai captioner with the field whose labels go in the prompt."""
    path = write_study(tmp_path, "    - {name: contrastive, captions: {backend: openai, model: omni, "
                                 "base_url: 'http://127.0.0.1:9/v1', field: labels}}\n    - contrastive")
    graph = expand(load_study(path).config)
    guided = [r for r in runs(graph) if r.coords.get("captions")]
    assert [r.coords["captions"] for r in guided] == ["openai:omni+labels"]
    assert guided[0].inputs["captions"].config == {"backend": "openai", "model": "omni", "field": "labels",
                                                   "audio_format": "input_audio", "sample_rate": 16000}
    assert "base_url" in guided[0].inputs["captions"].runtime  # the server's address is not in the key


# ---------------------------------------------------------------- the pretrain stage starts from the init run


def _pretrain_ctx(tmp_path: Path, name: str, config: dict, inputs: dict | None = None):
    from harness.job import StageContext

    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return StageContext(stage="pretrain", key=name, config=config, runtime={}, inputs=inputs or {},
                        workdir=workdir, cache_dir=tmp_path / "home")


def _run_config(objective: str, seed: int, **extra) -> dict:
    from harness import components

    return {"encoder": {"name": "transformer", "size": "tiny"}, "objective": {"name": objective}, "seed": seed,
            "features": components.FEATURES, "train": {}, **extra}


def test_a_fine_tuned_run_starts_from_its_init_runs_weights(tmp_path, monkeypatch):
    import torch

    from encoders import build_encoder
    from harness.job import InputRef
    from harness.stages import pretrain

    # The init run: an encoder saved by the stage (the random baseline: no data needed).
    init_ctx = _pretrain_ctx(tmp_path, "init", _run_config("random", seed=7))
    pretrain.run(init_ctx)
    init_weights = torch.load(init_ctx.workdir / pretrain.CHECKPOINT, weights_only=True)["state_dict"]

    seen = {}

    def fake_train(ctx, encoder):  # what the trainer gets: the weights before its first step
        seen[ctx.key] = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        return {"steps": 0}

    monkeypatch.setattr(pretrain, "_train", fake_train)
    ref = InputRef("pretrain", "init", init_ctx.workdir)
    pretrain.run(_pretrain_ctx(tmp_path, "fine", _run_config("contrastive", seed=0), {"init": ref}))
    pretrain.run(_pretrain_ctx(tmp_path, "scratch", _run_config("contrastive", seed=0)))
    pretrain.run(_pretrain_ctx(tmp_path, "file", _run_config(
        "contrastive", seed=0, init={"checkpoint": str(init_ctx.workdir / pretrain.CHECKPOINT), "sha256": "x"})))

    assert set(seen["fine"]) == set(init_weights)
    for key, tensor in init_weights.items():
        assert torch.equal(seen["fine"][key], tensor), key
        assert torch.equal(seen["file"][key], tensor), key
    torch.manual_seed(0)
    fresh = build_encoder("transformer", size="tiny").state_dict()
    differs = [k for k in init_weights if not torch.equal(init_weights[k], seen["scratch"][k])]
    assert differs  # without init the run starts from its own seed's random weights
    assert all(torch.equal(seen["scratch"][k], fresh[k]) for k in fresh)


def test_an_init_checkpoint_of_another_architecture_is_refused(tmp_path):
    from harness.job import InputRef
    from harness.stages import pretrain

    init_ctx = _pretrain_ctx(tmp_path, "init", _run_config("random", seed=1))
    pretrain.run(init_ctx)
    cfg = _run_config("contrastive", seed=0)
    cfg["encoder"] = {"name": "transformer", "size": "small"}
    with pytest.raises(ValueError, match="cannot start from it"):
        pretrain.run(_pretrain_ctx(tmp_path, "fine", cfg, {"init": InputRef("pretrain", "init", init_ctx.workdir)}))


# ---------------------------------------------------------------- end to end: init from another arm


def _tones(folder: Path, n: int = 24) -> tuple[Path, Path]:
    from test_study_sources import corpus

    return corpus(folder, n)


@pytest.mark.slow
def test_init_study_runs_and_reports_the_fine_tuned_arm(tmp_path, harness_env):
    import json
    import subprocess
    import sys

    import pandas as pd

    source, task = _tones(tmp_path / "data")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tones.yaml").write_text("domain: music\nkind: multiclass\nmetric: accuracy\nadapter: generic\n"
                                      f"args: {{manifest: {task}}}\n")
    study = tmp_path / "init.yaml"
    study.write_text(f"""
name: init-study
data:
  sources: [{{name: tones, kind: generic, args: {{path: {source}}}}}]
tagging: {{parser: manifest, sizes: [2]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives:
    - {{name: supervised, label: sup}}
    - {{name: mtc, init: sup}}
    - mtc
  steps: 3
  batch_size: 4
  specaugment: false
probes: {{tasks: [tones], epochs: 3, lrs: [0.01], weight_decays: [0.0]}}
compute: {{executor: debug}}
""")
    env = {**harness_env, "HARNESS_TASK_PATH": str(tasks)}
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "harness", "run", str(study), "--out", str(out), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "encoder initialised from" in run.stdout + run.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["run"]) == {"tones/sup s0", "tones/mtc K=2 init=sup s0", "tones/mtc K=2 s0"}
    records = [json.loads(p.read_text()) for p in (out / "store" / "pretrain").glob("*/_done.json")]
    assert len(records) == 3
