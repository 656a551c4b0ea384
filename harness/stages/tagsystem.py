"""A tag system: the top-K tags by df·idf (or a released file), in the released label format."""

from __future__ import annotations

from harness.job import StageContext
from harness.stages.manifests import read_jsonl
from harness.registry import Component

COMPONENT = Component(
    kind="stage",
    target="run",
    version="1",
    doc="the top-K tags by df*idf (or a released tag-system file)",
    meta={"order": 40},  # stages run in this order; shared: in $HARNESS_HOME, not the study folder
)

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
    clip_tags = [r["tags"] for r in rows]
    merged = {}
    if "merge_synonyms" in ctx.config:
        clip_tags, merged = _merge(ctx, clip_tags)
    stats = build_tag_system(clip_tags)
    k = ctx.config["size"]
    vocab = stats.top(k)
    if len(vocab) < k:
        ctx.log(f"only {len(vocab)} distinct tags for K={k}: the tag system is smaller than asked")
    write_label_file(ctx.workdir / LABELS, vocab)
    write_label_file(ctx.workdir / f"label_{size_name(k)}.json", vocab)
    write_stats_csv(ctx.workdir / "stats.csv", stats)
    coverage = stats.coverage(k)
    ctx.log(f"K={k}: {len(vocab)} tags of {len(stats.ranked)}, clips covered {coverage:.1%}")
    return {"labels": LABELS, "size": len(vocab), "unique_tags": len(stats.ranked), "coverage": coverage,
            **merged}


def _merge(ctx: StageContext, clip_tags: list[list[str]]) -> tuple[list[list[str]], dict]:
    """Synonym merging, its mapping cached by content so every K of a study computes it once."""
    import json
    from collections import Counter

    from harness.store import atomic_write_text, digest, file_digest
    from harness.tagging.synonyms import merge_synonyms, sentence_embedder, write_merges_csv

    settings = ctx.config["merge_synonyms"]
    key = digest({"tags": file_digest(ctx.inputs["tags"].path / "tags.jsonl"), **settings})
    cached = ctx.cache_dir / "synonyms" / f"{key}.json"
    df = Counter(t for tags in clip_tags for t in set(tags))
    if cached.is_file():
        blob = json.loads(cached.read_text())
        mapping, similarity = blob["mapping"], blob["similarity"]
        merged = [list(dict.fromkeys(mapping.get(t, t) for t in tags)) for tags in clip_tags]
    else:
        embed = sentence_embedder(ctx.runtime.get("merge_model"))
        merged, mapping, similarity = merge_synonyms(clip_tags, settings["threshold"], embed=embed)
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps({"mapping": mapping, "similarity": similarity}, sort_keys=True))
    write_merges_csv(ctx.workdir / "merges.csv", mapping, similarity, df)
    ctx.log(f"synonym merging at cosine >= {settings['threshold']}: {len(mapping)} tags merged (merges.csv)")
    return merged, {"merged_tags": len(mapping), "merges": "merges.csv"}
