"""``harness report STUDY``: every table and figure of a study, rebuilt from its results.

Writes ``runs/<study>/report/``::

    index.md, index.html      every table and figure (the HTML is one self-contained file)
    tables/NAME.{md,tex,csv}  Markdown, LaTeX (booktabs) and tidy CSV
    figures/NAME.{png,pdf}    publication style (results/style.py), PNG and vector PDF
    figures/NAME.json         the numbers behind a figure, where it has some (coverage, shares)
    provenance.json           git commit, package versions, study file, results (and configs) digest,
                              file digests

The report is a pure function of the results and the study's outputs: the same results
give byte-identical tables and figures (provenance.json adds the commit and versions).
Sections appear when the study has what they need: the tag-system size figure with two or
more K, data scaling with two or more data sizes, the paired bootstrap when predictions
are stored, the tag figures when the study builds a tag system.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.store import atomic_write_text

REPORT_PACKAGES = ["matplotlib", "seaborn", "openTSNE", "wordcloud", "sentence-transformers", "transformers",
                   "scipy", "pyarrow"]


@dataclass
class Section:
    """One section of the report: a heading, some prose, then tables and figures."""

    title: str
    text: str = ""
    tables: list[tuple[str, str]] = field(default_factory=list)  # (file stem, Markdown)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file stem, caption)

    def markdown(self) -> str:
        parts = [f"## {self.title}\n"]
        if self.text:
            parts.append(self.text.strip() + "\n")
        for stem, table in self.tables:
            parts.append(table.rstrip() + "\n")
            parts.append(f"Files: [md](tables/{stem}.md) · [LaTeX](tables/{stem}.tex) · [CSV](tables/{stem}.csv)\n")
        for stem, caption in self.figures:
            parts.append(f"![{caption}](figures/{stem}.png)\n")
            parts.append(f"*{caption}* ([PDF](figures/{stem}.pdf))\n")
        return "\n".join(parts)


class ReportWriter:
    """Collects sections and writes the files of one report folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.sections: list[Section] = []
        self.written: list[Path] = []
        for sub in ("tables", "figures"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def table(self, section: Section, stem: str, renderings: dict[str, str]) -> None:
        """Write ``tables/stem.{md,tex,csv}`` and show the Markdown in ``section``."""
        for ext, text in renderings.items():
            path = self.out / "tables" / f"{stem}.{ext}"
            atomic_write_text(path, text)
            self.written.append(path)
        section.tables.append((stem, renderings["md"]))

    def figure(self, section: Section, stem: str, caption: str, draw: Callable[[Path], Any]) -> Any:
        """Draw a figure with ``draw(path_stem)``; show it when it was drawn (returned non-None)."""
        result = draw(self.out / "figures" / stem)
        if result is not None:
            section.figures.append((stem, caption))
            self.written += [self.out / "figures" / f"{stem}.{ext}" for ext in ("png", "pdf")]
        return result

    def json(self, stem: str, data: Any) -> Path:
        path = self.out / "figures" / f"{stem}.json"
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        self.written.append(path)
        return path


def write_report(results_path: str | Path, out_dir: str | Path, title: str = "", study: Any = None,
                 graph: Any = None, layout: Any = None, tag_figures: bool = True, log=print) -> Path:
    """Write the report folder; returns the path of ``index.md``.

    ``study``, ``graph`` and ``layout`` (from the CLI) add what lives outside the results
    table: predictions for the paired bootstrap, the tag files for the tag figures, the
    study file for provenance. Without them the report holds the tables and the figures
    drawn from results alone.
    """
    from results import plots
    from results.table import load_results

    frame = load_results(results_path)
    out = Path(out_dir)
    writer = ReportWriter(out)
    header = [f"# {title or 'Study report'}\n"]
    if study is not None and study.config.get("description"):
        header.append(study.config["description"].strip() + "\n")
    if frame.empty:
        header.append("No results yet: run the study first (`harness run STUDY`).\n")
    else:
        n_runs, n_tasks = frame["run"].nunique(), frame["task"].nunique()
        seeds = frame.groupby("arm")["seed"].nunique()
        header.append(f"{n_runs} pre-trained encoders × {n_tasks} tasks; "
                      f"{_range(seeds.min(), seeds.max())} pre-training seed(s) per arm; "
                      f"probe heads: {', '.join(sorted(frame['head'].unique()))}. "
                      "Every number is the test-split metric of the probe chosen on validation.\n")
        _result_sections(writer, frame, plots, graph, layout, log)
    if layout is not None:
        _search_section(writer, layout)
    if tag_figures and graph is not None and layout is not None:
        _tag_sections(writer, graph, layout, log)

    index_md = "\n".join(header) + "\n" + "\n".join(s.markdown() for s in writer.sections)
    atomic_write_text(out / "index.md", index_md)
    from results.html import markdown_to_html

    atomic_write_text(out / "index.html", markdown_to_html(index_md, out, title or "Study report"))
    _write_provenance(out, results_path, study, writer.written)
    return out / "index.md"


# --------------------------------------------------------------------------- sections


def render_all(table) -> dict[str, str]:
    """A :class:`~results.table.Table` in the three file formats."""
    from results.table import to_csv, to_latex, to_markdown

    return {"md": to_markdown(table), "tex": to_latex(table), "csv": to_csv(table)}


def domain_means(frame, arm: Callable[[Any], str]):
    """Rows averaged over the tasks of each domain, per seed, under new arm names.

    ``arm(row)`` names the arm of a results row. Each new row has that name as its ``arm``
    and, as its ``run``, the name with the seed (:func:`harness.labels.with_seed`), so
    that :func:`results.table.build_table` still gives mean ± interval over seeds. A
    domain whose tasks use different metrics reports their plain mean ("mean" metric).
    """
    import pandas as pd

    from harness.labels import with_seed

    if frame.empty:
        return frame
    work = frame.assign(arm_name=[arm(r) for r in frame.itertuples(index=False)])
    per_task = work.groupby(["arm_name", "seed", "domain", "task", "metric"], dropna=False)["value"].mean().reset_index()
    rows = []
    for (name, seed, domain), group in per_task.groupby(["arm_name", "seed", "domain"], sort=True):
        metrics = sorted(set(group["metric"]))
        rows.append({"run": with_seed(name, seed), "arm": name, "seed": seed, "domain": domain, "task": "mean",
                     "metric": metrics[0] if len(metrics) == 1 else "mean", "value": float(group["value"].mean())})
    return pd.DataFrame(rows)


def _result_sections(writer: ReportWriter, frame, plots, graph, layout, log) -> None:
    from results.table import build_table, with_paper

    heads = sorted(frame["head"].unique())
    main_head = "linear-mean" if "linear-mean" in heads else heads[0]

    main = Section("Main comparison", "Rows: pre-trained encoders (data × objective × tag system); columns: "
                   "probe tasks grouped by domain. This is the layout of the paper's main linear-probe table.")
    writer.sections.append(main)
    for head in heads:
        writer.table(main, f"main_{head}", render_all(build_table(frame, head)))

    paper = with_paper(build_table(frame, main_head), only_matched=True)
    section = Section("Published numbers", "The paper's numbers beside this study's, for the arms that "
                      "match a published model by objective and supervision on a paper task; each published "
                      "number cites its source (results/reference/).")
    if paper.rows and any(c.kind == "paper" for (_, c) in paper.cells):
        writer.table(section, "paper", render_all(paper))
    else:
        section.text += ("\n\nNo arm of this study matches a published number: the paper's tasks (FSD50K, "
                         "VGGSound, VoxCeleb2, CREMA-D, MTAT, NSynth) are not among this study's probes.")
    writer.sections.append(section)

    if len(heads) > 1:
        section = Section("Pooling and probe heads", "Each probe head and pooling on the same encoders: "
                          "the mean over the tasks of each domain.")
        means = domain_means(frame, lambda r: f"{r.arm} · {r.head}")
        writer.table(section, "heads", render_all(build_table(means, caption="Probe heads and poolings: mean "
                                                               "test metric over the tasks of each domain.",
                                                               label="tab:heads")))
        writer.sections.append(section)

    sub = frame[frame["head"] == main_head]
    section = Section("Objectives", f"Mean metric per objective and domain (head `{main_head}`): the tasks of a "
                      "domain averaged, then tag systems; intervals over pre-training seeds.")
    means = domain_means(sub, _objective_arm)
    writer.table(section, "objectives", render_all(build_table(
        means, caption="Pre-training objectives: mean test metric over the tasks of each domain.",
        label="tab:objectives")))
    writer.figure(section, "objective_domain", "Objective × domain: mean test metric.",
                  lambda stem: plots.objective_domain_heatmap(sub, stem))
    writer.sections.append(section)

    section = Section("Tag-system size", "Metric against the tag-system size K (UTS Fig. 3). "
                      "The paper finds linear probing and retrieval peak around K = 1.5k–2k and drop at 3k.")
    drawn = writer.figure(section, "tag_system_size", "Metric against tag-system size K, per task; "
                          "dashed: the random encoder.", lambda stem: plots.size_figure(sub, stem))
    if drawn is None:
        section.text += "\n\nNot drawn: the study trains at one tag-system size only."
    else:
        sized = sub[sub["tag_system_size"].notna()]
        means = domain_means(sized, lambda r: f"{_objective_arm(r)} K={int(r.tag_system_size)}")
        writer.table(section, "tag_system_size", render_all(build_table(
            means, caption="Tag-system size: mean test metric over the tasks of each domain, per objective and K.",
            label="tab:tag-system-size")))
    writer.sections.append(section)

    section = Section("Data scaling", "Metric against the number of pre-training clips, per objective "
                      "(CaptionStew's scaling study).")
    if writer.figure(section, "data_scaling", "Mean metric per domain against pre-training clips.",
                     lambda stem: plots.scaling_figure(sub, stem)) is None:
        section.text += "\n\nNot drawn: no objective was trained on two or more data sizes."
    writer.sections.append(section)

    if graph is not None and layout is not None:
        comparisons = _bootstrap_rows(sub, layout, log)
        if comparisons:
            section = Section("Paired bootstrap", "Each arm against the random encoder on the same test clips "
                              "(same pre-training and probe seed): the difference of the metric with its 95% "
                              "percentile interval and two-sided p-value, from 1000 resamples of the test set "
                              "with both arms scored on each resample.")
            writer.table(section, "bootstrap", bootstrap_renderings(comparisons))
            writer.sections.append(section)


def _objective_arm(row) -> str:
    """The objective arm of a results row (a frame's ``itertuples``): the objective, with the
    captions it trained on and its initialisation when the study varies them
    (:func:`harness.labels.objective_arm_label`)."""
    from harness.labels import objective_arm_label

    return objective_arm_label(row._asdict())


def _range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def plain_renderings(head: list[str], cells: list[list[str]], align: str, caption: str, label: str,
                     bold: list[bool] | None = None, bold_column: int = 0, note: str = "") -> dict[str, str]:
    """A table of ready-made text cells as Markdown and LaTeX (booktabs); ``align`` has one
    ``l``/``r`` per column; ``bold[i]`` sets row i's ``bold_column`` in bold."""
    from results.table import latex_escape

    bold = bold or [False] * len(cells)
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    tex = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
           " & ".join(latex_escape(h) for h in head) + " \\\\", "\\midrule"]
    for row, strong in zip(cells, bold):
        shown_md, shown_tex = list(row), [latex_escape(c) for c in row]
        if strong:
            shown_md[bold_column] = f"**{shown_md[bold_column]}**"
            shown_tex[bold_column] = f"\\textbf{{{shown_tex[bold_column]}}}"
        md.append("| " + " | ".join(shown_md) + " |")
        tex.append(" & ".join(shown_tex) + " \\\\")
    if note:
        md += ["", note]
    tex += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}", "\\end{table}"]
    return {"md": "\n".join(md) + "\n", "tex": "\n".join(tex) + "\n"}


def bootstrap_renderings(rows: list[dict]) -> dict[str, str]:
    """The paired-bootstrap comparisons as Markdown, LaTeX (booktabs) and CSV."""
    import csv
    import io

    rows = sorted(rows, key=lambda r: (r["run"], r["domain"], r["task"]))
    head = ["arm", "task", "metric", "Δ vs random", "95% interval", "p", "n test"]
    cells = [[r["run"], r["task"], r["metric"], f"{r['delta']:+.3f}", f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
              f"{r['p_value']:.3f}", str(r["n"])] for r in rows]
    out = plain_renderings(head, cells, "lllrrrr",
                           "Paired bootstrap against the random encoder (1000 resamples of the test set); "
                           "bold: the 95\\% interval excludes 0.", "tab:bootstrap",
                           bold=[r["ci_low"] > 0 or r["ci_high"] < 0 for r in rows], bold_column=3,
                           note="Bold: the interval excludes 0.")
    buffer = io.StringIO()
    fields = ["run", "task", "domain", "metric", "delta", "ci_low", "ci_high", "p_value", "n", "n_boot",
              "value_a", "value_b"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r.get(k)) for k in fields})
    return {**out, "csv": buffer.getvalue()}


def _search_section(writer: ReportWriter, layout) -> None:
    """The trials of the study's hyperparameter search (harness/search.py), best in bold."""
    import pandas as pd

    folder = Path(layout.out) / "search"
    if not (folder / "trials.csv").is_file() or not (folder / "best.json").is_file():
        return
    best = json.loads((folder / "best.json").read_text())
    trials = pd.read_csv(folder / "trials.csv")
    params = [c for c in trials.columns if c.startswith("params_")]
    head = ["trial", *[c[len("params_"):] for c in params], "value", "state"]

    def show(v: Any) -> str:
        return "–" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v))

    cells = [[str(r["number"]), *[show(r[c]) for c in params],
              "–" if pd.isna(r["value"]) else f"{r['value']:.4f}", r["state"]] for _, r in trials.iterrows()]
    search = best["search"]
    tasks = ", ".join(search["tasks"]) or "every classification task"
    section = Section("Hyperparameter search", (
        f"Optuna ({search['sampler']} sampler, seed {search['seed']}): {best['complete']} trials complete, "
        f"{best['failed']} failed, {search['parallel']} at a time. A trial's value is the mean validation "
        f"score on {tasks}" + (f" of the {search['objective']} runs" if search.get("objective") else "")
        + f". The best, trial {best['trial']} at {best['value']:.4f}, set "
        + ", ".join(f"`{k}` = {show(v)}" for k, v in best["params"].items())
        + "; every other table of this report was run with these values."))
    align = "r" + "r" * len(params) + "rl"
    out = plain_renderings(head, cells, align, "Hyperparameter search: every trial; bold: the best.", "tab:search",
                           bold=[int(r["number"]) == best["trial"] for _, r in trials.iterrows()],
                           bold_column=len(head) - 2)
    writer.table(section, "search_trials", {**out, "csv": trials.to_csv(index=False)})
    writer.sections.append(section)


def _bootstrap_rows(frame, layout, log) -> list[dict]:
    """Paired bootstrap of each arm against the random baseline, per task and seed pair."""
    import numpy as np

    from results.stats import paired_bootstrap

    rows = []
    base = frame[frame["objective"] == "random"]
    if base.empty:
        return rows
    store = layout.store_for("probe")

    def predictions(row) -> tuple[Any, Any] | None:
        path = store.path("probe", row.probe_key) / "predictions.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return (data["labels"], data[row.head]) if row.head in data else None

    for row in frame[frame["objective"] != "random"].itertuples(index=False):
        match = base[(base["task"] == row.task) & (base["seed"] == row.seed) & (base["probe_seed"] == row.probe_seed)]
        if match.empty:
            continue
        a, b = predictions(row), predictions(next(match.itertuples(index=False)))
        if a is None or b is None or not np.array_equal(a[0], b[0]):
            continue
        result = paired_bootstrap(a[0], a[1], b[1], metric=row.metric, n_boot=1000, seed=0)
        rows.append({"run": row.run, "task": row.task, "domain": row.domain, "metric": row.metric, **result})
    return rows


def _tag_sections(writer: ReportWriter, graph, layout, log) -> None:
    """Word cloud, long tail and t-SNE coverage of the study's own tags and tag system."""
    from results import figures

    tag_nodes = [n for n in graph if n.stage == "tags" and layout.is_done(n)]
    systems = [n for n in graph if n.stage == "tagsystem" and layout.is_done(n)]
    if not tag_nodes:
        return
    section = Section("Tags and the tag system", "The tags parsed from the captions (UTS Fig. 2a, 2c) and the "
                      "tag system against the AudioSet ontology's labels (Fig. 2b).")
    writer.sections.append(section)
    node = tag_nodes[0]
    freqs = figures.tag_frequencies(layout.store_for("tags").path("tags", node.key) / "tags.jsonl")
    labels = {s.id: _labels(layout, s) for s in systems}  # each tag system's file, read once
    ks = sorted({len(v) for v in labels.values()})
    writer.figure(section, "wordcloud", f"The {min(len(freqs), 200)} most frequent tags, sized by the number of "
                  "clips that carry them.", lambda stem: figures.wordcloud_figure(freqs, stem))
    longtail = writer.figure(section, "longtail", "Tag frequency against rank (log-log); markers: the "
                             "tag-system sizes K.", lambda stem: figures.longtail_figure(freqs, stem, ks=ks))
    if longtail is not None:
        writer.json("longtail", figures.jsonable(longtail))
        shares = "; ".join(f"K = {k}: {100 * v:.1f}%" for k, v in sorted(longtail["head_share"].items(),
                                                                          key=lambda kv: int(kv[0])))
        section.text += (f"\n\n{longtail['n_tags']} distinct tags, {longtail['total']} tag occurrences. "
                         f"Share of occurrences the top K tags cover: {shares}.")
    if not systems:
        return
    largest = max(systems, key=lambda s: len(labels[s.id]))
    try:
        from harness.assets import fetch

        audioset = figures.load_label_file(fetch("audioset-classes"))
    except Exception as exc:  # noqa: BLE001 - no mirror and no network: the rest of the report stands
        section.text += f"\n\nt-SNE coverage not drawn: the AudioSet label list is unavailable ({exc})."
        return
    tags = labels[largest.id]
    log(f"report: t-SNE of {len(tags)} tags and {len(audioset)} AudioSet labels")
    coverage = writer.figure(section, "tsne_coverage", f"t-SNE of the tag system (K = {len(tags)}) and the "
                             f"{len(audioset)} AudioSet labels, embedded with all-MiniLM-L6-v2; right: "
                             "nearest-neighbour cosine distances.",
                             lambda stem: figures.tsne_figure(tags, audioset, stem, tag_name=f"tag system K={len(tags)}"))
    if coverage is not None:
        writer.json("tsne_coverage", figures.jsonable(coverage))
        section.text += "\n\n" + coverage_text(coverage)


def coverage_text(cov: dict) -> str:
    """The coverage numbers of a t-SNE figure as one paragraph."""
    def shares(key: str) -> str:
        return ", ".join(f"{100 * v:.1f}% within {float(d):g}" for d, v in sorted(cov[key].items(), key=lambda kv: float(kv[0])))

    return (f"Coverage (cosine distance d between MiniLM embeddings): of the {cov['n_audioset']} AudioSet labels, "
            f"{shares('audioset_covered')} of some tag; of the {cov['n_tags']} tags, {shares('tags_covered')} of "
            f"some AudioSet label. Median nearest-neighbour distance: AudioSet → tag "
            f"{cov['nn_audioset_to_tag']['q50']:.3f}, tag → AudioSet {cov['nn_tag_to_audioset']['q50']:.3f}.")


def _labels(layout, node) -> list[str]:
    path = layout.store_for("tagsystem").path("tagsystem", node.key) / "labels.json"
    data = json.loads(path.read_text())
    return [data[k] for k in sorted(data, key=int)]


# --------------------------------------------------------------------------- provenance


def _write_provenance(out: Path, results_path, study, written: list[Path]) -> None:
    from importlib import metadata

    from harness.provenance import git_commit, package_versions

    versions = dict(package_versions())
    for name in REPORT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    record = {
        "git_commit": git_commit(),
        "versions": dict(sorted(versions.items())),
        "results": {"path": str(results_path), "sha256": _sha256(Path(results_path))},
        "files": {str(p.relative_to(out)): _sha256(p) for p in sorted(set(written)) if p.is_file()},
    }
    from results.table import CONFIGS

    configs = Path(results_path).with_name(CONFIGS)
    if configs.is_file():  # the resolved configs the results rest on, stored beside them
        record["configs"] = {"path": str(configs), "sha256": _sha256(configs)}
    if study is not None:
        text = study.path.read_text(encoding="utf-8")
        record["study"] = {"name": study.name, "path": str(study.path), "digest": study.digest(),
                           "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}
    atomic_write_text(out / "provenance.json", json.dumps(record, indent=2, sort_keys=True) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
