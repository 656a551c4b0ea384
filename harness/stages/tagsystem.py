"""A tag system: the top-K tags by df·idf (or a released file), in the released label format."""

from __future__ import annotations

from harness.job import StageContext
from harness.stages.manifests import read_jsonl

VERSION = "1"

LABELS = "labels.json"  # the tag system, in the released {"0": "tag", ...} format


def run(ctx: StageContext) -> dict:
    from harness.tagging.tagsystem import (build_tag_system, read_label_file, size_name, write_label_file,
                                           write_stats_csv)

    if "file" in ctx.config:  # a released (or earlier) tag system, used as it is
        # Released files may repeat a tag (label_1.5k.json repeats "instructional"): keep them as
        # they are, so indices match the file; targets use the first index of a repeated tag.
        vocab = read_label_file(ctx.config["file"], allow_duplicates=True)
        write_label_file(ctx.workdir / LABELS, vocab, allow_duplicates=True)
        return {"labels": LABELS, "size": len(vocab), "source_file": ctx.config["file"]}

    rows = read_jsonl(ctx.inputs["tags"].path / "tags.jsonl")
    stats = build_tag_system([r["tags"] for r in rows])
    k = ctx.config["size"]
    vocab = stats.top(k)
    if len(vocab) < k:
        ctx.log(f"only {len(vocab)} distinct tags for K={k}: the tag system is smaller than asked")
    write_label_file(ctx.workdir / LABELS, vocab)
    write_label_file(ctx.workdir / f"label_{size_name(k)}.json", vocab)
    write_stats_csv(ctx.workdir / "stats.csv", stats)
    coverage = stats.coverage(k)
    ctx.log(f"K={k}: {len(vocab)} tags of {len(stats.ranked)}, clips covered {coverage:.1%}")
    return {"labels": LABELS, "size": len(vocab), "unique_tags": len(stats.ranked), "coverage": coverage}
