"""Tags of every caption, from the configured parser (rules, openai or transformers)."""

from __future__ import annotations

import json

from harness.job import StageContext
from harness.stages.manifests import read_jsonl, write_jsonl

VERSION = "2"


def run(ctx: StageContext) -> dict:
    from harness.store import atomic_write_text
    from harness.tagging.parsers import parse_captions

    rows = read_jsonl(ctx.inputs["captions"].path / "captions.jsonl")
    parsed, report = parse_captions([r["caption"] for r in rows], ctx.config, ctx.runtime,
                                    cache_path=ctx.cache_dir / "llm" / "parse.jsonl", progress=ctx.progress)
    max_tags = ctx.config.get("max_tags")
    out = [{"id": row["id"], "tags": tags[:max_tags] if max_tags else tags} for row, tags in zip(rows, parsed)]
    write_jsonl(ctx.workdir / "tags.jsonl", out)
    atomic_write_text(ctx.workdir / "parse_report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    n_tags = sum(len(r["tags"]) for r in out)
    summary = {"num_clips": len(out), "empty": sum(not r["tags"] for r in out),
               "mean_tags": round(n_tags / max(len(out), 1), 3), "unique_tags": len({t for r in out for t in r["tags"]})}
    ctx.log(f"parsed {len(out)} captions with the {ctx.config['backend']!r} parser: {summary}")
    return {"tags": "tags.jsonl", "report": "parse_report.json", **summary}
