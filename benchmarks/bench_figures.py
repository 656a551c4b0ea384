"""Time the tag-system figures of UTS Fig. 2 on the real data (the acceptance target: at most 60 s in all).

- tags: the AudioCaps train captions (``audiocaps_train_v2.csv``, 49,810 clips) through the
  rules parser, as ``harness tags parse --parser rules`` does, written to a TAGS.jsonl;
- Fig. 2a word cloud and Fig. 2c long tail of that TAGS.jsonl (reading it included);
- Fig. 2b t-SNE of the released UTS-1.5k against the 527 AudioSet labels, cold (an empty
  ``$HARNESS_HOME``: MiniLM is imported, loaded and run) and warm (embeddings cached).

Prints each step's time (the median of ``--repeats`` runs where a run is cheap; the cold
t-SNE runs once), the total of one cold pass over the three figures, and the numbers the
figures show (coverage of UTS-1.5k against AudioSet, head shares).

    python benchmarks/bench_figures.py [--shared ../shared] [--repeats 3] [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int = 1):
    """(result of the last run, median seconds, all seconds)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="folder with mirror/ and reference/")
    p.add_argument("--uts", type=Path, default=None, help="tag system (default: reference/uts/label_1.5k.json)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=None, help="t-SNE threads (default: results.figures.tsne_jobs)")
    p.add_argument("--out", type=Path, default=None, help="where the figures go (default: a temporary folder)")
    args = p.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-figures-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["HARNESS_HOME"] = str(out / "home")  # empty: the first t-SNE is cold
    captions = args.shared / "mirror" / "audiocaps_train_v2.csv"
    classes = args.shared / "mirror" / "audioset_class_labels_indices.csv"
    uts = args.uts or args.shared / "reference" / "uts" / "label_1.5k.json"

    from harness.store import atomic_write_text
    from harness.tags_cli import read_captions
    from harness.tagging.parsers import parse_captions
    from results.figures import (available_cores, load_label_file, longtail_figure, tag_frequencies,
                                 tsne_figure, tsne_jobs, wordcloud_figure)

    print(f"{os.cpu_count()} CPUs, {available_cores()} available; figures -> {out}")

    def parse():
        pairs = list(read_captions(captions))
        tags, _ = parse_captions([c or "" for _, c in pairs], {"backend": "rules"})
        lines = [json.dumps({"id": i, "tags": t}) for (i, _), t in zip(pairs, tags)]
        atomic_write_text(out / "tags.jsonl", "\n".join(lines) + "\n")
        return len(lines)

    n_clips, t_parse, _ = timed(parse)
    print(f"tags parse (rules) of {n_clips} captions: {t_parse:.2f} s (not part of the figures' total)")

    tags_file = out / "tags.jsonl"
    lt, t_lt, _ = timed(lambda: longtail_figure(tag_frequencies(tags_file), out / "longtail"), args.repeats)
    wc, t_wc, _ = timed(lambda: wordcloud_figure(tag_frequencies(tags_file), out / "wordcloud"), args.repeats)
    tag_system, audioset = load_label_file(uts), load_label_file(classes)
    n_points = len(set(tag_system)) + len(set(audioset))
    print(f"t-SNE of {n_points} labels on {args.jobs or tsne_jobs(n_points)} thread(s)")

    def tsne():
        return tsne_figure(tag_system, audioset, out / "tsne", n_jobs=args.jobs, tag_name=uts.stem)

    cov, t_cold, _ = timed(tsne)
    _, t_warm, _ = timed(tsne, args.repeats)

    print()
    print(f"{'figure':<34}{'seconds':>9}")
    print(f"{'long tail (Fig. 2c)':<34}{t_lt:>9.2f}   median of {args.repeats}")
    print(f"{'word cloud (Fig. 2a)':<34}{t_wc:>9.2f}   median of {args.repeats}")
    print(f"{'t-SNE (Fig. 2b), cold':<34}{t_cold:>9.2f}   model import + load + embed + t-SNE")
    print(f"{'t-SNE (Fig. 2b), warm':<34}{t_warm:>9.2f}   embeddings cached; median of {args.repeats}")
    total = t_lt + t_wc + t_cold
    print(f"{'total, cold':<34}{total:>9.2f}   target <= 60 s: {'met' if total <= 60 else 'MISSED'}")

    print()
    print(f"long tail: {lt['n_tags']} tags, {lt['total']} occurrences, {lt['singletons']} in one clip only")
    print("  " + ", ".join(f"K={k}: head {s:.1%}" for k, s in lt["head_share"].items()))
    print(f"word cloud: {wc['n_words']} words; top " + ", ".join(f"{t} ({c})" for t, c in wc["top"][:5]))
    print(f"coverage, {uts.name} ({cov['n_tags']} unique tags) vs AudioSet ({cov['n_audioset']} labels):")
    for d in cov["d"]:
        print(f"  d={d:g}: AudioSet labels with a tag {cov['audioset_covered'][d]:.1%}, "
              f"tags with an AudioSet label {cov['tags_covered'][d]:.1%}")
    for key, what in (("nn_audioset_to_tag", "AudioSet -> tag"), ("nn_tag_to_audioset", "tag -> AudioSet")):
        q = cov[key]
        print(f"  NN distance {what}: q10 {q['q10']:.3f}, q25 {q['q25']:.3f}, median {q['q50']:.3f}, "
              f"q75 {q['q75']:.3f}, q90 {q['q90']:.3f}, max {q['q100']:.3f}, mean {q['mean']:.3f}")
    least = "; ".join(f"{a} -> {t} ({d:.2f})" for a, t, d in cov["least_covered"][:5])
    print(f"  least covered AudioSet labels: {least}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
