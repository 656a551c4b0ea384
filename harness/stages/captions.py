"""Captions of every clip of a source, from the configured captioner backend.

``manifest`` reads a caption field, ``template`` writes captions from a tag-list field,
``openai`` asks an audio captioning model (see :mod:`harness.tagging.captioners`),
``keyword`` runs the captioner its ``captioner`` input trained (:mod:`harness.tagging.keyword`).
What happened to every clip is in ``caption_report.json``; a clip without a caption is
counted, never silently dropped.
"""

from __future__ import annotations

import json

from harness.job import StageContext
from harness.stages.dataset import pool_manifest
from harness.stages.manifests import iter_cut_dicts, write_jsonl
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="2",
    doc="a caption per clip from the captioner",
    meta={"order": 20},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)


def run(ctx: StageContext) -> dict:
    from harness.store import atomic_write_text
    from harness.tagging.captioners import caption_cuts

    cuts = list(iter_cut_dicts(pool_manifest(ctx.inputs["dataset"].path)))
    if "captioner" in ctx.inputs:  # a captioner trained by a captioner node (keyword: BLAT's)
        from harness.tagging.keyword import caption_with_model

        captions, report = caption_with_model(cuts, ctx.config, ctx.inputs["captioner"].path,
                                              batch_size=ctx.runtime.get("batch_size") or 32)
    else:
        captions, report = caption_cuts(cuts, ctx.config, ctx.runtime, cache_dir=ctx.cache_dir,
                                        progress=ctx.progress)
    rows = [{"id": cut["id"], "caption": captions[cut["id"]]} for cut in cuts if cut["id"] in captions]
    summary = report.to_dict()
    atomic_write_text(ctx.workdir / "caption_report.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if not rows:
        raise ValueError(f"no clip got a caption from the {ctx.config['backend']!r} captioner: "
                         f"{json.dumps({k: v for k, v in summary.items() if v and k != 'unreadable_ids'})}")
    write_jsonl(ctx.workdir / "captions.jsonl", rows)
    ctx.log(f"{len(rows)} captions from the {ctx.config['backend']!r} captioner "
            f"({len(cuts) - len(rows)} clips without one)")
    return {"captions": "captions.jsonl", "num_clips": len(rows), "missing": len(cuts) - len(rows),
            "report": "caption_report.json"}
