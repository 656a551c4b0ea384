"""Tags of every caption, from the configured parser."""

from __future__ import annotations

from harness.job import StageContext
from harness.stages.manifests import read_jsonl, write_jsonl

VERSION = "1"


def run(ctx: StageContext) -> dict:
    from harness.tagging.rules import parse_caption

    rows = read_jsonl(ctx.inputs["captions"].path / "captions.jsonl")
    max_tags = ctx.config.get("max_tags")
    out, empty = [], 0
    for row in rows:
        tags = parse_caption(row["caption"], max_tags=max_tags)
        empty += not tags
        out.append({"id": row["id"], "tags": tags})
    write_jsonl(ctx.workdir / "tags.jsonl", out)
    n_tags = sum(len(r["tags"]) for r in out)
    report = {"num_clips": len(out), "empty": empty, "mean_tags": round(n_tags / max(len(out), 1), 3),
              "unique_tags": len({t for r in out for t in r["tags"]})}
    ctx.log(f"parsed {len(out)} captions: {report}")
    return {"tags": "tags.jsonl", **report}
