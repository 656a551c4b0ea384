"""Encoders trained elsewhere as arms (issue 17): the adapters (hf, hear, checkpoint) on tiny
random models, plan-time checks (one line, exit 2), and keys (a rerun re-keys nothing; an
edited weight file re-keys that arm only; the random baseline's keys are unchanged)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import StudyError
from harness.graph import expand
from harness.registry import registry
from harness.study import load_study
from external_models import (save_ast, save_clap, save_hear_weights, save_wav2vec2, save_whisper,
                             write_hear_module)

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
name: ext
data:
  sources: [{{name: mini, kind: minisuite}}]
tagging: {{sizes: [8]}}
pretrain:
  encoder: transformer
  objectives: [mtc]
  baselines:
{baselines}
probes:
  tasks: [mini/env_event, mini/music_pitch]
"""


def write_study(folder: Path, *baselines: str, name: str = "study.yaml") -> Path:
    lines = "\n".join(f"    - {b}" for b in baselines) or "    []"
    path = folder / name
    path.write_text(textwrap.dedent(STUDY.format(baselines=lines)))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudyError) as info:
        load_study(path)
    return info.value.problems


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny models, built once: wav2vec 2.0, Whisper, a HEAR module and its weights."""
    root = tmp_path_factory.mktemp("models")
    layer_norm = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
    return {"wav2vec2": save_wav2vec2(root / "wav2vec2-tiny"), "whisper": save_whisper(root / "whisper-tiny"),
            "hubert": save_wav2vec2(root / "hubert-tiny", kind="hubert", **layer_norm),
            "wavlm": save_wav2vec2(root / "wavlm-tiny", kind="wavlm", **layer_norm),
            "hear": write_hear_module(root / "hear"), "hear_weights": save_hear_weights(root / "hear.pt")}


@pytest.fixture
def waves():
    import torch

    torch.manual_seed(0)
    lengths = torch.tensor([16000, 7000, 40000])
    batch = torch.zeros(3, 40000)
    for i, n in enumerate(lengths.tolist()):
        batch[i, :n] = torch.randn(n) * 0.1
    return batch, lengths


# --------------------------------------------------------------------------- the registry


def test_adapters_are_registered_from_their_files():
    adapters = registry("external")
    assert {"hf", "hear", "checkpoint"} <= set(adapters.names())
    assert adapters.get("hf").meta["input"] == "waveform" and adapters.get("checkpoint").meta["input"] == "fbank"
    assert adapters.get("hear").options["module"].required


# --------------------------------------------------------------------------- hf


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "whisper"])
def test_hf_adapter_gives_frames_of_each_clip(kind, models, waves, one_torch_thread):
    import torch

    from encoders.external import load_external

    encoder = load_external("hf", {"path": str(models[kind])})
    assert encoder.sample_rate == 16000 and encoder.dim == 32 and encoder.num_layers == 2
    batch, lengths = waves
    with torch.no_grad():
        frames, n = encoder(batch, lengths, layer=-1)
        first, _ = encoder(batch, lengths, layer=0)
        alone, n_alone = encoder(batch[1:2, :7000], lengths[1:2], layer=-1)
    assert frames.shape[0] == 3 and frames.shape[2] == 32
    # 50 frames per second (a 320-sample stride): 1 s, 0.44 s, 2.5 s (Whisper: two 2-s windows for the last)
    assert n.tolist() == ([50, 22, 125] if kind == "whisper" else [50, 21, 125])
    assert not torch.allclose(frames[0, :10], first[0, :10])  # layer 0 is the embedding
    # a clip's frames do not depend on the other clips of its batch (wav2vec 2.0 base's
    # group-normalised front end sees no padding: it gets clips of one length at a time)
    assert encoder.masked == (kind in ("hubert", "wavlm"))
    assert n_alone.tolist() == [n[1].item()]
    torch.testing.assert_close(alone[0, : n[1]], frames[1, : n[1]], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="layer"):
        encoder(batch, lengths, layer=5)


def test_hf_adapter_reads_ast_and_clap(tmp_path, waves, one_torch_thread):
    import torch

    from encoders.external import load_external

    batch, lengths = waves
    for folder in (save_ast(tmp_path / "ast-tiny"), save_clap(tmp_path / "clap-tiny")):
        encoder = load_external("hf", {"path": str(folder)})
        with torch.no_grad():
            frames, n = encoder(batch, lengths, layer=-1)
            inner, m = encoder(batch, lengths, layer=1)
        assert frames.shape[0] == 3 and frames.shape[2] == 32 and (n > 0).all() and (m > 0).all()
        assert n[2] > n[0]  # the 2.5-s clip fills two windows


def test_hf_folder_is_checked_at_plan(tmp_path, models):
    assert load_study(write_study(tmp_path, "random", f"{{name: hf, path: {models['wav2vec2']}}}"))
    lines = problems(write_study(tmp_path, f"{{name: hf, path: {tmp_path / 'nope'}}}"))
    assert len(lines) == 1 and "pretrain.baselines[0].path: folder not found" in lines[0]
    lines = problems(write_study(tmp_path, f"{{name: hf, path: {models['whisper']}, layer: 3}}"))
    assert len(lines) == 1 and "pretrain.baselines[0].layer: layer 3 is out of range" in lines[0]
    assert "0..2" in lines[0]
    lines = problems(write_study(tmp_path, f"{{name: hf, path: {models['hear']}}}"))  # a folder, not a model
    assert len(lines) == 1 and "has no config.json" in lines[0]
    lines = problems(write_study(tmp_path, f"{{name: hf, path: {models['wav2vec2']}, layr: 1}}"))
    assert len(lines) == 1 and "did you mean 'layer'" in lines[0]
    lines = problems(write_study(tmp_path, "randon"))
    assert len(lines) == 1 and "did you mean 'random'" in lines[0]
    lines = problems(write_study(tmp_path, "{name: hff, path: /x}"))
    assert len(lines) == 1 and "did you mean 'hf'" in lines[0]


def test_the_study_layer_applies_when_the_arm_names_none(tmp_path, models):
    text = write_study(tmp_path, f"{{name: hf, path: {models['wav2vec2']}}}").read_text()
    path = tmp_path / "layer.yaml"
    path.write_text(text.replace("probes:\n", "probes:\n  layer: 7\n"))
    lines = problems(path)
    assert len(lines) == 1 and "layer 7 is out of range" in lines[0]


# --------------------------------------------------------------------------- hear


def test_hear_adapter_timestamp_and_scene(models, waves, one_torch_thread):
    import torch

    from encoders.external import load_external

    batch, lengths = waves
    options = {"module": "hear_api", "pythonpath": str(models["hear"]), "weights": str(models["hear_weights"])}
    timestamp = load_external("hear", options)
    scene = load_external("hear", {**options, "embedding": "scene"})
    assert timestamp.sample_rate == 16000 and timestamp.dim == 16
    with torch.no_grad():
        frames, n = timestamp(batch, lengths)
        pooled, ones = scene(batch, lengths)
    assert n.tolist() == [1 + (16000 - 400) // 160, 1 + (7000 - 400) // 160, 1 + (40000 - 400) // 160]
    assert ones.tolist() == [1, 1, 1] and pooled.shape == (3, 1, 16)
    # grouped by length, the model never sees padding: the scene embedding is the timestamps' mean here
    torch.testing.assert_close(pooled[1, 0], frames[1, : n[1]].mean(0), atol=1e-5, rtol=1e-5)


def test_hear_module_is_checked_at_plan(tmp_path, models):
    ok = f"{{name: hear, module: hear_api, pythonpath: {models['hear']}}}"
    cfg = load_study(write_study(tmp_path, ok)).config
    assert cfg["pretrain"]["baselines"][0]["label"] == "hear_api"
    lines = problems(write_study(tmp_path, "{name: hear, module: no_such_hear_module}"))
    assert len(lines) == 1 and "no module named 'no_such_hear_module'" in lines[0]
    write_hear_module(tmp_path / "broken", api=False)
    lines = problems(write_study(tmp_path, f"{{name: hear, module: hear_api, pythonpath: {tmp_path / 'broken'}}}"))
    assert len(lines) == 1 and "does not define get_timestamp_embeddings" in lines[0]
    lines = problems(write_study(tmp_path, f"{{name: hear, module: hear_api, pythonpath: {models['hear']}, "
                                           f"weights: {tmp_path / 'missing.pt'}}}"))
    assert len(lines) == 1 and "baselines[0].weights: file not found" in lines[0]


def test_a_bad_baseline_exits_2_at_plan_with_one_line(tmp_path):
    path = write_study(tmp_path, f"{{name: hf, path: {tmp_path / 'nope'}}}")
    proc = subprocess.run([sys.executable, "-m", "harness", "plan", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "folder not found" in proc.stderr


def test_planning_external_arms_imports_no_torch(tmp_path, models):
    path = write_study(tmp_path, "random", f"{{name: hf, path: {models['wav2vec2']}}}",
                       f"{{name: hear, module: hear_api, pythonpath: {models['hear']}}}")
    code = ("import sys, io, contextlib\nfrom harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    code = main(['plan', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
            "assert code == 0, code\nassert 'external: 2 jobs' in out.getvalue(), out.getvalue()\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'lhotse', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**__import__("os").environ, "HARNESS_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- keys


def _graph(path: Path):
    return expand(load_study(path).config)


def test_external_arms_in_the_graph(tmp_path, models):
    path = write_study(tmp_path, "random", f"{{name: hf, path: {models['wav2vec2']}, layer: 1}}",
                       f"{{name: hear, module: hear_api, pythonpath: {models['hear']}, label: tiny-hear}}")
    graph = _graph(path)
    external = graph.by_stage()["external"]
    assert sorted(n.coords["objective"] for n in external) == ["tiny-hear", "wav2vec2-tiny"]
    hf = next(n for n in external if n.coords["external"] == "hf")
    assert hf.config["layer"] == 1 and hf.coords["encoder"] == "wav2vec2" and hf.coords["seed"] == 0
    assert "layer" not in next(n for n in external if n.coords["external"] == "hear").config
    embeds = [n for n in graph if n.stage == "embed" and n.inputs["pretrain"].stage == "external"]
    probes = [n for n in graph if n.stage == "probe" and n.inputs["embed"] in embeds]
    assert len(embeds) == 2 * 2 and len(probes) == 2 * 2  # arms x tasks


def test_external_arms_leave_every_other_key_alone(tmp_path, models):
    """The random baseline (and every other node) keeps its key when external arms join."""
    plain = {n.id for n in _graph(write_study(tmp_path, "random", name="a.yaml"))}
    joined = {n.id for n in _graph(write_study(tmp_path, "random", f"{{name: hf, path: {models['wav2vec2']}}}",
                                               name="b.yaml"))}
    assert plain < joined
    assert {i.split("/")[0] for i in joined - plain} == {"external", "embed", "probe"}


def test_a_rerun_rekeys_nothing_and_an_edited_weight_file_rekeys_only_its_arm(tmp_path):
    hf = save_wav2vec2(tmp_path / "w2v")
    hear = write_hear_module(tmp_path / "hear")
    weights = save_hear_weights(tmp_path / "hear.pt")
    path = write_study(tmp_path, "random", f"{{name: hf, path: {hf}}}",
                       f"{{name: hear, module: hear_api, pythonpath: {hear}, weights: {weights}}}")
    first = {n.id: n for n in _graph(path)}
    assert set(first) == {n.id for n in _graph(path)}  # planned again: the same keys
    save_hear_weights(weights, seed=2)  # new weights in the same file
    second = {n.id: n for n in _graph(path)}
    gone = [first[i] for i in set(first) - set(second)]
    assert gone and all(n.coords.get("objective") == "hear_api" for n in gone)
    assert {n.stage for n in gone} == {"external", "embed", "probe"}
    assert len(set(second) - set(first)) == len(gone)
    (hear / "hear_api.py").write_text((hear / "hear_api.py").read_text() + "\n# edited\n")  # its source, too
    third = {n.id for n in _graph(path)}
    assert {first[i].coords.get("objective") for i in set(first) - third} == {"hear_api"}
    assert {n.stage for n in first.values() if n.id not in third} == {"external", "embed", "probe"}


def test_moving_a_model_folder_keeps_its_embedding_key(tmp_path):
    from harness.stages.external import identity, plan_external

    a = save_wav2vec2(tmp_path / "a" / "w2v")
    b = tmp_path / "b" / "w2v"
    b.parent.mkdir()
    a.rename(b)
    cfg_b, version, _ = plan_external({"name": "hf", "path": str(b), "label": "w2v"}, -1)
    save_wav2vec2(a)  # the same weights again, at the old place
    cfg_a, _, _ = plan_external({"name": "hf", "path": str(a), "label": "w2v"}, -1)
    assert cfg_a != cfg_b  # the node knows where to load from ...
    assert identity(cfg_a, version) == identity(cfg_b, version)  # ... the embeddings are keyed by content


# --------------------------------------------------------------------------- checkpoint


@pytest.fixture
def transformer_state(one_torch_thread):
    import torch

    from encoders import build_encoder

    torch.manual_seed(3)
    encoder = build_encoder("transformer", size="tiny")
    return encoder, {k: v.clone() for k, v in encoder.state_dict().items()}


@pytest.mark.parametrize("layout", ["plain", "harness", "auden-tagger", "ddp-trainer", "safetensors-folder"])
def test_checkpoint_adapter_reads_released_layouts(layout, tmp_path, transformer_state):
    import torch

    from encoders.checkpoint import save_encoder
    from encoders.external.checkpoint import build

    encoder, state = transformer_state
    path = tmp_path / "weights.pt"
    if layout == "plain":
        torch.save(state, path)
    elif layout == "harness":
        save_encoder(path, encoder, "transformer", {"size": "tiny"})
    elif layout == "auden-tagger":  # the encoder under encoder., a classifier, the schedule clock
        torch.save({**{f"encoder.{k}": v for k, v in state.items()}, "encoder.model_batch_count": torch.tensor(5.0),
                    "classifier.0.weight": torch.zeros(3, 128)}, path)
    elif layout == "ddp-trainer":  # an Auden trainer checkpoint, saved from DDP
        torch.save({"model": {f"module.audio_encoder.{k}": v * 0 for k, v in state.items()},
                    "model_avg": {f"module.audio_encoder.{k}": v for k, v in state.items()},
                    "optimizer": {}, "batch_idx_train": 10}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "export"
        path.mkdir()
        (path / "config.json").write_text("{}")
        save_file({f"encoder.{k}": v.contiguous() for k, v in state.items()}, str(path / "pretrained.safetensors"))
    loaded, name, config, info = build({"encoder": "transformer", "size": "tiny", "path": str(path)})
    assert name == "transformer" and config == {"size": "tiny"}
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_checkpoint_mismatch_is_one_line(tmp_path, transformer_state):
    import torch

    from encoders.external.checkpoint import build

    _, state = transformer_state
    keys = sorted(state)
    broken = {k: v for k, v in state.items() if k != keys[0]}
    broken["extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "w.pt")
    with pytest.raises(ValueError) as info:
        build({"encoder": "transformer", "size": "tiny", "path": str(tmp_path / "w.pt")})
    message = str(info.value)
    assert "\n" not in message and f"1 missing: {keys[0]}" in message and "1 unexpected: extra.weight" in message
    with pytest.raises(ValueError, match="of another shape"):
        build({"encoder": "transformer", "size": "small", "path": str(tmp_path / "w.pt")})


def test_checkpoint_arm_is_checked_at_plan(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"x")
    entry = "{{name: checkpoint, encoder: {encoder}, size: {size}, path: {path}}}"
    assert load_study(write_study(tmp_path, entry.format(encoder="zipformer", size="m", path=tmp_path / "w.pt")))
    lines = problems(write_study(tmp_path, entry.format(encoder="zipformer", size="xl", path=tmp_path / "w.pt")))
    assert len(lines) == 1 and "baselines[0].size: expected one of" in lines[0]
    lines = problems(write_study(tmp_path, entry.format(encoder="zipformr", size="m", path=tmp_path / "w.pt")))
    assert len(lines) == 1 and "did you mean 'zipformer'" in lines[0]
    lines = problems(write_study(tmp_path, f"{{name: checkpoint, encoder: zipformer, size: m, path: {tmp_path}}}"))
    assert len(lines) == 1 and "a folder without weights" in lines[0]
    lines = problems(write_study(tmp_path, "{name: checkpoint, encoder: zipformer, size: m}"))
    assert len(lines) == 1 and "baselines[0].path: missing" in lines[0]


def test_auden_zipformer_m_layout_fits_the_zipformer_m_preset(tmp_path, one_torch_thread):
    """The authors' Zipformer-M (AudenAI/Auden ``ZipformerEncoderModel``) holds exactly the
    preset's tensors plus its ``model_batch_count`` clock; a tagger keeps it under ``encoder.``."""
    import torch

    from encoders import build_encoder
    from encoders.external.checkpoint import map_keys
    from encoders.zipformer import zipformer_package

    try:
        zipformer_package()
    except RuntimeError as exc:
        pytest.skip(str(exc))

    expected = set(build_encoder("zipformer", size="m").state_dict())
    released = {f"encoder.{k}": torch.zeros(1) for k in expected}
    released.update({"encoder.model_batch_count": torch.tensor(1.0), "classifier.0.weight": torch.zeros(1)})
    mapped, steps = map_keys(released, expected)
    assert set(mapped) == expected and steps == ["took the encoder under 'encoder.'", "dropped model_batch_count"]


def test_the_shipped_external_study_plans_with_tiny_models(models, monkeypatch):
    """studies/external.yaml names its model folders through EXTERNAL_HF and EXTERNAL_HEAR
    (or HARNESS_DATA); without them it is one line per arm."""
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    monkeypatch.delenv("EXTERNAL_HF", raising=False)
    monkeypatch.delenv("EXTERNAL_HEAR", raising=False)
    lines = problems(ROOT / "studies" / "external.yaml")
    assert len(lines) == 2 and all("not set" in line for line in lines)
    monkeypatch.setenv("EXTERNAL_HF", str(models["wav2vec2"]))
    monkeypatch.setenv("EXTERNAL_HEAR", str(models["hear"]))
    graph = _graph(ROOT / "studies" / "external.yaml")
    arms = {n.coords["objective"] for n in graph if n.stage in ("pretrain", "external")}
    assert arms == {"mtc", "contrastive", "random", "wav2vec2-tiny", "hear_api"}
    assert len([n for n in graph if n.stage == "probe"]) == 5 * 6  # arms x tasks


# --------------------------------------------------------------------------- the stages


def _context(tmp_path: Path, stage: str, config: dict, inputs: dict | None = None):
    from harness.job import StageContext

    work = tmp_path / stage
    work.mkdir(parents=True, exist_ok=True)
    return StageContext(stage=stage, key="k", config=config, runtime={}, inputs=inputs or {}, workdir=work,
                        cache_dir=tmp_path / "cache", coords={"objective": "arm"})


def test_external_stage_converts_released_weights_to_a_harness_checkpoint(tmp_path, transformer_state):
    import torch

    from encoders.checkpoint import checkpoint_digest, save_encoder
    from harness.stages import external

    encoder, state = transformer_state
    torch.save({f"module.encoder.{k}": v for k, v in state.items()}, tmp_path / "w.pt")
    config = {"adapter": "checkpoint", "content": "x", "layer": -1,
              "options": {"encoder": "transformer", "size": "tiny", "path": str(tmp_path / "w.pt")}}
    out = external.run(_context(tmp_path, "external", config))
    assert out["checkpoint"] == "encoder.pt" and out["input"] == "fbank"
    # the digest of the weights, not of the file: the same weights trained here share its embeddings
    save_encoder(tmp_path / "same.pt", encoder, "transformer", {"size": "tiny"})
    assert out["digest"] == checkpoint_digest(tmp_path / "same.pt")
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        external.run(_context(tmp_path / "again", "external", {**config, "layer": 9}))


def test_embed_stage_reads_waveforms_at_the_models_rate(tmp_path, models, one_torch_thread):
    import json

    import numpy as np
    import soundfile
    from lhotse import CutSet, Recording

    from harness.job import InputRef
    from harness.stages import embed, external

    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    cuts = []
    for i, (rate, seconds) in enumerate([(8000, 1.0), (16000, 0.5), (22050, 0.7)]):
        path = audio / f"c{i}.wav"
        soundfile.write(path, (rng.standard_normal(int(rate * seconds)) * 0.1).astype("float32"), rate)
        cut = Recording.from_file(path).to_cut()
        cuts.append(cut.with_custom("split", "test").with_custom("label", str(i)))
    (audio / "c1.wav").write_bytes(b"not audio any more")  # unreadable: skipped, listed, never fatal
    manifest = tmp_path / "cuts.jsonl"
    CutSet.from_cuts(cuts).to_file(manifest)

    config = {"adapter": "hf", "content": "x", "layer": 1, "options": {"path": str(models["wav2vec2"])}}
    ext_ctx = _context(tmp_path, "external", config)
    out = external.run(ext_ctx)
    (ext_ctx.workdir / "_done.json").write_text(json.dumps({"config": config, "outputs": out}))
    ctx = _context(tmp_path, "embed", {"layer": -1, "features": {"kind": "kaldi-fbank"}},
                   {"pretrain": InputRef("external", "k", ext_ctx.workdir)})
    target = tmp_path / "cache" / "embeddings" / "x"
    embed._extract_waveform(ctx, ctx.inputs["pretrain"], manifest, target, out["layer"])
    meta = json.loads((target / "meta.json").read_text())
    clips = json.loads((target / "clips.json").read_text())
    assert meta["num_clips"] == 2 and meta["dim"] == 32 and [c["id"] for c in clips] == ["c0", "c2"]
    assert [s["id"] for s in meta["skipped"]] == ["c1"]
    from probes.embed import load_shards

    frames = load_shards(target)
    assert [f.shape[0] for f in frames] == [50, 35]  # 1 s and 0.7 s, resampled to 16 kHz: 50 frames per second
