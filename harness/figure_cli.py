"""``harness figure tsne | longtail | wordcloud``: the tag-system figures of UTS Fig. 2 from files.

    harness figure tsne --uts LABELS.json --audioset CLASSES.csv --out FILE.png
    harness figure longtail --tags TAGS --out FILE.png [--k 800 1000 1500 2000 3000]
    harness figure wordcloud --tags TAGS --out FILE.png [--max-words 200]

LABELS.json is a tag system in the released format (``{"0": "tag", ...}``: the UTS
``label_1.5k.json``, or a ``label_<K>.json`` of ``harness tags build``). CLASSES is the
AudioSet class CSV (index,mid,display_name) or an id2label JSON. TAGS is a TAGS.jsonl of
``harness tags parse``, a Lhotse manifest with custom ``audio_tag``, a CSV with a
``tags`` column, or the stats.csv of ``harness tags build``.

--out FILE.png writes FILE.png and FILE.pdf, and FILE.json with the numbers (tsne:
coverage; longtail: head and tail shares). See docs/figures.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.errors import HarnessError


def add_parser(sub) -> None:
    fig = sub.add_parser("figure", help="tag-system figures (t-SNE coverage, long tail, word cloud) from files",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fsub = fig.add_subparsers(dest="figure_command", required=True)

    tsne = fsub.add_parser("tsne", help="t-SNE of a tag system against the AudioSet labels, with coverage (Fig. 2b)")
    tsne.add_argument("--uts", type=Path, required=True, help="tag system: label map JSON {\"0\": \"tag\", ...}")
    tsne.add_argument("--audioset", type=Path, required=True,
                      help="AudioSet classes: class_labels_indices CSV or an id2label JSON")
    tsne.add_argument("--out", type=Path, required=True, help="FILE.png (FILE.pdf and FILE.json beside it)")
    tsne.add_argument("--d", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5], metavar="D",
                      help="cosine distances at which to report coverage")
    tsne.add_argument("--seed", type=int, default=0)
    tsne.add_argument("--name", default=None, help="legend name of the tag system (default: from the file name)")
    tsne.add_argument("--model", type=Path, default=None,
                      help="a local sentence-transformers folder (default: all-MiniLM-L6-v2 from its wheel)")
    tsne.add_argument("--jobs", type=int, default=None,
                      help="t-SNE threads (default: one per 5,000 labels, at most the available cores)")
    tsne.add_argument("--no-progress", action="store_true", help="no progress display")
    tsne.set_defaults(func=cmd_tsne)

    longtail = fsub.add_parser("longtail", help="rank against frequency on log-log axes, head share per K (Fig. 2c)")
    longtail.add_argument("--tags", type=Path, required=True, help="TAGS.jsonl, Lhotse manifest or CSV")
    longtail.add_argument("--out", type=Path, required=True, help="FILE.png (FILE.pdf and FILE.json beside it)")
    longtail.add_argument("--k", type=int, nargs="+", default=[800, 1000, 1500, 2000, 3000], metavar="K",
                          help="tag-system sizes to mark")
    longtail.add_argument("--column", default="tags", help="CSV: the column with the tags")
    longtail.set_defaults(func=cmd_longtail)

    cloud = fsub.add_parser("wordcloud", help="word cloud of the most frequent tags (Fig. 2a)")
    cloud.add_argument("--tags", type=Path, required=True, help="TAGS.jsonl, Lhotse manifest or CSV")
    cloud.add_argument("--out", type=Path, required=True, help="FILE.png (FILE.pdf beside it)")
    cloud.add_argument("--max-words", type=int, default=200)
    cloud.add_argument("--seed", type=int, default=0)
    cloud.add_argument("--column", default="tags", help="CSV: the column with the tags")
    cloud.set_defaults(func=cmd_wordcloud)


def _stem(out: Path) -> Path:
    """FILE.png (or FILE.pdf, or FILE) -> FILE."""
    if out.suffix.lower() in (".png", ".pdf"):
        return out.with_suffix("")
    if out.suffix:
        raise HarnessError(f"--out {out}: expected FILE.png (FILE.png and FILE.pdf are written)")
    return out


def _written(stem: Path, json_too: bool) -> str:
    exts = ["png", "pdf"] + (["json"] if json_too else [])
    return ", ".join(str(stem.with_suffix(f".{e}")) for e in exts)


def cmd_tsne(args) -> int:
    from harness.store import atomic_write_json
    from results.figures import jsonable, load_label_file, tsne_figure

    stem = _stem(args.out)
    if not args.d or any(not 0.0 <= d <= 2.0 for d in args.d):
        raise HarnessError(f"--d: expected cosine distances in [0, 2], found {args.d}")
    if args.jobs is not None and args.jobs < 1:
        raise HarnessError(f"--jobs: expected a positive number of threads, found {args.jobs}")
    if args.model is not None and not args.model.is_dir():
        raise HarnessError(f"--model {args.model}: sentence-transformers folder not found")
    tags = load_label_file(args.uts)
    labels = load_label_file(args.audioset)
    name = args.name or args.uts.stem
    started = time.time()
    result = jsonable(tsne_figure(tags, labels, stem, seed=args.seed, d=args.d, tag_name=name, n_jobs=args.jobs,
                                  model_dir=args.model, progress=not args.no_progress))
    result.update({"tags_file": str(args.uts), "audioset_file": str(args.audioset)})
    atomic_write_json(stem.with_suffix(".json"), result)
    dropped = result["duplicates_dropped"]
    print(f"{name}: {result['n_tags']} tags"
          + (f" ({dropped['tags']} repeated dropped)" if dropped["tags"] else "")
          + f", AudioSet: {result['n_audioset']} labels, all-MiniLM-L6-v2 cosine distance")
    for d in result["d"]:
        print(f"  within d={d:g}: {result['audioset_covered'][d]:6.1%} of AudioSet labels have a tag, "
              f"{result['tags_covered'][d]:6.1%} of tags have an AudioSet label")
    for key, what in (("nn_audioset_to_tag", "AudioSet -> nearest tag"),
                      ("nn_tag_to_audioset", "tag -> nearest AudioSet")):
        q = result[key]
        print(f"  {what}: median {q['q50']:.3f}, 90th percentile {q['q90']:.3f}, max {q['q100']:.3f}")
    print(f"wrote {_written(stem, True)} in {time.time() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_longtail(args) -> int:
    from harness.store import atomic_write_json
    from results.figures import jsonable, longtail_figure, tag_frequencies

    stem = _stem(args.out)
    if any(k < 1 for k in args.k):
        raise HarnessError(f"--k: expected positive tag-system sizes, found {args.k}")
    freqs = tag_frequencies(args.tags, column=args.column)
    result = jsonable(longtail_figure(freqs, stem, ks=args.k))
    result["tags_file"] = str(args.tags)
    atomic_write_json(stem.with_suffix(".json"), result)
    print(f"{result['n_tags']} tags, {result['total']} tag occurrences, {result['singletons']} tags "
          f"({result['singletons'] / result['n_tags']:.1%}) in one clip only")
    for k, share in result["head_share"].items():
        note = "" if k in result["ks_marked"] else " (K >= number of tags: not marked)"
        print(f"  K={k}: head {share:.1%} of occurrences, tail {result['tail_share'][k]:.1%}{note}")
    print(f"wrote {_written(stem, True)}", file=sys.stderr)
    return 0


def cmd_wordcloud(args) -> int:
    from results.figures import tag_frequencies, wordcloud_figure

    stem = _stem(args.out)
    if args.max_words < 1:
        raise HarnessError(f"--max-words: expected a positive number, found {args.max_words}")
    freqs = tag_frequencies(args.tags, column=args.column)
    result = wordcloud_figure(freqs, stem, max_words=args.max_words, seed=args.seed)
    top = ", ".join(f"{t} ({c})" for t, c in result["top"][:5])
    print(f"{result['n_words']} of {result['n_tags']} tags drawn; most frequent: {top}")
    print(f"wrote {_written(stem, False)}", file=sys.stderr)
    return 0
