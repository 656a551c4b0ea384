"""Figures drawn from a study's results table (``results.parquet``).

Each function takes the results frame of one probe head, draws one figure in the
publication style (:mod:`results.style`), writes ``stem.png`` and ``stem.pdf``, and
returns the numbers it plotted, so that tests and the report can check the content:

- :func:`size_figure`: metric against tag-system size K, per task, a panel per domain
  (UTS Fig. 3); the random encoder as a dashed line.
- :func:`scaling_figure`: metric against the number of pre-training clips, per objective
  (CaptionStew's data scaling), a panel per domain.
- :func:`objective_domain_heatmap`: mean metric per objective and domain.

A function returns ``None`` and draws nothing when the results hold no such axis (one K
only, one data size only): the report says why instead of drawing an empty figure.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from results.style import colors, figure, save
from results.table import DOMAIN_ORDER

BASELINE = "random"


def _domains(frame) -> list[str]:
    present = set(frame["domain"])
    return [d for d in DOMAIN_ORDER if d in present] + sorted(present - set(DOMAIN_ORDER))


def _metric_label(frame) -> str:
    metrics = sorted(set(frame["metric"]))
    return " / ".join(metrics) + " (test)"


def size_figure(frame, stem: str | Path) -> dict | None:
    """Metric against tag-system size, one line per (objective, task), a panel per domain.

    Values are means over pre-training and probe seeds. Returns ``{domain: {"objective /
    task": [(K, value), ...]}}`` and the baselines drawn, or ``None`` with fewer than two K.
    """
    sized = frame[frame["tag_system_size"].notna()]
    if sized.empty or sized["tag_system_size"].nunique() < 2:
        return None
    base = frame[frame["objective"] == BASELINE]
    domains = _domains(sized)
    objectives = sorted(set(sized["objective"]))
    markers = dict(zip(objectives, itertools.cycle("os^Dv<>P")))
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    baselines: dict[str, dict[str, float]] = {}
    with figure(width=3.2 * len(domains), height=2.9, ncols=len(domains), squeeze=False) as (fig, axes):
        for i, (ax, domain) in enumerate(zip(axes[0], domains)):
            part = sized[sized["domain"] == domain]
            lines = (part.groupby(["objective", "task", "tag_system_size"])["value"].mean()
                     .reset_index().sort_values(["objective", "task", "tag_system_size"]))
            tasks = sorted(set(lines["task"]))
            palette = dict(zip(tasks, colors(len(tasks))))  # colour: task; marker: objective
            series[domain] = {}
            for objective, task in lines[["objective", "task"]].drop_duplicates().itertuples(index=False):
                line = lines[(lines["objective"] == objective) & (lines["task"] == task)]
                xs = [int(k) for k in line["tag_system_size"]]
                ys = [float(v) for v in line["value"]]
                series[domain][f"{objective} / {task}"] = list(zip(xs, ys))
                ax.plot(xs, ys, marker=markers[objective], color=palette[task], label=f"{objective} / {task}")
            for task in tasks:
                below = base[(base["domain"] == domain) & (base["task"] == task)]["value"]
                if len(below):
                    baselines.setdefault(domain, {})[task] = float(below.mean())
                    ax.axhline(float(below.mean()), color=palette[task], linestyle="--", linewidth=0.8)
            ax.set_xscale("log")
            ks = sorted({int(k) for k in part["tag_system_size"]})
            ax.set_xticks(ks, [_k_label(k) for k in ks])
            ax.minorticks_off()
            ax.set_title(domain)
            ax.set_xlabel("tag-system size K")
            ax.set_ylabel(_metric_label(part) if i == 0 else "")
            ax.legend(frameon=False, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2)
        if baselines:
            fig.suptitle("dashed: random encoder, per task", fontsize=7, y=1.0)
        fig.tight_layout()
        save(fig, stem)
    return {"series": series, "baselines": baselines}


def scaling_figure(frame, stem: str | Path) -> dict | None:
    """Metric (mean over a domain's tasks) against pre-training clips, a line per arm.

    An arm is an objective with its tag system; a line needs the arm trained on two or
    more data sizes (a tag-system size that keeps fewer clips is not a data-scaling point).
    Returns ``{domain: {arm: [(clips, value), ...]}}``, or ``None`` when no arm has two sizes.
    """
    if "train_clips" not in frame or frame["train_clips"].isna().all():
        return None
    from harness.labels import objective_system_label

    trained = frame[frame["train_clips"].notna()].copy()
    systems = trained["tag_system"] if "tag_system" in trained else [None] * len(trained)
    trained["line"] = [objective_system_label({"objective": o, "tag_system": s})
                       for o, s in zip(trained["objective"], systems)]
    sizes = trained.groupby("line")["train_clips"].nunique()
    arms = sorted(sizes[sizes >= 2].index)
    if not arms:
        return None
    trained = trained[trained["line"].isin(arms)]
    domains = _domains(trained)
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    palette = dict(zip(arms, colors(len(arms))))
    with figure(width=3.2 * len(domains), height=2.6, ncols=len(domains), squeeze=False) as (fig, axes):
        for i, (ax, domain) in enumerate(zip(axes[0], domains)):
            part = trained[trained["domain"] == domain]
            per_task = part.groupby(["line", "train_clips", "task"])["value"].mean()
            curve = per_task.groupby(["line", "train_clips"]).mean().reset_index()
            series[domain] = {}
            for arm in arms:
                line = curve[curve["line"] == arm].sort_values("train_clips")
                if line.empty:
                    continue
                points = [(int(n), float(v)) for n, v in zip(line["train_clips"], line["value"])]
                series[domain][arm] = points
                ax.plot(*zip(*points), marker="o", color=palette[arm], label=arm)
            ax.set_xscale("log")
            ax.set_title(domain)
            ax.set_xlabel("pre-training clips")
            ax.set_ylabel(f"mean {_metric_label(part)}" if i == 0 else "")
            ax.legend(frameon=False, fontsize=6)
        fig.tight_layout()
        save(fig, stem)
    return {"series": series}


def objective_domain_heatmap(frame, stem: str | Path) -> dict | None:
    """Mean metric per objective (rows) and domain (columns): tasks, K, seeds averaged.

    Each task is first averaged over seeds and tag systems, then tasks are averaged within a
    domain, so a domain with many tasks counts once. Returns ``{"rows", "columns",
    "values"}`` (values row-major, NaN where an objective has no task of a domain).
    """
    if frame.empty:
        return None
    import numpy as np

    per_task = frame.groupby(["objective", "domain", "task"])["value"].mean()
    grid = per_task.groupby(["objective", "domain"]).mean().unstack("domain")
    domains = [d for d in _domains(frame) if d in grid.columns]
    grid = grid.reindex(columns=domains)
    order = [o for o in sorted(grid.index) if o != BASELINE] + ([BASELINE] if BASELINE in grid.index else [])
    grid = grid.reindex(index=order)
    values = grid.to_numpy(dtype=float)
    with figure(width=1.0 + 1.1 * len(domains), height=0.8 + 0.35 * len(order)) as (fig, ax):
        import seaborn as sns

        sns.heatmap(grid, ax=ax, annot=True, fmt=".3f", cmap="viridis", cbar_kws={"label": _metric_label(frame)},
                    linewidths=0.5, annot_kws={"fontsize": 7})
        ax.set_xlabel("domain")
        ax.set_ylabel("objective")
        ax.grid(False)
        save(fig, stem)
    return {"rows": order, "columns": domains, "values": np.round(values, 6).tolist()}


def _k_label(k: int) -> str:
    return f"{k / 1000:g}k" if k >= 1000 else str(k)
