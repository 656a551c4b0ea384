"""``harness tags parse | build | stats``: the caption → tags → tag-system pipeline on files.

    harness tags parse --captions FILE --parser rules --out TAGS.jsonl
    harness tags build --tags TAGS.jsonl --sizes 800 1000 1500 2000 3000 --out DIR
    harness tags stats --tags TAGS.jsonl [--sizes ...]

FILE is a CSV with a caption column, or a Lhotse manifest (``.jsonl`` / ``.jsonl.gz``)
whose cuts carry the caption in ``custom``. TAGS.jsonl has one ``{"id", "tags"}`` per clip.
``parse`` also writes its parse report (accepted, rejected by cause, truncated, failed
requests and their first messages) as ``parse_report.json`` beside TAGS.jsonl, as the
tags stage does. A model that cannot load stops it before any caption is sent, in one
line naming the fix (exit 2); a run in which every request failed writes no TAGS.jsonl
and exits 1. ``build`` writes ``DIR/label_<K>.json`` in the released Unified Tag System
format (``{"0": "tag", ...}``, named 800, 1k, 1.5k, ...) and ``DIR/stats.csv`` (rank,
tag, df, score).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError

DEFAULT_SIZES = [800, 1000, 1500, 2000, 3000]


def add_parser(sub) -> None:
    tags = sub.add_parser("tags", help="parse captions into tags and build tag systems from files",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = tags.add_subparsers(dest="tags_command", required=True)

    parse = tsub.add_parser("parse", help="captions (CSV or Lhotse manifest) -> TAGS.jsonl")
    parse.add_argument("--captions", type=Path, required=True, help="CSV with a caption column, or a Lhotse manifest")
    parse.add_argument("--parser", choices=["rules", "openai", "transformers"], default="rules",
                       help="caption -> tags parser")
    parse.add_argument("--base-url", default="http://127.0.0.1:8000/v1",
                       help="openai: an OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama)")
    parse.add_argument("--model", default=None,
                       help="openai: the served model name (default Qwen/Qwen2.5-7B-Instruct); "
                            "transformers: a local model folder")
    parse.add_argument("--gguf-file", default=None,
                       help="transformers: a GGUF file in the model folder (its name, or a path to it); "
                            "needs pip install -e '.[gguf]'")
    parse.add_argument("--device", default=None, help="transformers: cpu or cuda (default: cuda if there is one)")
    parse.add_argument("--batch-size", type=int, default=8, help="transformers: prompts per generate call")
    parse.add_argument("--threads", type=int, default=None,
                       help="transformers: CPU threads for generation (default: torch's, usually every core)")
    parse.add_argument("--temperature", type=float, default=None, help="model parsers: sampling temperature "
                                                                      "(default 0.3, the paper's)")
    parse.add_argument("--max-tokens", type=int, default=None,
                       help="model parsers: longest answer, in tokens (default 512, the paper's); answers cut "
                            "there are counted as truncated")
    parse.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai: variable holding the API key "
                                                                      "(read at call time, never written)")
    parse.add_argument("--prompt", default=None, help="model parsers: the system prompt, or @FILE to read it from "
                                                      "a file (default: the UTS paper's prompt contract)")
    parse.add_argument("--concurrency", type=int, default=4, help="openai: requests in flight")
    parse.add_argument("--cache", type=Path, default=None,
                       help="model parsers: resumable response cache (default: TAGS.jsonl + '.cache.jsonl')")
    parse.add_argument("--column", default="caption", help="the caption column (CSV) or custom field (manifest)")
    parse.add_argument("--id-column", default=None, help="CSV column with the clip id (default: first *id column, "
                                                         "else the row number)")
    parse.add_argument("--max-tags", type=int, default=None, help="keep at most this many tags per caption")
    parse.add_argument("--out", type=Path, required=True, help="TAGS.jsonl to write")
    parse.set_defaults(func=cmd_parse)

    build = tsub.add_parser("build", help="TAGS.jsonl -> label_<K>.json tag systems + stats.csv")
    build.add_argument("--tags", type=Path, required=True)
    build.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--merge-synonyms", type=float, default=None, metavar="THRESHOLD",
                       help="beyond the paper: merge a tag into a more frequent one when their all-MiniLM-L6-v2 "
                            "cosine similarity is at least THRESHOLD (0.9 is conservative); writes merges.csv")
    build.add_argument("--merge-model", type=Path, default=None,
                       help="a local sentence-transformers folder for --merge-synonyms (default: all-MiniLM-L6-v2)")
    build.set_defaults(func=cmd_build)

    stats = tsub.add_parser("stats", help="coverage and long tail of a TAGS.jsonl")
    stats.add_argument("--tags", type=Path, required=True)
    stats.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    stats.set_defaults(func=cmd_stats)


def read_captions(path: Path, column: str = "caption", id_column: str | None = None) -> Iterator[tuple[str, str]]:
    """(clip id, caption) pairs from a CSV or a Lhotse manifest; a clear error for anything else."""
    if not path.is_file():
        raise HarnessError(f"{path}: captions file not found")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        from harness.stages.manifests import iter_cut_dicts

        for n, cut in enumerate(iter_cut_dicts(path)):
            caption = (cut.get("custom") or {}).get(column)
            if caption is None:
                raise HarnessError(f"{path}: cut {n} ({cut.get('id')}): no custom field {column!r}")
            yield cut["id"], caption
        return
    if not name.endswith(".csv"):
        raise HarnessError(f"{path}: expected a .csv or a Lhotse .jsonl(.gz) manifest")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if column not in fields:
            raise HarnessError(f"{path}: no column {column!r}; columns: {', '.join(fields)}")
        if id_column is None:
            id_column = next((c for c in fields if c.endswith("id")), None)
        elif id_column not in fields:
            raise HarnessError(f"{path}: no id column {id_column!r}; columns: {', '.join(fields)}")
        for n, row in enumerate(reader):
            yield (row[id_column] if id_column else str(n)), row[column]


def cmd_parse(args) -> int:
    from harness.store import atomic_write_text

    started = time.time()
    pairs = list(read_captions(args.captions, args.column, args.id_column))
    captions = [caption or "" for _, caption in pairs]
    from harness.tagging.parsers import parse_captions

    for name in ("max_tokens", "threads", "batch_size", "concurrency"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise HarnessError(f"--{name.replace('_', '-')}: expected a positive whole number, found {value}")
    config = {"backend": args.parser, "max_tags": args.max_tags, "temperature": args.temperature,
              "max_tokens": args.max_tokens, "gguf_file": args.gguf_file, "prompt": _prompt(args.prompt)}
    runtime = {"base_url": args.base_url, "api_key_env": args.api_key_env, "concurrency": args.concurrency,
               "batch_size": args.batch_size, "device": args.device, "threads": args.threads}
    if args.parser == "openai":
        config["model"] = args.model or "Qwen/Qwen2.5-7B-Instruct"
    elif args.parser == "transformers":
        if not args.model:
            raise HarnessError("--parser transformers: --model DIR (a local Hugging Face model folder) is required")
        if not Path(args.model).is_dir():
            raise HarnessError(f"{args.model}: model folder not found (a local Hugging Face folder; "
                               "nothing is downloaded)")
        runtime["model"] = args.model
    cache = args.cache or args.out.with_name(args.out.name + ".cache.jsonl")
    report_path = args.out.with_name("parse_report.json")
    from harness.tagging.llm import AllRequestsFailed

    try:
        parsed, report = parse_captions(captions, config, runtime, cache_path=cache, progress=True)
    except AllRequestsFailed as exc:  # the report says why; no file of empty tag lists is written
        atomic_write_text(report_path, json.dumps(exc.report, indent=2, sort_keys=True) + "\n")
        raise AllRequestsFailed(f"{exc.problems[0]}; report: {report_path}; {args.out} not written",
                                exc.report) from None  # exit code 1
    parsed = [tags[: args.max_tags] if args.max_tags else tags for tags in parsed]
    atomic_write_text(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.parser != "rules":
        from harness.tagging.responses import summarize

        print(f"parse report: {summarize(report)} -> {report_path}", file=sys.stderr)
        if report["total"] and not report["accepted"]:
            print(f"warning: not one answer followed the prompt's contract: {args.out} holds no tag "
                  "(a tag system cannot be built from it)", file=sys.stderr)
    lines, empty, total = [], 0, 0
    for (clip_id, _), tags in zip(pairs, parsed):
        empty += not tags
        total += len(tags)
        lines.append(json.dumps({"id": clip_id, "tags": tags}, ensure_ascii=False))
    atomic_write_text(args.out, "\n".join(lines) + "\n" if lines else "")
    n = len(lines)
    print(f"parsed {n} captions in {time.time() - started:.1f} s: {total / max(n, 1):.2f} tags per caption, "
          f"{empty} with no tag -> {args.out}", file=sys.stderr)
    return 0


def _prompt(value: str | None) -> str | None:
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise HarnessError(f"{path}: prompt file not found (--prompt @FILE)")
    return path.read_text(encoding="utf-8").strip()


def _read_tags(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise HarnessError(f"{path}: tags file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tags = json.loads(line)["tags"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise HarnessError(f"{path}:{n}: expected a JSON object with a 'tags' list") from None
            out.append(list(tags))
    return out


def cmd_build(args) -> int:
    from harness.tagging.tagsystem import build_tag_system, size_name, write_label_file, write_stats_csv

    clip_tags = _read_tags(args.tags)
    if not any(clip_tags):  # checked before the folder is made: nothing is left behind
        raise HarnessError(f"{args.tags}: no clip has a tag ({len(clip_tags)} clips, every tag list empty): no tag "
                           "system to build; see the parse report (parse_report.json) beside it")
    bad = [k for k in args.sizes if k < 1]
    if bad:
        raise HarnessError(f"--sizes: expected positive whole numbers, found {', '.join(map(str, bad))}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge_synonyms is not None:
        from collections import Counter

        from harness.tagging.synonyms import merge_synonyms, sentence_embedder, write_merges_csv

        if not 0.5 <= args.merge_synonyms <= 1.0:
            raise HarnessError(f"--merge-synonyms: expected a cosine similarity in [0.5, 1], found {args.merge_synonyms}")
        df = Counter(t for tags in clip_tags for t in set(tags))
        clip_tags, mapping, similarity = merge_synonyms(clip_tags, args.merge_synonyms,
                                                        embed=sentence_embedder(args.merge_model))
        write_merges_csv(args.out / "merges.csv", mapping, similarity, df)
        print(f"merged {len(mapping)} tags into more frequent synonyms -> {args.out / 'merges.csv'}", file=sys.stderr)
    stats = build_tag_system(clip_tags)
    for k in args.sizes:
        vocab = stats.top(k)
        path = args.out / f"label_{size_name(k)}.json"
        write_label_file(path, vocab)
        print(f"K={k}: {len(vocab)} tags, {stats.coverage(k):.2%} of clips keep a tag -> {path}", file=sys.stderr)
    write_stats_csv(args.out / "stats.csv", stats)
    print(f"{len(stats.ranked)} unique tags over {stats.n_clips} clips -> {args.out / 'stats.csv'}", file=sys.stderr)
    return 0


def cmd_stats(args) -> int:
    from harness.tagging.tagsystem import build_tag_system

    clip_tags = _read_tags(args.tags)
    stats = build_tag_system(clip_tags)
    pairs = sum(len(t) for t in clip_tags)
    print(f"clips {stats.n_clips}, tag occurrences {pairs}, unique tags {len(stats.ranked)}, "
          f"mean tags per clip {pairs / max(stats.n_clips, 1):.2f}")
    singletons = sum(1 for t in stats.ranked if stats.df[t] == 1)
    print(f"long tail: {singletons} tags ({singletons / max(len(stats.ranked), 1):.1%}) occur in one clip only")
    print("K\tclips covered\ttag occurrences covered")
    for k in args.sizes:
        print(f"{k}\t{stats.coverage(k):.2%}\t{stats.occurrence_coverage(k):.2%}")
    return 0
