"""Tags of every clip: parsed from its caption (rules, openai or transformers), or taken as
they are from the source (``manifest``: the released UTS ``audio_tag``, a file's tags)."""

from __future__ import annotations

import json

from harness.job import StageContext
from harness.stages.manifests import read_jsonl, write_jsonl
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="2",
    doc="tags per clip from the parser",
    meta={"order": 30},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)


def run(ctx: StageContext) -> dict:
    from harness.store import atomic_write_text
    from harness.tagging.parsers import parse_captions

    if ctx.config["backend"] == "manifest":
        rows, parsed, report = _source_tags(ctx)
    else:
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


def _source_tags(ctx: StageContext) -> tuple[list[dict], list[list[str]], dict]:
    """The tags each clip already carries in the source's ``field``: lowercased, stripped,
    de-duplicated in order. Clips without any are kept with no tags (the tag system drops them)."""
    from harness.stages.dataset import pool_manifest
    from harness.stages.manifests import iter_cut_dicts

    field = ctx.config.get("field", "tags")
    rows, parsed, missing = [], [], 0
    for cut in iter_cut_dicts(pool_manifest(ctx.inputs["dataset"].path)):
        value = (cut.get("custom") or {}).get(field)
        if isinstance(value, str):
            value = value.split(",")
        tags = list(dict.fromkeys(t.strip().lower() for t in value or [] if isinstance(t, str) and t.strip()))
        missing += not tags
        rows.append({"id": cut["id"]})
        parsed.append(tags)
    return rows, parsed, {"backend": "manifest", "field": field, "clips": len(rows), "without_tags": missing}
