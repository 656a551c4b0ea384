"""Frozen-encoder embeddings of a task's clips, in a cache shared by every study.

The cache key is the checkpoint's content digest, the feature settings, the task
manifest's digest and the layer: two studies (or two graph nodes) that would compute the
same embeddings find them in ``$HARNESS_HOME/embeddings/<key>/``.

Its input is a pre-training run, or an encoder trained elsewhere (the ``external`` stage,
docs/encoders.md). Released weights of a harness encoder arrive as an ``encoder.pt`` and
are embedded as a run is. A model that reads audio (a Hugging Face folder, a HEAR module)
is built through its adapter, gets each clip's waveform at its own sample rate instead of
the fbank, reads the layer its arm names, and is keyed by its content digest, its input
kind and that layer. The fbank path, and the keys of pre-training runs, are unchanged.

A clip whose audio cannot be decoded (corrupt, truncated, removed since the dataset was
built) or is shorter than one feature frame is skipped: it is left out of the embeddings
and of ``clips.json`` (so the probe stage never sees it and indices stay aligned),
counted and listed (id, path, error) in the job's record, in ``skipped.json`` next to the
embeddings, and in the log. It never stops the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.job import StageContext
from harness.store import atomic_write_json, digest, file_digest, publish_dir
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="2",
    doc="frozen-encoder frames of a task's clips (content-addressed float16 cache)",
    meta={"order": 60},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)
SKIPPED_IN_RECORD = 100  # skipped clips listed in the job record; skipped.json lists them all


def run(ctx: StageContext) -> dict:
    from harness.stages.dataset import task_manifest_for

    task = ctx.config["task"]
    manifest = task_manifest_for(ctx.inputs["data"].path, task)
    if task["kind"] == "retrieval":  # scored on the test split alone: embed only its clips
        manifest = split_manifest(manifest, task["splits"]["test"], ctx.cache_dir)
    pretrain = ctx.inputs["pretrain"]
    outputs = pretrain.record["outputs"]
    # An encoder trained elsewhere (harness/stages/external.py) reads its own layer; one that
    # reads waveforms is keyed by its input instead of the fbank settings it never sees.
    external = pretrain.stage == "external"
    layer = outputs["layer"] if external else ctx.config["layer"]
    waveform = "checkpoint" not in outputs
    features = {"kind": outputs["input"], "adapter": outputs["adapter"]} if waveform else ctx.config["features"]
    key = digest({"checkpoint": outputs["digest"], "features": features,
                  "manifest": file_digest(manifest), "layer": layer, "version": COMPONENT.version})
    target = ctx.cache_dir / "embeddings" / key
    reused = (target / "_done.json").is_file()
    if not reused and waveform:
        _extract_waveform(ctx, pretrain, manifest, target, layer)
    elif not reused:
        _extract(ctx, pretrain.path / outputs["checkpoint"], manifest, target, layer)
    meta = json.loads((target / "meta.json").read_text())
    # The run folder too: retrieval and zero-shot read the run's audio-text modules (language.pt).
    atomic_write_json(ctx.workdir / "embeddings.json", {"cache_key": key, "path": str(target),
                                                        "pretrain": str(pretrain.path)})
    ctx.log(f"{'reused' if reused else 'extracted'} {meta['num_clips']} embeddings ({key})")
    skipped = meta.get("skipped", [])
    if skipped:
        atomic_write_json(ctx.workdir / "skipped.json", skipped)
        if reused:  # the extraction that found them logged each one
            ctx.log(f"{len(skipped)} clips skipped (unreadable audio), listed in {ctx.workdir / 'skipped.json'}")
    return {"cache_key": key, "num_clips": meta["num_clips"], "dim": meta["dim"], "reused": reused,
            "skipped": len(skipped), "skipped_clips": skipped[:SKIPPED_IN_RECORD]}


def split_manifest(manifest: Path, split: str, cache_dir: Path) -> Path:
    """The cuts of ``manifest`` whose ``custom.split`` is ``split``, as a manifest in the shared
    cache named by its content (so its embeddings are keyed, and shared, by content too)."""
    import hashlib

    from harness.stages.manifests import iter_cut_dicts

    lines = [json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in iter_cut_dicts(manifest)
             if (c.get("custom") or {}).get("split") == split]
    if not lines:
        raise ValueError(f"{manifest}: no clip in split {split!r}")
    text = "".join(lines)
    path = cache_dir / "manifests" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.jsonl"
    if not path.is_file():
        from harness.store import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def decode_features(manifest: Path, features: dict, progress: bool = False, log=print) -> tuple[list, list, list]:
    """(ids, [frames, mel] float32 tensors, skipped) for every cut of a manifest that decodes.

    ``skipped`` lists ``{"id", "path", "error"}`` for each cut whose audio fails to load
    or gives no feature frame; each is logged. Order follows the manifest.
    """
    from encoders.features import extract

    def frames_of(audio, sampling_rate: int):
        wave = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
        frames = extract(wave, sampling_rate, features)
        if frames.shape[0] == 0:
            raise ValueError(f"{audio.shape[-1]} samples: shorter than one 25 ms feature frame")
        return frames

    return _decode(manifest, frames_of, "features", progress, log)


def decode_waveforms(manifest: Path, sample_rate: int, progress: bool = False, log=print) -> tuple[list, list, list]:
    """(ids, mono float32 waveforms at ``sample_rate``, skipped) for every cut of a manifest
    that decodes: the input of an encoder trained elsewhere that reads audio (a Hugging
    Face model, a HEAR module) at its own rate. Skipped clips as :func:`decode_features`."""
    import torch
    import torchaudio

    def wave_of(audio, sampling_rate: int):
        wave = torch.as_tensor(audio.mean(axis=0) if audio.shape[0] > 1 else audio[0], dtype=torch.float32)
        if sampling_rate != sample_rate:
            wave = torchaudio.functional.resample(wave, sampling_rate, sample_rate)
        if wave.numel() == 0:
            raise ValueError("no samples")
        return wave

    return _decode(manifest, wave_of, "audio", progress, log)


def _decode(manifest: Path, convert, description: str, progress: bool, log) -> tuple[list, list, list]:
    """``convert(audio [channels, samples], sampling_rate)`` of every cut that decodes, with
    the ids and the skipped clips (see :func:`decode_features`)."""
    from lhotse import CutSet

    from harness.sources._build import short_error

    ids, feats, skipped = [], [], []
    cuts = CutSet.from_file(manifest)
    if progress:
        from rich.progress import track

        cuts = track(cuts, description=description)
    for cut in cuts:
        try:
            _check_length(cut)
            audio = cut.load_audio()  # [channels, samples]
            frames = convert(audio, int(cut.sampling_rate))
        except Exception as exc:  # noqa: BLE001 - a bad clip is reported and skipped, never fatal
            paths = [s.source for s in getattr(cut.recording, "sources", []) if s.type == "file"]
            item = {"id": cut.id, "path": paths[0] if paths else None, "error": short_error(exc)}
            skipped.append(item)
            log(f"skipping clip {item['id']} ({item['path']}): {item['error']}")
            continue
        ids.append(cut.id)
        feats.append(frames)
    return ids, feats, skipped


def _check_length(cut) -> None:
    """Raise if a file is shorter than the cut needs (a truncated file: Lhotse may fill the gap silently)."""
    import soundfile

    need = (cut.start + cut.duration) * cut.sampling_rate
    tolerance = 0.025 * cut.sampling_rate  # Lhotse's own duration tolerance
    for source in getattr(cut.recording, "sources", []):
        if source.type != "file":
            continue
        frames = soundfile.info(source.source).frames
        if frames < need - tolerance:
            raise ValueError(f"truncated: the file holds {frames} samples, the manifest declares {round(need)}")


def load_clip_features(manifest: Path, features: dict, cache_dir: Path, progress: bool = False,
                       log=print) -> tuple[list, list, list]:
    """:func:`decode_features`, cached by the manifest's digest and the feature settings."""
    import torch

    key = digest({"manifest": file_digest(manifest), "features": features, "skips": "unreadable"})
    path = cache_dir / "features" / f"{key}.pt"
    if path.is_file():
        blob = torch.load(path, weights_only=True)
        for item in blob["skipped"]:
            log(f"skipping clip {item['id']} ({item['path']}): {item['error']}")
        return blob["ids"], blob["features"], blob["skipped"]
    ids, feats, skipped = decode_features(manifest, features, progress=progress, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"ids": ids, "features": feats, "skipped": skipped}, tmp)
    tmp.replace(path)
    log(f"computed features for {len(ids)} clips ({len(skipped)} skipped) -> {path}")
    return ids, feats, skipped


def _extract(ctx: StageContext, ckpt: Path, manifest: Path, target: Path, layer: int) -> None:
    from encoders.checkpoint import load_encoder
    from probes.embed import extract_embeddings

    ids, feats, skipped = load_clip_features(manifest, ctx.config["features"], ctx.cache_dir,
                                             progress=ctx.progress, log=ctx.log)
    _check_decoded(ctx, manifest, ids, skipped)
    encoder, _ = load_encoder(ckpt)
    embeddings = extract_embeddings(encoder, feats, layer=layer, progress=ctx.progress)
    _publish(manifest, target, ids, embeddings, skipped, str(ckpt))


def _extract_waveform(ctx: StageContext, source, manifest: Path, target: Path, layer: int) -> None:
    """Embeddings of an encoder trained elsewhere that reads audio (a Hugging Face model, a
    HEAR module): clips decoded at the model's own sample rate, then the same cache."""
    from encoders.external import load_external
    from probes.embed import extract_embeddings

    reference = json.loads((source.path / source.record["outputs"]["reference"]).read_text())
    encoder = load_external(reference["adapter"], reference["options"])
    ctx.log(f"{reference['adapter']} encoder: {type(encoder).__name__}, {encoder.sample_rate} Hz audio, layer {layer}")
    ids, waves, skipped = decode_waveforms(manifest, encoder.sample_rate, progress=ctx.progress, log=ctx.log)
    _check_decoded(ctx, manifest, ids, skipped)
    embeddings = extract_embeddings(encoder, waves, layer=layer, batch_size=WAVEFORM_BATCH, progress=ctx.progress)
    _publish(manifest, target, ids, embeddings, skipped, str(source.path / source.record["outputs"]["reference"]))


WAVEFORM_BATCH = 8
"""Clips per forward pass of a waveform model (whole clips of raw audio: fewer than fbank's 32)."""


def _check_decoded(ctx: StageContext, manifest: Path, ids: list, skipped: list) -> None:
    if skipped:
        ctx.log(f"{len(skipped)} of {len(ids) + len(skipped)} clips skipped (unreadable audio)")
    if not ids:
        raise RuntimeError(f"no clip of {manifest} could be decoded ({len(skipped)} skipped); first error: "
                           f"{skipped[0]['error'] if skipped else 'the manifest is empty'}")


def _publish(manifest: Path, target: Path, ids: list, embeddings: list, skipped: list, checkpoint: str) -> None:
    from harness.stages.manifests import iter_cut_dicts
    from probes.embed import save_shards

    custom = {c["id"]: c.get("custom") or {} for c in iter_cut_dicts(manifest)}
    # One row per embedding, in the same order: skipped clips are in neither.
    rows = [{"id": i, "label": custom[i].get("label"), "labels": custom[i].get("labels"), "split": custom[i].get("split"),
             "fold": custom[i].get("fold"), "captions": custom[i].get("captions")}
            for i in ids]
    with publish_dir(target, complete=lambda t: (t / "_done.json").is_file()) as tmp:
        save_shards(tmp, embeddings)
        atomic_write_json(tmp / "clips.json", rows)
        atomic_write_json(tmp / "skipped.json", skipped)
        atomic_write_json(tmp / "meta.json", {"num_clips": len(ids), "dim": int(embeddings[0].shape[-1]),
                                              "checkpoint": checkpoint, "manifest": str(manifest),
                                              "skipped": skipped})
        atomic_write_json(tmp / "_done.json", {"ok": True})
