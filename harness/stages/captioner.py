"""Train a captioner that captions from audio and keywords (BLAT's keyword-conditioned
captioner, :mod:`harness.tagging.keyword`), on a captioned source with each clip's tags.

Inputs: ``dataset``, the training source (AudioCaps for BLAT; its captions in
``caption_field``), and optionally ``keywords``, a source whose clips carry the tags in
``keyword_field`` (AudioSet for BLAT), matched to the training clips by clip id or
YouTube id; without it the training clips' own ``keyword_field`` is read. The model is
trained by the pre-training trainer, which checkpoints into the work folder and resumes
from there after a kill; the node is keyed by its config and its inputs, so a rerun, or a
change downstream, reuses it.
"""

from __future__ import annotations

from harness.job import StageContext
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="1",
    doc="training of a keyword-conditioned captioner (BLAT)",
    meta={"order": 15},  # after dataset (10), before captions (20)
)


def run(ctx: StageContext) -> dict:
    from harness.stages.audio import load_features
    from harness.stages.dataset import pool_manifest
    from harness.stages.manifests import iter_cut_dicts
    from harness.tagging.captioners import clip_tags
    from harness.tagging.keyword import CHECKPOINT, train_captioner

    cfg = ctx.config
    manifest = pool_manifest(ctx.inputs["dataset"].path)
    cuts = list(iter_cut_dicts(manifest))
    source = iter_cut_dicts(pool_manifest(ctx.inputs["keywords"].path)) if "keywords" in ctx.inputs else cuts
    tags_by_key = {}
    for cut in source:
        tags = clip_tags(cut, cfg["keyword_field"])
        if tags:
            tags_by_key[cut["id"]] = tags
            youtube = (cut.get("custom") or {}).get("youtube_id")
            if youtube:
                tags_by_key.setdefault(youtube, tags)
    keywords_of = {}
    for cut in cuts:
        for key in (cut["id"], (cut.get("custom") or {}).get("youtube_id")):
            if key in tags_by_key:
                keywords_of[cut["id"]] = tags_by_key[key]
                break
    ctx.log(f"{len(keywords_of)} of {len(cuts)} training clips have keywords in {cfg['keyword_field']!r}")
    features = load_features(manifest, cfg["features"], ctx.cache_dir, progress=ctx.progress, log=ctx.log)
    summary = train_captioner(cuts, keywords_of, cfg, features, ctx.workdir,
                              checkpoint_every=ctx.runtime.get("checkpoint_every", 100),
                              num_threads=ctx.runtime.get("threads"), progress=ctx.progress, log=ctx.log)
    return {"checkpoint": CHECKPOINT, "train": summary}
