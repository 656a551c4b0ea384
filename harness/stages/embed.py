"""Frozen-encoder embeddings of a task's clips, in a cache shared by every study.

The cache key is the checkpoint's content digest, the feature settings, the task
manifest's digest and the layer: two studies (or two graph nodes) that would compute the
same embeddings find them in ``$HARNESS_HOME/embeddings/<key>/``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.job import StageContext
from harness.store import atomic_write_json, digest, file_digest

VERSION = "2"


def run(ctx: StageContext) -> dict:
    from harness.stages.dataset import task_manifest

    task = ctx.config["task"]
    manifest = task_manifest(ctx.inputs["data"].path, task["args"]["task"])
    pretrain = ctx.inputs["pretrain"]
    ckpt = pretrain.path / pretrain.record["outputs"]["checkpoint"]
    key = digest({"checkpoint": pretrain.record["outputs"]["digest"], "features": ctx.config["features"],
                  "manifest": file_digest(manifest), "layer": ctx.config["layer"], "version": VERSION})
    target = ctx.cache_dir / "embeddings" / key
    reused = (target / "_done.json").is_file()
    if not reused:
        _extract(ctx, ckpt, manifest, target)
    meta = json.loads((target / "meta.json").read_text())
    atomic_write_json(ctx.workdir / "embeddings.json", {"cache_key": key, "path": str(target)})
    ctx.log(f"{'reused' if reused else 'extracted'} {meta['num_clips']} embeddings ({key})")
    return {"cache_key": key, "num_clips": meta["num_clips"], "dim": meta["dim"], "reused": reused}


def _extract(ctx: StageContext, ckpt: Path, manifest: Path, target: Path) -> None:
    from encoders.checkpoint import load_encoder
    from harness.stages.audio import load_features
    from harness.stages.manifests import iter_cut_dicts
    from probes.embed import extract_embeddings, save_shards

    ids, feats = load_features(manifest, ctx.config["features"], ctx.cache_dir, progress=ctx.progress, log=ctx.log)
    custom = {c["id"]: c.get("custom") or {} for c in iter_cut_dicts(manifest)}
    encoder, _ = load_encoder(ckpt)
    embeddings = extract_embeddings(encoder, feats, layer=ctx.config["layer"], progress=ctx.progress)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_shards(tmp, embeddings)
    rows = [{"id": i, "label": custom[i].get("label"), "labels": custom[i].get("labels"), "split": custom[i].get("split")}
            for i in ids]
    atomic_write_json(tmp / "clips.json", rows)
    atomic_write_json(tmp / "meta.json", {"num_clips": len(ids), "dim": int(embeddings[0].shape[-1]),
                                          "checkpoint": str(ckpt), "manifest": str(manifest)})
    atomic_write_json(tmp / "_done.json", {"ok": True})
    try:
        os.rename(tmp, target)
    except OSError:  # another job published the same embeddings first: identical by construction
        shutil.rmtree(tmp, ignore_errors=True)
