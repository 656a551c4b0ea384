"""Pre-train an encoder with an objective (or initialise it at random for the baseline)."""

from __future__ import annotations

from harness.job import StageContext

VERSION = "1"

CHECKPOINT = "encoder.pt"


def run(ctx: StageContext) -> dict:
    import torch

    from encoders import build_encoder
    from encoders.checkpoint import checkpoint_digest, save_encoder

    cfg = ctx.config
    enc_cfg = dict(cfg["encoder"])
    name = enc_cfg.pop("name")
    torch.manual_seed(cfg["seed"])
    encoder = build_encoder(name, **enc_cfg)
    summary: dict = {}
    if cfg["objective"]["name"] != "random":
        summary = _train(ctx, encoder)
    save_encoder(ctx.workdir / CHECKPOINT, encoder, name, enc_cfg)
    return {"checkpoint": CHECKPOINT, "digest": checkpoint_digest(ctx.workdir / CHECKPOINT),
            "params": sum(p.numel() for p in encoder.parameters()), "train": summary}


def _train(ctx: StageContext, encoder) -> dict:
    import torch

    from encoders.objectives import build_objective, objective_needs
    from encoders.trainer import TrainConfig, train
    from harness.stages.audio import load_features
    from harness.stages.dataset import pool_manifest

    cfg = ctx.config
    obj_cfg = dict(cfg["objective"])
    obj_name = obj_cfg.pop("name")
    needs = objective_needs(obj_name)
    ids, feats = load_features(pool_manifest(ctx.inputs["dataset"].path), cfg["features"], ctx.cache_dir,
                               progress=ctx.progress, log=ctx.log)
    if needs != "tags":
        raise NotImplementedError(f"objective {obj_name!r} needs {needs}; only tag objectives are wired so far")
    targets, keep, vocab = _tag_targets(ctx, ids)
    feats = [feats[i] for i in keep]
    ctx.log(f"{len(keep)} of {len(ids)} clips have tags in the {len(vocab)}-tag system")
    torch.manual_seed(cfg["seed"] + 1)
    objective = build_objective(obj_name, encoder.dim, num_tags=len(vocab), **obj_cfg)
    train_cfg = dict(cfg["train"])
    specaug = train_cfg.pop("specaugment")
    warmup = train_cfg.pop("warmup_steps")
    config = TrainConfig(**train_cfg, seed=cfg["seed"], checkpoint_every=ctx.runtime.get("checkpoint_every", 100),
                         num_threads=ctx.runtime.get("threads"),
                         **({} if warmup is None else {"warmup_steps": warmup}),
                         **({} if specaug else {"specaugment": None}))
    return train(encoder, objective, feats, targets, config, ctx.workdir, progress=ctx.progress)


def _tag_targets(ctx: StageContext, ids: list[str]):
    import torch

    from harness.stages.manifests import read_jsonl
    from harness.stages.tagsystem import LABELS
    from harness.tagging.tagsystem import filter_clips, multi_hot, read_label_file, tag_index

    vocab = read_label_file(ctx.inputs["tagsystem"].path / LABELS, allow_duplicates=True)
    by_id = {r["id"]: r["tags"] for r in read_jsonl(ctx.inputs["tags"].path / "tags.jsonl")}
    clip_tags = [by_id.get(i, []) for i in ids]
    keep, filtered = filter_clips(clip_tags, vocab)
    index = tag_index(vocab)
    targets = torch.tensor([list(multi_hot(t, index, size=len(vocab))) for t in filtered], dtype=torch.float32)
    return targets, list(keep), vocab
