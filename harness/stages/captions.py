"""Captions of every clip of a source. Backend ``manifest``: the captions the source already has."""

from __future__ import annotations

from harness.job import StageContext
from harness.stages.dataset import pool_manifest
from harness.stages.manifests import iter_cut_dicts, write_jsonl

VERSION = "1"


def run(ctx: StageContext) -> dict:
    field = ctx.config["field"]
    rows, missing = [], 0
    for cut in iter_cut_dicts(pool_manifest(ctx.inputs["dataset"].path)):
        caption = (cut.get("custom") or {}).get(field)
        if not caption:
            missing += 1
            continue
        rows.append({"id": cut["id"], "caption": caption})
    if not rows:
        raise ValueError(f"no clip of the source has a {field!r} caption")
    write_jsonl(ctx.workdir / "captions.jsonl", rows)
    ctx.log(f"{len(rows)} captions from field {field!r} ({missing} clips without one)")
    return {"captions": "captions.jsonl", "num_clips": len(rows), "missing": missing}
