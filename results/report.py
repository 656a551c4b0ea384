"""``harness report STUDY``: every table and figure of a study, rebuilt from its results.

Writes ``runs/<study>/report/``::

    index.md, index.html      every table and figure; the HTML is one self-contained file: figures
                              inlined, and every table file and PDF it links embedded in the link
    tables/NAME.{md,tex,csv}  Markdown, LaTeX (booktabs; fits a two-column paper) and tidy CSV
    figures/NAME.{png,pdf}    publication style (results/style.py) at two-column width (6.9 in)
    figures/NAME_1col.{png,pdf}  the same figure at one-column width (3.3 in)
    figures/NAME.json         the numbers behind a figure, where it has some (coverage, shares)
    provenance.json           git commit, package versions, study file, results (and configs) digest,
                              file digests

Every file is written with the user's umask (0644 under umask 022). The page states at
its top the study, the commit the results were computed at, the time the last of them
completed (from the results' ``finished_at``, so that the page stays a function of the
results), and the seeds. Every arm is named by its ``arm`` column, and every column by
:func:`harness.labels.column_label`, in every table, CSV, figure and legend.

The report is a pure function of the results and the study's outputs: the same results
give byte-identical tables, figures and pages (provenance.json adds the commit and
versions of the code that wrote the report).
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

from harness.labels import BASELINE_ARM, column_label, metric_label, task_label
from harness.store import atomic_write_text

REPORT_PACKAGES = ["matplotlib", "seaborn", "openTSNE", "wordcloud", "sentence-transformers", "transformers",
                   "scipy", "pyarrow"]
ONE_COLUMN = "_1col"
"""Suffix of a figure's one-column (3.3 in) variant; the plain stem is the two-column one (6.9 in)."""
ALPHA = 0.05
"""Family-wise level of the paired-bootstrap table (Holm)."""


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
            parts.append(f"*{caption}* PDF: [two-column, 6.9 in](figures/{stem}.pdf) · "
                         f"[one-column, 3.3 in](figures/{stem}{ONE_COLUMN}.pdf)\n")
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

    def figure(self, section: Section, stem: str, caption: str | Callable[[Any], str],
               draw: Callable[[Path, Path], Any]) -> Any:
        """Draw a figure with ``draw(two_column_stem, one_column_stem)``, both widths at once;
        show it when it was drawn (returned non-None). ``caption`` may be a function of
        what ``draw`` returned, so that it says exactly what was drawn."""
        base = self.out / "figures" / stem
        result = draw(base, base.with_name(stem + ONE_COLUMN))
        if result is not None:
            section.figures.append((stem, caption(result) if callable(caption) else caption))
            self.written += [self.out / "figures" / f"{name}.{ext}" for name in (stem, stem + ONE_COLUMN)
                             for ext in ("png", "pdf")]
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
    header.append(facts_line(frame, study) + "\n")
    if frame.empty:
        header.append("No results yet: run the study first (`harness run STUDY`).\n")
    else:
        header.append(scope_line(frame) + "\n")
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


def facts_line(frame, study: Any = None) -> str:
    """The first facts of the page: study, commit and completion time of the results, seeds.

    All of it comes from the results (and the study), not from the clock or the working
    tree, so that the page stays a function of its inputs: the commit is the results'
    ``git_commit``, the date the latest ``finished_at`` of their probe jobs.
    """
    parts = []
    name = study.name if study is not None else (str(frame["study"].iloc[0]) if "study" in frame and len(frame)
                                                  else None)
    if name:
        where = f" (`{Path(study.path).name}`, config digest `{study.digest()}`)" if study is not None else ""
        parts.append(f"**Study** `{name}`{where}")
    if "git_commit" in frame and frame["git_commit"].notna().any():
        commits = sorted({str(c) for c in frame["git_commit"].dropna()})
        parts.append("**Commit** " + ", ".join(f"`{c}`" for c in commits))
    if "finished_at" in frame and frame["finished_at"].notna().any():
        parts.append(f"**Completed** {_timestamp(max(str(t) for t in frame['finished_at'].dropna()))}")
    else:
        parts.append("**Completed** not recorded in these results")
    for column, what in (("seed", "Pre-training seeds"), ("probe_seed", "Probe seeds")):
        if column in frame and frame[column].notna().any():
            parts.append(f"**{what}** " + ", ".join(str(int(v)) for v in sorted(frame[column].dropna().unique())))
    return " · ".join(parts) if parts else "No results."


def _timestamp(text: str) -> str:
    """``2026-12-07T13:41:02+0000`` -> ``2026-12-07 13:41 UTC`` (other offsets kept as they are)."""
    from datetime import datetime, timezone

    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return text
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def scope_line(frame) -> str:
    """What the results hold: trained arms, the random encoder, tasks, seeds, heads."""
    trained = frame[frame["objective"] != BASELINE_ARM]
    n_arms, n_tasks = trained["arm"].nunique(), frame["task"].nunique()
    seeds = frame.groupby("arm")["seed"].nunique()
    base = frame[frame["objective"] == BASELINE_ARM]["arm"].nunique()
    reference = f" and {'the randomly initialised encoder' if base == 1 else f'{base} random encoders'} " \
                f"(arm `{BASELINE_ARM}`)" if base else ""
    return (f"{n_arms} pre-trained arm{'s' if n_arms != 1 else ''}{reference}, probed on {n_tasks} "
            f"task{'s' if n_tasks != 1 else ''}; {_range(seeds.min(), seeds.max())} pre-training seed(s) per arm; "
            f"probe heads: {', '.join(sorted(frame['head'].unique()))}. Every number is the test-split metric of "
            "the probe chosen on validation; an arm has one name in every table, figure and file.")


# --------------------------------------------------------------------------- sections


def render_all(table) -> dict[str, str]:
    """A :class:`~results.table.Table` in the three file formats."""
    from results.table import to_csv, to_latex, to_markdown

    return {"md": to_markdown(table), "tex": to_latex(table), "csv": to_csv(table)}


def domain_means(frame, arm: Callable[[Any], str] | None = None):
    """Rows averaged over the tasks of each domain, per seed, under arm names.

    ``arm(row)`` names the arm of a results row (default: its ``arm`` column). Each new
    row has that name as its ``arm`` and, as its ``run``, the name with the seed
    (:func:`harness.labels.with_seed`), so that :func:`results.table.build_table` still
    gives mean ± interval over seeds. A domain whose tasks use different metrics reports
    their plain mean ("mean" metric).
    """
    import pandas as pd

    from harness.labels import with_seed

    if frame.empty:
        return frame
    names = [arm(r) for r in frame.itertuples(index=False)] if arm is not None else list(frame["arm"])
    work = frame.assign(arm_name=names)
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

    main = Section("Main comparison", "Rows: arms (data × objective × tag system, named as in every other table "
                   "and figure); columns: probe tasks grouped by domain, with each task's test-set size and chance "
                   "level in the last rows. This is the layout of the paper's main linear-probe table.")
    writer.sections.append(main)
    for head in heads:
        writer.table(main, f"main_{head}", render_all(build_table(
            frame, head, caption=f"Frozen-encoder probes ({head}): test metric per task, tasks grouped by domain.")))

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
    metric = " / ".join(metric_label(m) for m in sorted(set(sub["metric"])))
    section = Section("Objectives", f"Each arm's mean {metric} over the tasks of each domain (head `{main_head}`), "
                      "as a table and as the difference from the random encoder; intervals over pre-training seeds "
                      "where there are several.")
    writer.table(section, "objectives", render_all(build_table(
        domain_means(sub), caption=f"Arms by domain: mean test {metric} over the tasks of each domain.",
        label="tab:objectives")))
    writer.figure(section, "objective_domain", lambda r: heatmap_caption(r, metric),
                  lambda stem, one: plots.objective_domain_heatmap(sub, stem, one_column=one))
    writer.sections.append(section)

    section = Section("Tag-system size", "Metric against the tag-system size K (UTS Fig. 3). "
                      "The paper finds linear probing and retrieval peak around K = 1.5k–2k and drop at 3k.")
    drawn = writer.figure(section, "tag_system_size", lambda r: line_caption(r, metric, "the tag-system size K"),
                          lambda stem, one: plots.size_figure(sub, stem, one_column=one))
    if drawn is None:
        section.text += "\n\nNot drawn: the study trains at one tag-system size only."
    else:
        sized = sub[sub["tag_system_size"].notna()]
        writer.table(section, "tag_system_size", render_all(build_table(
            domain_means(sized), caption=f"Tag-system size: mean test {metric} over the tasks of each domain, per "
                                         "arm (each arm is one objective at one K).",
            label="tab:tag-system-size")))
    if writer.figure(section, "tag_system_size_language",
                     language_caption,
                     lambda stem, one: plots.language_size_figure(frame, stem, main_head, one_column=one)) is not None:
        section.text += ("\n\nThe retrieval and captioning panels of UTS Fig. 3: a text side (retrieval, mean R@1 of "
                         "both directions) or a decoder (captioning, greedy CIDEr-D) trained on each frozen encoder, "
                         "beside the linear probe (head `" + main_head + "`, the mean over its tasks).")
    writer.sections.append(section)

    section = Section("Data scaling", "Metric against the number of pre-training clips "
                      "(CaptionStew's scaling study).")
    if writer.figure(section, "data_scaling", lambda r: line_caption(r, metric, "the number of pre-training clips"),
                     lambda stem, one: plots.scaling_figure(sub, stem, one_column=one)) is None:
        section.text += "\n\nNot drawn: no objective was trained on two or more data sizes."
    else:  # the figure's points as a table: every arm (objective, initialisation) at every data size
        scaled = sub[sub["data_size"].notna()] if "data_size" in sub else sub.iloc[:0]
        writer.table(section, "data_scaling", render_all(build_table(
            domain_means(scaled), caption=f"Data scaling: mean test {metric} over the tasks of each domain, per arm "
                                          "(one objective and initialisation at one data size N).",
            label="tab:data-scaling")))
    writer.sections.append(section)

    if graph is not None and layout is not None:
        comparisons = _bootstrap_rows(sub, layout, log)
        if comparisons:
            from results.stats import REPORT_RESAMPLES

            comparisons = with_holm(comparisons)
            section = Section("Paired bootstrap", (
                f"Each arm against the random encoder on the same test clips (same pre-training and probe "
                f"seed): the difference of the metric, its 95% percentile interval and a two-sided p-value from "
                f"{REPORT_RESAMPLES:,} resamples of the test set, both arms scored on each resample; p-values "
                f"Holm-adjusted over the {len(comparisons)} comparisons of the table.\n\n"
                + bootstrap_summary(comparisons)))
            writer.table(section, "bootstrap", bootstrap_renderings(comparisons))
            writer.sections.append(section)


def heatmap_caption(result: dict, metric: str) -> str:
    if result.get("mode") == "difference":
        return (f"Each arm's mean test {metric} over the tasks of a domain minus the random encoder's, on a "
                "diverging scale centred at 0 (red: above random; blue: below); the last row gives the random "
                "encoder's own mean. Arms as in the tables.")
    return (f"Each arm's mean test {metric} over the tasks of a domain; the last row, where present, gives the "
            "chance level. Arms as in the tables.")


def language_caption(result: dict) -> str:
    """The caption of the language panels against K (UTS Fig. 3), from what they drew."""
    series = sorted({s for lines in result["series"].values() for s in lines})
    text = (f"Against the tag-system size K (log axis), one panel each: {', '.join(result['series'])} (test, mean "
            f"over the tasks); one line per arm without its K ({', '.join(series)})")
    if result.get("baselines"):
        text += "; dashed grey: the random encoder"
    return text + ". Each panel has its own y-axis."


def line_caption(result: dict, metric: str, x: str) -> str:
    """The caption of a size or scaling figure, from what it drew."""
    series = sorted({s for lines in result["series"].values() for s in lines})
    band = {"seeds": "95% Student-t interval over pre-training seeds",
            "test clips": "95% interval of test-set sampling (one seed: binomial, normal approximation, "
                          "from each task's test-set size)"}.get(result.get("band") or "", "")
    text = (f"Mean test {metric} over each domain's tasks against {x} (log axis), one panel per domain, one "
            f"line per arm without its {'K' if 'tag' in x else 'data size'} ({', '.join(series)})")
    text += f"; shaded: the {band}" if band else ""
    if result.get("baselines"):
        text += "; dashed grey: the random encoder, with its interval"
    return text + (". Panels share the y-axis; lines are nudged apart horizontally by at most a few hundredths "
                   "of a decade, so that equal values stay visible.")


def _range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def plain_renderings(head: list[str], cells: list[list[str]], align: str, caption: str, label: str,
                     bold: list[bool] | None = None, bold_column: int = 0, note: str = "") -> dict[str, str]:
    """A table of ready-made text cells as Markdown and LaTeX (booktabs); ``align`` has one
    ``l``/``r`` per column; ``bold[i]`` sets row i's ``bold_column`` in bold. The LaTeX has
    its caption above, signed numbers in math (a real minus), and goes into ``table`` or
    ``table*`` and is shrunk to the line width only where it would not fit; Markdown
    numbers get a real minus sign too. ``note`` goes under both."""
    from results.table import (FIT_OPEN, _latex_width, latex_escape, latex_float, latex_float_env,
                               latex_float_open, minus)

    bold = bold or [False] * len(cells)
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    widths = [_latex_width([h] + [row[j] for row in cells]) for j, h in enumerate(head)]
    env = latex_float_env(widths)
    tex = latex_float_open(env, latex_escape(caption), label) + [
        FIT_OPEN, f"\\begin{{tabular}}{{{align}}}", "\\toprule",
        " & ".join(latex_escape(h) for h in head) + " \\\\", "\\midrule"]
    for row, strong in zip(cells, bold):
        shown_md, shown_tex = [minus(c) for c in row], [latex_float(c) for c in row]
        if strong:
            shown_md[bold_column] = f"**{shown_md[bold_column]}**"
            shown_tex[bold_column] = f"\\textbf{{{shown_tex[bold_column]}}}"
        md.append("| " + " | ".join(shown_md) + " |")
        tex.append(" & ".join(shown_tex) + " \\\\")
    if note:
        md += ["", note]
    tex += ["\\bottomrule", "\\end{tabular}", "}"]
    if note:
        tex += ["\\par\\smallskip", "{\\footnotesize " + latex_escape(note) + "\\par}"]
    tex += [f"\\end{{{env}}}"]
    return {"md": "\n".join(md) + "\n", "tex": "\n".join(tex) + "\n"}


def with_holm(rows: list[dict]) -> list[dict]:
    """The comparisons with ``p_holm``: Holm's adjustment over all of them (one family: the table)."""
    from results.stats import holm

    adjusted = holm([r["p_value"] for r in rows])
    return [{**r, "p_holm": p} for r, p in zip(rows, adjusted)]


BOOTSTRAP_FIELDS = ["arm", "seed", "task", "domain", "metric", "delta", "ci_low", "ci_high", "p_value", "p_holm",
                    "n_test", "n_boot", "value_a", "value_b"]
"""Columns of ``bootstrap.csv``; their display names come from :func:`harness.labels.column_label`."""


def _sorted_comparisons(rows: list[dict]) -> list[dict]:
    from results.table import _domain_key, _natural_key

    return sorted(rows, key=lambda r: (_natural_key(r["arm"]), r.get("seed", 0), _domain_key(r["domain"]),
                                       _natural_key(r["task"])))


def bootstrap_renderings(rows: list[dict], alpha: float = ALPHA) -> dict[str, str]:
    """The paired-bootstrap comparisons as Markdown, LaTeX (booktabs) and CSV.

    ``rows``: one dict per comparison with ``arm, seed, task, domain, metric, delta,
    ci_low, ci_high, p_value, n_test, n_boot, value_a, value_b`` and (added when absent)
    ``p_holm``. Bold: Holm-adjusted p below ``alpha``.
    """
    import csv
    import io

    from results.stats import P_VALUE_DEFINITION, format_p
    from results.table import signed

    if rows and "p_holm" not in rows[0]:
        rows = with_holm(rows)
    rows = _sorted_comparisons(rows)
    seeds = sorted({r.get("seed") for r in rows}, key=str)
    show_seed = len(seeds) > 1
    keys = ["arm"] + (["seed"] if show_seed else []) + ["task", "delta", "interval", "p_value", "p_holm", "n_test"]
    head = [column_label(k) for k in keys]
    cells = []
    for r in rows:
        n_boot = r.get("n_boot")
        cells.append([r["arm"]] + ([str(r.get("seed"))] if show_seed else []) + [
            task_label(r["task"]), signed(r["delta"], 3), f"[{signed(r['ci_low'], 3)}, {signed(r['ci_high'], 3)}]",
            format_p(r["p_value"], n_boot), _p_holm_text(r), str(r["n_test"])])
    n_boot = max((int(r.get("n_boot") or 0) for r in rows), default=0)
    metrics = " / ".join(sorted({metric_label(r["metric"]) for r in rows}))
    significant = sum(1 for r in rows if r["p_holm"] < alpha)
    note = (f"Δ: arm − random encoder in test {metrics} on the same clips; 95% interval: percentile interval of "
            f"{n_boot:,} paired resamples (not adjusted). {P_VALUE_DEFINITION} p (Holm): Holm's step-down "
            f"adjustment over the {len(rows)} comparisons of this table (family-wise error; '< x' where the raw p is at "
            f"its floor); bold: p (Holm) < "
            f"{alpha:g} ({significant} of {len(rows)}). n test: test clips."
            + ("" if show_seed else f" Pre-training seed {seeds[0]}." if seeds and seeds[0] is not None else ""))
    out = plain_renderings(
        head, cells, "l" + ("r" if show_seed else "") + "lrrrrr",
        f"Paired bootstrap of each arm against the random encoder ({n_boot:,} resamples of the test set; "
        f"p-values Holm-adjusted over the {len(rows)} comparisons).", "tab:bootstrap",
        bold=[r["p_holm"] < alpha for r in rows], bold_column=keys.index("delta"), note=note)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=BOOTSTRAP_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r.get(k)) for k in BOOTSTRAP_FIELDS})
    return {**out, "csv": buffer.getvalue()}


def bootstrap_summary(rows: list[dict], alpha: float = ALPHA) -> str:
    """One paragraph of claims, each read off the bootstrap table: which differences from
    the random encoder are significant after Holm's correction, in which direction."""
    from results.table import minus, signed

    rows = _sorted_comparisons(rows if not rows or "p_holm" in rows[0] else with_holm(rows))
    above = [r for r in rows if r["p_holm"] < alpha and r["delta"] > 0]
    below = [r for r in rows if r["p_holm"] < alpha and r["delta"] < 0]

    def listed(items: list[dict]) -> str:
        return "; ".join(f"{r['arm']} on {task_label(r['task'])} ({minus(signed(r['delta'], 3))}, p (Holm) "
                         f"{_p_holm_text(r)})" for r in items)

    total, found = len(rows), len(above) + len(below)
    text = (f"Of the {total} differences from the random encoder, {found} "
            f"{'is' if found == 1 else 'are'} significant at {alpha:g} after Holm's correction")
    if not found:
        return text + ": no arm is separated from the random encoder on any task at this test-set size."
    if above and below:
        text += f": {len(above)} above random ({listed(above)}) and {len(below)} below it ({listed(below)})."
    else:
        text += f", all {'above' if above else 'below'} random: {listed(above or below)}."
    rest = total - found
    if rest:
        text += (f" The other {rest} {'is' if rest == 1 else 'are'} not separated from the random encoder at "
                 "this test-set size.")
    return text


def _p_holm_text(row: dict) -> str:
    """The Holm-adjusted p as text; an upper bound ("< x") where the raw p sits at its floor
    1/(B+1) (no resample as extreme), since the adjusted value is then computed from a bound."""
    from results.stats import format_p, p_floor

    n_boot = row.get("n_boot")
    text = format_p(row["p_holm"])
    if n_boot and row["p_value"] <= p_floor(int(n_boot)) * (1 + 1e-9) and row["p_holm"] < 1.0 and "<" not in text:
        return f"< {text}"
    return text


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

    from results.stats import REPORT_RESAMPLES, paired_bootstrap

    rows = []
    base = frame[frame["objective"] == BASELINE_ARM]
    if base.empty:
        return rows
    store = layout.store_for("probe")

    def predictions(row) -> tuple[Any, Any] | None:
        path = store.path("probe", row.probe_key) / "predictions.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return (data["labels"], data[row.head]) if row.head in data else None

    for row in frame[frame["objective"] != BASELINE_ARM].itertuples(index=False):
        match = base[(base["task"] == row.task) & (base["seed"] == row.seed) & (base["probe_seed"] == row.probe_seed)]
        if match.empty:
            continue
        a, b = predictions(row), predictions(next(match.itertuples(index=False)))
        if a is None or b is None or not np.array_equal(a[0], b[0]):
            continue
        result = paired_bootstrap(a[0], a[1], b[1], metric=row.metric, n_boot=REPORT_RESAMPLES, seed=0)
        n_test = result.pop("n")
        rows.append({"arm": row.arm, "seed": int(row.seed), "task": row.task, "domain": row.domain,
                     "metric": row.metric, **result, "n_test": n_test})
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
    writer.figure(section, "wordcloud", wordcloud_caption,
                  lambda stem, one: figures.wordcloud_figure(freqs, stem, one_column=one))
    longtail = writer.figure(section, "longtail", longtail_caption,
                             lambda stem, one: figures.longtail_figure(freqs, stem, ks=ks, one_column=one))
    if longtail is not None:
        writer.json("longtail", figures.jsonable(longtail))
        shares = "; ".join(f"the top {k} tags (K = {k}) cover {100 * v:.1f}%" for k, v in
                           sorted(longtail["head_share"].items(), key=lambda kv: int(kv[0])))
        section.text += (f"\n\n{longtail['n_tags']} distinct tags, {longtail['total']} tag occurrences (a tag "
                         f"counted once per clip that carries it). Of all occurrences, {shares}.")
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
    name = f"tag system K={len(tags)}"
    coverage = writer.figure(section, "tsne_coverage", tsne_caption,
                             lambda stem, one: figures.tsne_figure(tags, audioset, stem, tag_name=name, one_column=one))
    if coverage is not None:
        writer.json("tsne_coverage", figures.jsonable(coverage))
        section.text += "\n\n" + coverage_text(coverage)


def wordcloud_caption(result: dict) -> str:
    n, total = result["n_words"], result["n_tags"]
    drawn = f"All {total} tags" if n == total else f"The {n} most frequent of the {total} tags"
    small = result.get("one_column", {}).get("n_words")
    extra = f" (the one-column version holds the {small} most frequent)" if small is not None and small != n else ""
    return (f"{drawn} parsed from the captions{extra}, each sized by the number of clips that carry it; the "
            "layout stops at the first tag that no longer fits at 7 pt. One colour: colour carries no information.")


def longtail_caption(result: dict) -> str:
    marks = ", ".join(str(k) for k in result["ks_marked"])
    text = (f"Clips per tag against the tag's frequency rank, on log–log axes, for the {result['n_tags']} distinct "
            f"tags ({result['total']} occurrences, {result['singletons']} tags in a single clip).")
    if marks:
        text += (f" Dashed vertical lines: the tag-system sizes K = {marks}; the legend gives the share of all tag "
                 "occurrences that the K most frequent tags cover.")
    return text


def tsne_caption(result: dict) -> str:
    labelled = "; ".join(f"{a} → {t} (d = {dist:.2f})" for a, t, dist in result.get("labelled", []))
    return (f"Map panel: t-SNE (openTSNE, cosine, perplexity {result['tsne']['perplexity']:g}, "
            f"{result['tsne']['early_exaggeration_iter'] + result['tsne']['n_iter']} iterations, seed "
            f"{result['seed']}) of the {result['n_tags']} tags (blue circles) and the {result['n_audioset']} AudioSet "
            "labels (orange triangles), all embedded with all-MiniLM-L6-v2; a few AudioSet classes with a tag within "
            "cosine distance 0.3, far apart on the map, are written with their nearest tag (both ringed, joined by "
            f"a dotted line){': ' + labelled if labelled else ''}. Distance panel: the share of labels whose nearest "
            "neighbour in the other set lies within cosine distance d (blue: tag → nearest AudioSet label; orange: "
            "AudioSet label → nearest tag); dots at d = " + ", ".join(f"{d:g}" for d in result["d"]) + ".")


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
