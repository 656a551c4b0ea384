"""``harness report``: Markdown tables of probe results per run and task."""

from __future__ import annotations

from pathlib import Path

from results.table import load_results, pivot


def markdown_table(table, digits: int = 3, bold_best: bool = True) -> str:
    """A pivot (rows: runs, columns: tasks) as a Markdown table, the best value per column in bold."""
    columns = list(table.columns)
    best = {c: table[c].max() for c in columns} if bold_best else {}
    lines = ["| run | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for run, row in table.iterrows():
        cells = []
        for c in columns:
            v = row[c]
            if v != v:  # NaN: no result for this run and task
                cells.append("–")
                continue
            text = f"{v:.{digits}f}"
            cells.append(f"**{text}**" if bold_best and v == best[c] else text)
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results_path: str | Path, out_dir: str | Path, title: str = "") -> Path:
    """Write ``out_dir/index.md`` (and one table file per probe head); return the index path."""
    from harness.store import atomic_write_text

    frame = load_results(results_path)
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    parts = [f"# {title or 'Study report'}\n"]
    if frame.empty:
        parts.append("No results yet.\n")
    for head in sorted(frame["head"].unique()) if not frame.empty else []:
        sub = frame[frame["head"] == head]
        metrics = ", ".join(f"{t}: {m}" for t, m in sub[["task", "metric"]].drop_duplicates().itertuples(index=False))
        seeds = sub.groupby("run")["seed"].nunique().max()
        table = markdown_table(pivot(sub))
        atomic_write_text(out_dir / "tables" / f"probe_{head}.md", table)
        parts.append(f"## Frozen-encoder probes, head `{head}`\n\nTest split; metric per task ({metrics}); "
                     f"mean over {seeds} seed(s); best per task in bold.\n\n{table}")
    index = out_dir / "index.md"
    atomic_write_text(index, "\n".join(parts))
    return index
