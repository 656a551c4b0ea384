"""Pre-train an encoder with an objective (or initialise it at random for the baseline).

A run may start from another run's encoder (its ``init`` input: the graph makes the init
run an input, e.g. AudioSet-supervised MTC before contrastive fine-tuning, CaptionStew's
supervised initialisation) or from a checkpoint file (``config["init"]["checkpoint"]``):
its weights are loaded before the first step. A resumed run continues from its own
checkpoint in the work folder instead (the trainer's resume comes after this).
"""

from __future__ import annotations

from harness.job import StageContext
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="1",
    doc="pre-training of an encoder with an objective",
    meta={"order": 50},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)

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
    start = init_checkpoint(ctx)
    if start is not None:
        load_init(encoder, start, name, enc_cfg)
        ctx.log(f"encoder initialised from {start}")
    summary: dict = {}
    if cfg["objective"]["name"] != "random":
        summary = _train(ctx, encoder)
    save_encoder(ctx.workdir / CHECKPOINT, encoder, name, enc_cfg)
    return {"checkpoint": CHECKPOINT, "digest": checkpoint_digest(ctx.workdir / CHECKPOINT),
            "params": sum(p.numel() for p in encoder.parameters()), "train": summary}


def init_checkpoint(ctx: StageContext):
    """The checkpoint this run starts from: its init run's, or the configured file; else None."""
    from pathlib import Path

    if "init" in ctx.inputs:
        return ctx.inputs["init"].path / CHECKPOINT
    init = ctx.config.get("init") or {}
    return Path(init["checkpoint"]) if init.get("checkpoint") else None


def load_init(encoder, path, name: str, config: dict) -> None:
    """Load the weights of an encoder checkpoint into ``encoder``: the same architecture only."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("name") != name or dict(ckpt.get("config") or {}) != dict(config):
        raise ValueError(f"{path}: an encoder {ckpt.get('name')!r} {ckpt.get('config')}; this run trains "
                         f"{name!r} {config}, so it cannot start from it")
    encoder.load_state_dict(ckpt["state_dict"])


def _train(ctx: StageContext, encoder) -> dict:
    import torch

    from encoders.objectives import from_supervision, objective_needs
    from encoders.trainer import TrainConfig, train
    from harness.stages.audio import load_features
    from harness.stages.dataset import pool_manifest

    cfg = ctx.config
    obj_cfg = dict(cfg["objective"])
    obj_name = obj_cfg.pop("name")
    needs = set(objective_needs(obj_name).split("+"))
    manifest = pool_manifest(ctx.inputs["dataset"].path)
    stream = cfg["train"].get("stream")
    if stream:  # the clips' ids now, their audio streamed from shards while training
        from harness.stages.manifests import iter_cut_dicts

        ids, feats = [c["id"] for c in iter_cut_dicts(manifest)], None
    else:
        ids, feats = load_features(manifest, cfg["features"], ctx.cache_dir, progress=ctx.progress, log=ctx.log)
    if cfg.get("subset"):  # a nested data-scaling subset of the pool: the same clips whatever the objective
        from harness.sources.select import nested_subsets

        size = cfg["subset"]["size"]
        chosen = set(nested_subsets(ids, [size], cfg["subset"]["seed"])[size])
        pick = [i for i, clip in enumerate(ids) if clip in chosen]
        ids, feats = [ids[i] for i in pick], feats and [feats[i] for i in pick]
        ctx.log(f"data subset: {len(ids)} of the pool's clips (nested subsets, seed {cfg['subset']['seed']})")
    supervision, keep = supervision_for(ctx, needs, ids, manifest)
    ctx.log(f"{len(keep)} of {len(ids)} clips have {' and '.join(sorted(needs))} for {obj_name!r}")
    torch.manual_seed(cfg["seed"] + 1)
    objective, targets = from_supervision(obj_name, encoder.dim, supervision, **obj_cfg)
    train_cfg = dict(cfg["train"])
    train_cfg.pop("stream", None)
    sampler = None
    if stream:
        from harness.sources.shards import ShardFeed, pool_shards

        shards = pool_shards(manifest, stream["shard_size"], ctx.cache_dir, log=ctx.log)
        feats = sampler = ShardFeed(shards, {ids[i]: row for row, i in enumerate(keep)}, train_cfg["batch_size"],
                                    cfg["seed"], workers=stream["workers"], buffer=stream["buffer"],
                                    num_mel_bins=cfg["features"]["num_mel_bins"])
        ctx.log(f"streaming {len(keep)} clips from {shards} ({stream['workers']} workers)")
    else:
        feats = [feats[i] for i in keep]
    specaug = train_cfg.pop("specaugment")
    warmup = train_cfg.pop("warmup_steps")
    config = TrainConfig(**train_cfg, seed=cfg["seed"], checkpoint_every=ctx.runtime.get("checkpoint_every", 100),
                         num_threads=ctx.runtime.get("threads"),
                         **({} if warmup is None else {"warmup_steps": warmup}),
                         **({} if specaug else {"specaugment": None}))
    summary = train(encoder, objective, feats, targets, config, ctx.workdir, progress=ctx.progress, sampler=sampler)
    from encoders.checkpoint import save_language_side  # audio-text objectives only: for retrieval, zero-shot

    save_language_side(ctx.workdir / "language.pt", objective, obj_name, obj_cfg, encoder.dim)
    return {**summary, "clips": len(keep)}  # clips trained on: the x axis of data-scaling figures


def supervision_for(ctx: StageContext, needs: set[str], ids: list[str], manifest):
    """The :class:`Supervision` of the clips that have everything ``needs`` asks for, and
    their indices into ``ids``. Clips without an in-system tag, a caption or a label are
    left out (the paper drops clips left with no tags)."""
    import torch

    from encoders.objectives.supervision import Supervision
    from harness.stages.manifests import iter_cut_dicts, read_jsonl
    from harness.stages.tagsystem import LABELS
    from harness.tagging.tagsystem import filter_clips, multi_hot, read_label_file, tag_index, tag_sequence

    keep = set(range(len(ids)))
    if "tags" in needs:
        vocab = read_label_file(ctx.inputs["tagsystem"].path / LABELS, allow_duplicates=True)
        by_id = {r["id"]: r["tags"] for r in read_jsonl(ctx.inputs["tags"].path / "tags.jsonl")}
        kept, filtered = filter_clips([by_id.get(clip, []) for clip in ids], vocab)
        tags_of = dict(zip(kept, filtered))
        keep &= set(tags_of)
    if "captions" in needs:
        by_id = {r["id"]: r["caption"] for r in read_jsonl(ctx.inputs["captions"].path / "captions.jsonl")}
        captions_of = {i: by_id[clip] for i, clip in enumerate(ids) if by_id.get(clip)}
        keep &= set(captions_of)
    if "labels" in needs:
        labels = {c["id"]: (c.get("custom") or {}).get("labels") or [] for c in iter_cut_dicts(manifest)}
        labels_of = {i: labels[clip] for i, clip in enumerate(ids) if labels.get(clip)}
        keep &= set(labels_of)
    order = sorted(keep)
    if not order:
        raise ValueError(f"no clip of the source has {' and '.join(sorted(needs))}")

    sup = Supervision(num_clips=len(order))
    if "tags" in needs:
        index = tag_index(vocab)  # tag -> rank in the tag system
        sup.tag_names = list(vocab)
        sup.tag_targets = torch.tensor([list(multi_hot(tags_of[i], index, size=len(vocab))) for i in order],
                                       dtype=torch.float32)
        sup.tag_sequences = [tag_sequence(tags_of[i], index) for i in order]
    if "captions" in needs:
        sup.captions = [captions_of[i] for i in order]
    if "labels" in needs:
        names = sorted({label for i in order for label in labels_of[i]})
        column = {name: j for j, name in enumerate(names)}
        sup.label_names = names
        sup.label_targets = torch.zeros(len(order), len(names))
        for row, i in enumerate(order):
            sup.label_targets[row, [column[label] for label in labels_of[i]]] = 1.0
    return sup, order
