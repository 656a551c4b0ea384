"""The results table as paper tables: a :class:`Table` model and its renderers.

* :func:`load_results` reads ``runs/<study>/results.parquet``; :func:`load_configs` the
  resolved configs stored once each beside it (``configs.parquet``); :func:`pivot` is the
  plain mean-per-(run, task) view.
* :func:`build_table` turns the rows of one probe head into a :class:`Table`: rows are
  *arms* (the ``arm`` column: the label a run's seeds share, e.g. "data × objective";
  :mod:`harness.labels` builds it), columns
  are tasks grouped by domain (speech, music, environment, then any other, A–Z), each
  cell the mean over pre-training seeds ± the Student-t half-width, with its number of
  seeds and a bold flag (:func:`results.stats.best_cells`).
* :func:`with_paper` makes the comparison layout: per task the columns "paper", "this run"
  and "Δ", each paper number footnoted with its source.
* :func:`to_markdown`, :func:`to_latex` (booktabs) and :func:`to_csv` (tidy, one row per
  cell) render a table. They are deterministic: the same frame gives byte-identical text
  (fixed float formats, sorted rows and columns, no timestamps).

Every rendering says how many pre-training seeds it rests on: a "seeds" column per row
and a note line.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.labels import METRIC_SHORT, column_label, domain_label, metric_label, task_label
from results.stats import bold_can_apply, bold_rule_text, column_bold, summarise

__all__ = [
    "DOMAIN_ORDER", "KIND_LABELS", "METRIC_LABELS", "LOWER_IS_BETTER", "Cell", "Column", "Table",
    "load_results", "load_configs", "row_config", "arms", "pivot", "arm_label", "build_table", "build_tables",
    "with_paper", "to_markdown", "to_latex", "to_csv", "latex_escape", "latex_float", "minus",
    "COLUMN_WIDTH_PT", "TEXT_WIDTH_PT",
]

DOMAIN_ORDER = ["speech", "music", "environment"]
KIND_LABELS = {"paper": "paper", "run": "this run", "delta": "Δ"}
"""Sub-column titles of the comparison layout, in their order."""
METRIC_LABELS = METRIC_SHORT
"""Short metric names for column headers (:data:`harness.labels.METRIC_SHORT`)."""
LOWER_IS_BETTER = frozenset({"eer", "wer", "cer", "error", "loss"})
"""Metrics where a smaller value is better (all others: larger is better)."""

MISSING = "–"
COLUMN_WIDTH_PT = 240.0
"""About the ``\\columnwidth`` of a two-column paper (IEEE/CVPR 241 pt, ACL 219 pt, article 229 pt):
a LaTeX table wider than this by estimate goes into a ``table*`` float spanning both columns."""
TEXT_WIDTH_PT = 496.0
"""About the ``\\textwidth`` of a two-column paper (CVPR 496 pt, article 469 pt, ACL 455 pt)."""
CONFIGS = "configs.parquet"
"""The configs side table beside ``results.parquet`` (written by :func:`harness.collect.write_results`)."""
_SEED_SUFFIX = re.compile(r"\s+s-?\d+$")


# --------------------------------------------------------------------------- reading

def load_results(path: str | Path):
    """The results table (``results.parquet``) as a pandas frame.

    A table written before results had an ``arm`` column gets one (:func:`arms`), so that
    every reader can group by it.
    """
    import pandas as pd

    frame = pd.read_parquet(path)
    if "arm" not in frame.columns and "run" in frame.columns:
        frame["arm"] = arms(frame)
    return frame


def load_configs(results_path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The resolved configs behind a results table, keyed by ``(stage, key)``: ``("pretrain",
    run_id)`` and ``("probe", probe_key)`` for the columns of the same names.

    They are read from ``configs.parquet`` beside ``results_path``, each stored once; for
    a results table written before that file, from its ``config`` column (one JSON object
    ``{"pretrain": ..., "probe": ...}`` per row).
    """
    import json

    import pandas as pd

    side = Path(results_path).with_name(CONFIGS)
    if side.is_file():
        frame = pd.read_parquet(side)
        return {(str(r.stage), str(r.key)): json.loads(r.config) for r in frame.itertuples(index=False)}
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    frame = pd.read_parquet(results_path)
    if "config" in frame.columns:
        rows = frame[["run_id", "probe_key", "config"]].drop_duplicates()
        for run_id, probe_key, text in rows.itertuples(index=False):
            config = json.loads(text)
            configs[("pretrain", str(run_id))] = config["pretrain"]
            configs[("probe", str(probe_key))] = config["probe"]
    return configs


def row_config(configs: Mapping[tuple[str, str], Mapping[str, Any]], row: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config of one results row, ``{"pretrain": ..., "probe": ...}``, from
    :func:`load_configs` by the row's ``run_id`` and ``probe_key``."""
    return {"pretrain": configs[("pretrain", str(row["run_id"]))], "probe": configs[("probe", str(row["probe_key"]))]}


def pivot(frame, head: str | None = None):
    """Rows: runs; columns: tasks (grouped by domain); values: mean over probe seeds of the test metric."""
    if head is not None:
        frame = frame[frame["head"] == head]
    tasks = (frame[["domain", "task"]].drop_duplicates()
             .assign(order=lambda d: d["domain"].map({d: i for i, d in enumerate(DOMAIN_ORDER)}).fillna(99))
             .sort_values(["order", "task"])["task"].tolist())
    grouped = frame.groupby(["run", "task"], sort=True)["value"].mean().unstack("task")
    return grouped.reindex(columns=tasks)


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Cell:
    """One cell: ``mean`` ± ``ci`` (half-width; NaN without an interval) over ``n`` seeds."""

    mean: float = math.nan
    ci: float = math.nan
    n: int = 0
    bold: bool = False
    note: int | None = None  # footnote number (a paper number's source)


@dataclass(frozen=True, order=True)
class Column:
    """A task column; ``kind`` is ``run`` (this study), ``paper`` or ``delta`` (run − paper)."""

    domain: str
    task: str
    metric: str
    kind: str = "run"


@dataclass(frozen=True)
class Table:
    """A results table of one probe head; see the module docstring.

    ``cells`` maps ``(row, column)`` to a :class:`Cell` (absent: no result, shown "–").
    ``row_info`` holds each arm's grid coordinates (objective, source, tag_system, ...);
    ``row_labels`` optional display names; ``sources`` the footnote texts (number i+1).
    """

    rows: tuple[str, ...]
    columns: tuple[Column, ...]
    cells: Mapping[tuple[str, Column], Cell]
    head: str = ""
    caption: str = ""
    label: str = ""
    confidence: float = 0.95
    without_interval: str = "none"
    row_info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    row_labels: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    column_info: Mapping[Column, Mapping[str, Any]] = field(default_factory=dict)
    """Per task column: ``n_test`` (test-set size; a ``(low, high)`` pair where arms differ)
    and ``chance`` (the metric of a chance-level predictor), where the results give them."""

    def cell(self, row: str, column: Column) -> Cell | None:
        return self.cells.get((row, column))

    @property
    def comparison(self) -> bool:
        """Whether the table has paper / Δ columns."""
        return any(c.kind != "run" for c in self.columns)

    def row_label(self, row: str) -> str:
        return self.row_labels.get(row, row)

    def row_seeds(self, row: str) -> tuple[int, int]:
        """(fewest, most) pre-training seeds among the row's own cells; (0, 0) if none."""
        ns = [c.n for (r, col), c in self.cells.items() if r == row and col.kind == "run" and c.n > 0]
        return (min(ns), max(ns)) if ns else (0, 0)

    def seed_counts(self) -> list[int]:
        """The distinct numbers of pre-training seeds behind the table's own cells."""
        return sorted({c.n for (_, col), c in self.cells.items() if col.kind == "run" and c.n > 0})

    @property
    def one_metric(self) -> str | None:
        """The metric of every task column, when they share one (then named once, in the note)."""
        metrics = {c.metric for c in self.columns}
        return next(iter(metrics)) if len(metrics) == 1 else None

    def task_label(self, column: Column, with_metric: bool | None = None) -> str:
        """A task's display name (:func:`harness.labels.task_label`: its short name under its
        domain header, when those are unique within the domain, else its last path
        component, else its id), with the metric when the columns differ in it."""
        same = [c for c in self.columns if c.domain == column.domain]
        short = {task_label(c.task, c.domain) for c in same}
        leaves = {c.task.rsplit("/", 1)[-1] for c in self.columns}
        tasks = {c.task for c in self.columns}
        if len(short) == len({c.task for c in same}):
            name = task_label(column.task, column.domain)
        else:
            name = column.task.rsplit("/", 1)[-1] if len(leaves) == len(tasks) else column.task
        if with_metric is None:
            with_metric = self.one_metric is None
        return f"{name} ({metric_label(column.metric, short=True)})" if with_metric else name

    def test_sizes(self, column: Column) -> str:
        """The test-set size of a task column as text (``"72"``, or ``"40–48"``), or ``""``."""
        n = self.column_info.get(replace(column, kind="run"), {}).get("n_test")
        if n is None:
            return ""
        low, high = n if isinstance(n, tuple) else (n, n)
        return f"{low}" if low == high else f"{low}–{high}"

    def chance(self, column: Column) -> float | None:
        """The chance level of a task column, or None."""
        value = self.column_info.get(replace(column, kind="run"), {}).get("chance")
        return None if value is None or not math.isfinite(value) else float(value)

    def notes(self) -> list[str]:
        """The note lines under the table: seeds, intervals, bold rule, comparison, sources."""
        counts = self.seed_counts()
        level = f"{self.confidence:.0%}"
        if not counts:
            lines = ["No results."]
        elif counts == [1]:
            lines = ["Rests on 1 pre-training seed per cell: single runs, no confidence intervals."]
        elif len(counts) == 1:
            lines = [f"Rests on {counts[0]} pre-training seeds per cell: mean ± half-width of the {level} "
                     "Student-t confidence interval."]
        else:
            lines = [f"Rests on {counts[0]}–{counts[-1]} pre-training seeds per cell (column \"seeds\"): mean ± "
                     f"half-width of the {level} Student-t confidence interval where a cell has 2 or more seeds."]
        if self.one_metric is not None and self.columns:
            lines.append(f"Metric: {metric_label(self.one_metric)} on the test split, of the probe chosen on "
                         "validation.")
        if any(self.test_sizes(c) for c in self.columns):
            extra = ("; chance: the metric of a chance-level predictor (accuracy: 1/classes; mAP: the "
                     "classes' mean test prevalence)" if any(self.chance(c) is not None for c in self.columns)
                     else "")
            lines.append(f"n test: test clips per task{extra}.")
        if counts and bold_can_apply(counts, self.without_interval):
            higher = all(c.metric not in LOWER_IS_BETTER for c in self.columns)
            lines.append(bold_rule_text(self.without_interval, self.confidence, higher))
        if self.comparison:
            lines.append("paper: the published number (its source in the footnote); this run: this study; "
                         "Δ = this run − paper, ± this run's interval. – : no matching number.")
        lines += [f"[{i}] {s}" for i, s in enumerate(self.sources, 1)]
        return lines


# --------------------------------------------------------------------------- building

def arms(frame):
    """Each row's arm: the ``arm`` column. Rows without one (a results table written before
    the column, or a frame built by hand with ``run`` labels only) fall back to
    :func:`arm_label` of their ``run``."""
    if "arm" in frame.columns and (frame["arm"].notna().all() or "run" not in frame.columns):
        return frame["arm"]
    legacy = frame["run"].map(arm_label)
    return legacy if "arm" not in frame.columns else frame["arm"].where(frame["arm"].notna(), legacy)


def arm_label(run: str) -> str:
    """A run label without its `` s<seed>`` suffix: the arm that several seeds share.

    For results tables written before the ``arm`` column only; read ``arm`` (:func:`arms`)
    instead of parsing labels.
    """
    return _SEED_SUFFIX.sub("", str(run))


def _natural_key(text: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(text)) if p != "")


def _domain_key(domain: str) -> tuple:
    return (DOMAIN_ORDER.index(domain), "") if domain in DOMAIN_ORDER else (len(DOMAIN_ORDER), str(domain))


def _column_key(column: Column) -> tuple:
    return (_domain_key(column.domain), _natural_key(column.task), _natural_key(column.metric),
            list(KIND_LABELS).index(column.kind))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "table"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


_INFO_COLUMNS = ("objective", "source", "tag_system", "tag_system_size", "encoder")


def build_table(frame, head: str | None = None, *, confidence: float = 0.95, without_interval: str = "none",
                caption: str | None = None, label: str | None = None) -> Table:
    """The :class:`Table` of one probe head from a results frame.

    Args:
        frame: the results table (:func:`load_results`), one row per (run, task, head,
            probe seed); columns ``arm, run, seed, task, domain, metric, head, value`` are
            used (``arm`` where present, see :func:`arms`), and the grid coordinates
            ``objective, source, tag_system, ...`` when present.
        head: the probe head (e.g. ``"linear-mean"``); may be omitted when there is one.
        confidence: level of the Student-t intervals.
        without_interval: what bold means where there is no interval (one seed); see
            :func:`results.stats.best_cells` (``"none"``: no bold; ``"highest"``).
    """
    if head is None:
        heads = sorted(frame["head"].dropna().unique()) if "head" in frame.columns else []
        if len(heads) > 1:
            raise ValueError(f"the results hold several heads {heads}; choose one")
        head = heads[0] if heads else ""
    elif "head" in frame.columns:
        frame = frame[frame["head"] == head]
    frame = frame[frame["value"].notna()].copy()
    frame["arm"] = arms(frame)
    unit = "seed" if "seed" in frame.columns else None
    summary = summarise(frame, ["arm", "domain", "task", "metric"], unit=unit, confidence=confidence) \
        if len(frame) else None

    columns = sorted({Column(str(d), str(t), str(m)) for d, t, m in
                      frame[["domain", "task", "metric"]].drop_duplicates().itertuples(index=False)}, key=_column_key)
    rows = sorted({str(a) for a in frame["arm"]}, key=_natural_key)
    values: dict[tuple[str, Column], tuple[float, float, int]] = {}
    if summary is not None:
        for s in summary.itertuples(index=False):
            values[(s.arm, Column(str(s.domain), str(s.task), str(s.metric)))] = (float(s.mean), float(s.ci), int(s.n))
    cells: dict[tuple[str, Column], Cell] = {}
    for column in columns:
        column_values = {row: values[(row, column)] for row in rows if (row, column) in values}
        bold = column_bold(column_values, column.metric not in LOWER_IS_BETTER, without_interval)
        for row, (mean, ci, n) in column_values.items():
            cells[(row, column)] = Cell(mean, ci, n, bold[row])

    info: dict[str, dict[str, Any]] = {}
    ordered = frame.sort_values(["arm", "run"], kind="stable")
    present = [c for c in _INFO_COLUMNS if c in frame.columns]
    for arm, group in ordered.groupby("arm", sort=True):
        first = group.iloc[0]
        info[str(arm)] = {c: _plain(first[c]) for c in present}

    column_info = _column_info(frame, columns)
    if caption is None:
        caption = f"Frozen-encoder probes, head {head}: test metric per task, tasks grouped by domain."
    return Table(rows=tuple(rows), columns=tuple(columns), cells=cells, head=str(head), caption=caption,
                 label=label if label is not None else f"tab:probe-{_slug(head)}", confidence=confidence,
                 without_interval=without_interval, row_info=info, column_info=column_info)


def _column_info(frame, columns: Iterable[Column]) -> dict[Column, dict[str, Any]]:
    """Test-set size and chance level per task column, from the ``n_test`` and ``chance``
    (or ``n_classes``, for accuracy) columns of the results, where present."""
    out: dict[Column, dict[str, Any]] = {}
    for column in columns:
        part = frame[(frame["task"] == column.task) & (frame["metric"] == column.metric)]
        info: dict[str, Any] = {}
        if "n_test" in part.columns:
            sizes = sorted({int(v) for v in part["n_test"].dropna()})
            if sizes:
                info["n_test"] = sizes[0] if len(sizes) == 1 else (sizes[0], sizes[-1])
        chance = math.nan
        if "chance" in part.columns and part["chance"].notna().any():
            chance = float(part["chance"].dropna().mean())
        elif "n_classes" in part.columns and column.metric == "accuracy" and part["n_classes"].notna().any():
            chance = 1.0 / float(part["n_classes"].dropna().iloc[0])
        if math.isfinite(chance):
            info["chance"] = chance
        if info:
            out[column] = info
    return out


def build_tables(frame, **options) -> dict[str, Table]:
    """One :func:`build_table` per probe head, keyed by head, in sorted order."""
    return {head: build_table(frame, head, **options) for head in sorted(frame["head"].dropna().unique())}


def with_paper(table: Table, paper=None, models: Mapping[str, Mapping[str, Any]] | None = None,
               only_matched: bool = False, caption: str | None = None) -> Table:
    """The comparison layout: per task, "paper", "this run" and "Δ" (this run − paper).

    An arm gets the paper's number where it stands for a paper model
    (:func:`results.paper.paper_model_for`: by objective and supervision), the task maps to
    a paper task (:data:`results.paper.PAPER_TASKS`) with the same metric, and the pooling
    of the table's head (``linear-<pooling>``) matches; the paper's numbers are linear
    probes, so another head type gets none. Elsewhere the paper and Δ cells are "–".
    Each paper number carries a footnote with its source; Δ carries this run's interval
    (the published number has none).

    Args:
        paper: the published numbers (:func:`results.paper.paper_numbers`; the default).
        only_matched: keep only the arms that match a paper model.
    """
    from results.paper import paper_model_for, paper_numbers, paper_task_for

    paper = paper_numbers() if paper is None else paper
    head_type, _, pooling = table.head.partition("-")
    lookup: dict[tuple[str, str, str, str], tuple[float, str]] = {}
    for r in paper.itertuples(index=False):
        lookup[(str(r.model), str(r.pooling), str(r.paper_task), str(r.metric))] = (float(r.value), str(r.source))

    models_of = {row: paper_model_for(table.row_info.get(row, {}), models) for row in table.rows}
    rows = [r for r in table.rows if models_of[r] is not None] if only_matched else list(table.rows)
    run_columns = [c for c in table.columns if c.kind == "run"]
    columns = sorted({replace(c, kind=k) for c in run_columns for k in KIND_LABELS}, key=_column_key)
    sources: list[str] = []
    cells: dict[tuple[str, Column], Cell] = {}
    for row in rows:
        for column in run_columns:
            own = table.cell(row, column)
            if own is not None:
                cells[(row, column)] = own
            model, paper_task = models_of[row], paper_task_for(column.task)
            found = None
            if model is not None and paper_task is not None and head_type == "linear":
                found = lookup.get((model, pooling, paper_task, column.metric))
            if found is None:
                continue
            value, source = found
            if source not in sources:
                sources.append(source)
            cells[(row, replace(column, kind="paper"))] = Cell(value, math.nan, 0, False, sources.index(source) + 1)
            if own is not None:
                cells[(row, replace(column, kind="delta"))] = Cell(own.mean - value, own.ci, own.n)
    labels = {row: f"{table.row_label(row)} ({models_of[row]})" for row in rows if models_of[row] is not None}
    return replace(table, rows=tuple(rows), columns=tuple(columns), cells=cells, row_labels=labels,
                   sources=tuple(sources), label=f"{table.label}-paper",
                   caption=caption if caption is not None else
                   f"{table.caption} Published numbers (paper) beside this study's (this run).")


# --------------------------------------------------------------------------- cell text

def _fixed(value: float, digits: int, signed: bool = False) -> str:
    text = f"{value:.{digits}f}"
    if float(text) == 0.0:  # no "-0.000"
        return f"{0.0:.{digits}f}"
    return f"+{text}" if signed and value > 0 else text


def signed(value: float, digits: int = 3) -> str:
    """A difference as text with its sign, ``+0.050`` / ``-0.050``, and ``0.000`` (no sign) for
    a value that rounds to zero."""
    return _fixed(value, digits, signed=True)


def _cell_parts(cell: Cell, column: Column, digits: int) -> tuple[str, str | None]:
    """(value text, ± text or None) of a cell, with ASCII signs."""
    value = _fixed(cell.mean, digits, signed=column.kind == "delta")
    interval = _fixed(cell.ci, digits) if column.kind != "paper" and cell.n >= 2 and math.isfinite(cell.ci) else None
    return value, interval


def _seeds_text(table: Table, row: str) -> str:
    low, high = table.row_seeds(row)
    return "0" if high == 0 else (str(low) if low == high else f"{low}–{high}")


def _group_spans(columns: Iterable[Column], key) -> list[tuple[Any, int]]:
    spans: list[tuple[Any, int]] = []
    for c in columns:
        k = key(c)
        if spans and spans[-1][0] == k:
            spans[-1] = (k, spans[-1][1] + 1)
        else:
            spans.append((k, 1))
    return spans


# --------------------------------------------------------------------------- Markdown

MINUS = "\u2212"
"""The minus sign of Markdown and HTML cells (U+2212); CSV keeps ASCII ``-``."""


def minus(text: str) -> str:
    """A number's text with a real minus sign: ``"-0.050"`` -> ``"−0.050"`` (also inside intervals)."""
    return re.sub(r"(?<![\w.])-(?=\d)", MINUS, str(text))


def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def _md_headers(table: Table) -> list[str]:
    header = [column_label("arm"), column_label("seeds")]
    for c in table.columns:
        title = f"{domain_label(c.domain)} · {table.task_label(c)}"
        header.append(f"{title} {KIND_LABELS[c.kind]}" if table.comparison else title)
    return header


def _footer_rows(table: Table, digits: int) -> list[tuple[str, list[str]]]:
    """The rows under the arms: test-set sizes and chance levels, where known."""
    rows = []
    if any(table.test_sizes(c) for c in table.columns):
        rows.append((column_label("n_test"), [table.test_sizes(c) if c.kind == "run" else "" for c in table.columns]))
    if any(table.chance(c) is not None for c in table.columns):
        rows.append((column_label("chance"), [_fixed(table.chance(c), digits) if c.kind == "run" and
                                              table.chance(c) is not None else "" for c in table.columns]))
    return rows


def to_markdown(table: Table, digits: int = 3, caption: bool = True) -> str:
    """A GitHub-flavoured Markdown table, its caption above and the note lines below.

    Cells read ``0.812 ± 0.011`` (``0.812`` with one seed), bold as ``**…**``, "–" where
    there is no result, negative numbers with a real minus sign (U+2212); headers read
    ``domain · task`` (plus ``(metric)`` when the columns differ in metric, and the
    sub-column in the comparison layout); a "seeds" column gives each arm's number of
    pre-training seeds; rows "n test" and "chance" under the arms give each task's
    test-set size and chance level where the results hold them.
    """
    header = _md_headers(table)
    lines = []
    if caption and table.caption:
        lines += [f"**{_md_escape(table.caption)}**", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|:---|---:|" + "---:|" * len(table.columns))
    for row in table.rows:
        out = [_md_escape(table.row_label(row)), _seeds_text(table, row)]
        for column in table.columns:
            cell = table.cell(row, column)
            if cell is None:
                out.append(MISSING)
                continue
            value, interval = _cell_parts(cell, column, digits)
            text = minus(value if interval is None else f"{value} ± {interval}")
            if cell.note is not None:
                text += f" [{cell.note}]"
            out.append(f"**{text}**" if cell.bold else text)
        lines.append("| " + " | ".join(out) + " |")
    for name, values in _footer_rows(table, digits):
        lines.append("| " + " | ".join([f"*{name}*", ""] + values) + " |")
    lines.append("")
    notes = table.notes()
    lines += [_md_escape(line) + "  " if i < len(notes) - 1 else _md_escape(line) for i, line in enumerate(notes)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "−": r"$-$", "–": "--", "—": "---",
    "·": r"$\cdot$", "→": r"$\rightarrow$", "<": r"$<$", ">": r"$>$", "≤": r"$\leq$", "≥": r"$\geq$",
    "|": r"\textbar{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode (pdflatex): specials escaped, a few symbols as math."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def _latex_number(text: str) -> str:
    return f"$-${text[1:]}" if text.startswith("-") else (f"$+${text[1:]}" if text.startswith("+") else text)


def latex_float(text: str) -> str:
    """Cell text with every signed number set in math (``$-$0.050``: a real minus sign, and
    ``$+$`` to match), other characters escaped."""
    parts = re.split(r"((?<![\w.])[-+−](?=\d))", str(text))
    return "".join({"-": "$-$", "−": "$-$", "+": "$+$"}.get(p, None) or latex_escape(p) for p in parts)


def _latex_width(texts: Iterable[str]) -> float:
    """A rough natural width (pt) of a column of cell texts at ``\\small`` (about 4.6 pt a
    character, ± and the like about one), plus the column separation."""
    return max((len(re.sub(r"\s*[±]\s*", "+", str(t))) * 4.6 for t in texts), default=0.0) + 12.0


def latex_float_env(widths: Iterable[float]) -> str:
    """``table`` for a tabular that fits one column of a two-column paper by estimate,
    ``table*`` (both columns) otherwise."""
    return "table" if sum(widths) <= COLUMN_WIDTH_PT else "table*"


def latex_float_open(env: str, caption: str, label: str) -> list[str]:
    """The opening lines of a float: placement, centring, ``\\small``, the caption *above* the
    table with a gap before the top rule (``\\belowcaptionskip``, local to the float)."""
    return [rf"\begin{{{env}}}[t]", r"\centering", r"\small", r"\setlength{\abovecaptionskip}{0pt}",
            r"\setlength{\belowcaptionskip}{6pt}", rf"\caption{{{caption}}}", rf"\label{{{label}}}"]


FIT_OPEN = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"
"""Opens a box that shrinks a tabular to the line width only when it is wider (never enlarges)."""


def to_latex(table: Table, digits: int = 3, fit_width: bool | None = None) -> str:
    """A booktabs ``table`` (or ``table*``) float: caption above and label, domain group
    headers (``\\multicolumn`` with ``\\cmidrule``), ``\\textbf`` bold, ``$\\pm$``
    intervals, negative numbers with a math minus, rows "n test" and "chance", the note
    lines (metric, seeds, bold rule, sources) in a footnote-size paragraph under it.

    It fits a two-column paper: a tabular that fits one column by estimate
    (:data:`COLUMN_WIDTH_PT`) goes into ``table``, a wider one into ``table*``; one wider
    than the text (:data:`TEXT_WIDTH_PT`) is split into one tabular per domain, stacked in
    the same float; and each tabular is shrunk to the line width (``\\resizebox``,
    ``\\usepackage{graphicx}``) when it is wider still. ``fit_width=False`` leaves out that
    box (``\\usepackage{booktabs}`` is then all it needs).
    """
    show_seeds = len({_seeds_text(table, r) for r in table.rows}) > 1 or table.comparison
    columns = list(table.columns)
    widths = _latex_widths(table, columns, digits, show_seeds)
    env = latex_float_env(widths)
    groups = [columns]
    if sum(widths) > TEXT_WIDTH_PT:
        by_domain = [[c for c in columns if c.domain == d] for d, _ in _group_spans(columns, lambda c: c.domain)]
        if len(by_domain) > 1:
            groups = by_domain
    lines = latex_float_open(env, latex_escape(table.caption), table.label)
    for i, group in enumerate(groups):
        if i:
            lines.append(r"\par\medskip")
        lines += _latex_tabular(table, group, digits, show_seeds, fit_width is not False)
    lines += [r"\par\smallskip", r"{\footnotesize"]
    notes = table.notes()
    if not show_seeds:
        notes = [line.replace(' (column "seeds")', "") for line in notes]
    for line in notes:
        match = re.match(r"\[(\d+)\] (.*)", line)
        text = rf"\textsuperscript{{{match.group(1)}}}{latex_escape(match.group(2))}" if match else latex_escape(line)
        lines.append(text + r"\par")
    lines += ["}", rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def _cell_text(table: Table, row: str, column: Column, digits: int) -> str:
    cell = table.cell(row, column)
    if cell is None:
        return "--"
    value, interval = _cell_parts(cell, column, digits)
    return value + ("" if interval is None else f" ± {interval}")


def _latex_widths(table: Table, columns: list[Column], digits: int, show_seeds: bool) -> list[float]:
    """Estimated natural widths (pt) of the tabular's columns: arm, seeds, then ``columns``."""
    widths = [_latex_width([column_label("arm")] + [table.row_label(r) for r in table.rows]
                           + [column_label("n_test"), column_label("chance")])]
    if show_seeds:
        widths.append(_latex_width(["Seeds"]))
    for c in columns:
        widths.append(_latex_width([table.task_label(c), KIND_LABELS[c.kind] if table.comparison else ""]
                                   + [_cell_text(table, r, c, digits) for r in table.rows]))
    return widths


def _latex_tabular(table: Table, columns: list[Column], digits: int, show_seeds: bool, fit: bool) -> list[str]:
    """One booktabs tabular of the arms over ``columns`` (all of a table's, or one domain's)."""
    lead = 2 if show_seeds else 1
    lines = [FIT_OPEN] if fit else []
    lines += [rf"\begin{{tabular}}{{l{'r' if show_seeds else ''}{'r' * len(columns)}}}", r"\toprule"]

    def header_row(spans: list[tuple[str, int]]) -> str:
        parts = [""] * lead + [rf"\multicolumn{{{w}}}{{c}}{{{latex_escape(t)}}}" for t, w in spans]
        return " & ".join(parts) + r" \\"

    def rules(spans: list[tuple[Any, int]]) -> str:
        out, start = [], lead + 1
        for _, width in spans:
            out.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        return " ".join(out)

    first = [latex_escape(column_label("arm").capitalize())] + (["Seeds"] if show_seeds else [])
    domains = _group_spans(columns, lambda c: c.domain)
    lines.append(header_row([(domain_label(d).capitalize(), w) for d, w in domains]))
    lines.append(rules(domains))
    if table.comparison:
        tasks = _group_spans(columns, lambda c: (c.domain, c.task, c.metric))
        lines.append(header_row([(table.task_label(Column(d, t, m)), w) for (d, t, m), w in tasks]))
        lines.append(rules(tasks))
        lines.append(" & ".join(first + [latex_escape(KIND_LABELS[c.kind]) for c in columns]) + r" \\")
    else:
        lines.append(" & ".join(first + [latex_escape(table.task_label(c)) for c in columns]) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        out = [latex_escape(table.row_label(row))] + ([latex_escape(_seeds_text(table, row))] if show_seeds else [])
        for column in columns:
            cell = table.cell(row, column)
            if cell is None:
                out.append("--")
                continue
            value, interval = _cell_parts(cell, column, digits)
            text = _latex_number(value) + ("" if interval is None else rf" $\pm$ {interval}")
            if cell.note is not None:
                text += rf"\textsuperscript{{{cell.note}}}"
            out.append(rf"\textbf{{{text}}}" if cell.bold else text)
        lines.append(" & ".join(out) + r" \\")
    footer = _footer_rows(replace(table, columns=tuple(columns)), digits)
    if footer:
        lines.append(r"\midrule")
        for name, values in footer:
            lines.append(" & ".join([rf"\textit{{{latex_escape(name)}}}"] + [""] * (lead - 1)
                                    + [latex_escape(v) for v in values]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + (["}"] if fit else [])
    return lines


# --------------------------------------------------------------------------- CSV

CSV_COLUMNS = ["head", "arm", "domain", "task", "metric", "kind", "mean", "ci", "n", "bold", "source", "n_test",
               "chance"]


def _csv_float(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else _fixed(value, 6)


def to_csv(table: Table) -> str:
    """Tidy CSV: one line per present cell (rows, then columns, in table order) with
    ``head, arm, domain, task, metric, kind, mean, ci, n, bold, source, n_test, chance``;
    floats with 6 decimals, an empty field for no interval; ``source`` for paper cells;
    ``n_test`` (test clips; ``low-high`` where arms differ) and ``chance`` of the task."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        for column in table.columns:
            cell = table.cell(row, column)
            if cell is None:
                continue
            source = table.sources[cell.note - 1] if cell.note is not None else ""
            chance = table.chance(column)
            writer.writerow([table.head, row, column.domain, column.task, column.metric, column.kind,
                             _csv_float(cell.mean), _csv_float(cell.ci), cell.n, int(cell.bold), source,
                             table.test_sizes(column).replace("–", "-"),
                             "" if chance is None else _csv_float(chance)])
    return buffer.getvalue()
