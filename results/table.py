"""Reading the results table and pivoting it into the paper's layout."""

from __future__ import annotations

from pathlib import Path

DOMAIN_ORDER = ["speech", "music", "environment"]


def load_results(path: str | Path):
    import pandas as pd

    return pd.read_parquet(path)


def pivot(frame, head: str | None = None):
    """Rows: runs; columns: tasks (grouped by domain); values: mean over seeds of the test metric."""
    if head is not None:
        frame = frame[frame["head"] == head]
    tasks = (frame[["domain", "task"]].drop_duplicates()
             .assign(order=lambda d: d["domain"].map({d: i for i, d in enumerate(DOMAIN_ORDER)}).fillna(99))
             .sort_values(["order", "task"])["task"].tolist())
    grouped = frame.groupby(["run", "task"], sort=True)["value"].mean().unstack("task")
    return grouped.reindex(columns=tasks)
