"""Figures drawn from a study's results table (``results.parquet``).

Each function takes the results frame of one probe head, draws one figure in the
publication style (:mod:`results.style`) at a print width (``"two"``: 6.9 in, ``"one"``:
3.3 in; ``one_column=STEM`` draws the one-column variant too), writes ``stem.png`` and
``stem.pdf``, and returns the numbers it plotted, so that tests and the report can check
the content:

- :func:`size_figure`: metric against tag-system size K (UTS Fig. 3): a panel per domain
  (the mean over the domain's tasks), a line per arm series (the arm without its tag
  system) with its 95% band, the random encoder as a labelled reference; panels share the
  y-axis.
- :func:`language_size_figure`: UTS Fig. 3's three panels against K: the linear probe, the
  trained-text retrieval probe (R@1, both directions) and the captioning probe (CIDEr-D).
- :func:`scaling_figure`: the same against the number of pre-training clips (CaptionStew's
  data scaling).
- :func:`objective_domain_heatmap`: each arm's domain mean minus the random encoder's, on
  a diverging scale centred at 0.

Arms and series are named by :mod:`harness.labels`, as in the tables. A function returns
``None`` and draws nothing when the results hold no such axis (one K only, one data size
only): the report says why instead of drawing an empty figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.labels import BASELINE_ARM, domain_label, metric_label, result_coords, series_label
from results.style import DIVERGING, colors, figure, save
from results.table import DOMAIN_ORDER, MINUS, signed

BASELINE = BASELINE_ARM
MARKERS = "os^Dv<>P"


def _domains(frame) -> list[str]:
    present = set(frame["domain"])
    return [d for d in DOMAIN_ORDER if d in present] + sorted(present - set(DOMAIN_ORDER))


def _metric_name(frame) -> str:
    return " / ".join(metric_label(m) for m in sorted(set(frame["metric"])))


def _metric_label(frame) -> str:
    return f"{_metric_name(frame)} (test)"


def _series(frame, without: tuple[str, ...]):
    return [series_label(result_coords(r), without) for r in frame.to_dict("records")]


def _interval_band(values, n_tests, metrics) -> tuple[float, str | None]:
    """Half-width of the 95% band of a domain mean, and what it rests on.

    ``values``: per seed, the list of task values (tasks averaged into the domain mean).
    With two or more seeds: the Student-t interval of the seed means ("seeds"). With one
    seed: the normal-approximation interval of test-set sampling, 1.96 * sqrt(sum_t
    p_t (1 - p_t) / n_t) / T, for accuracy with known test sizes ("test clips"); else none.
    """
    from results.stats import mean_ci

    if len(values) >= 2:
        _, half, _ = mean_ci([sum(v) / len(v) for v in values])
        return half, "seeds"
    tasks = values[0] if values else []
    if tasks and all(m == "accuracy" for m in metrics) and all(n and n > 0 for n in n_tests):
        var = sum(p * (1 - p) / n for p, n in zip(tasks, n_tests))
        return 1.96 * math.sqrt(var) / len(tasks), "test clips"
    return math.nan, None


def _curves(frame, x: str, without: tuple[str, ...]):
    """Per (domain, series, x): mean over the domain's tasks (seeds averaged), its band."""
    work = frame[frame["value"].notna()].copy()
    work["series"] = _series(work, without)
    if "n_test" not in work:
        work["n_test"] = float("nan")
    per_task = (work.groupby(["domain", "series", x, "seed", "task", "metric"], dropna=False)
                .agg(value=("value", "mean"), n_test=("n_test", "first")).reset_index())
    out: dict = {}
    kinds = set()
    for (domain, series, xv), group in per_task.groupby(["domain", "series", x], sort=True):
        seeds = [g.sort_values("task") for _, g in group.groupby("seed", sort=True)]
        values = [list(g["value"]) for g in seeds]
        mean = sum(sum(v) / len(v) for v in values) / len(values)
        half, kind = _interval_band(values, list(seeds[0]["n_test"]), list(seeds[0]["metric"]))
        kinds.add(kind)
        out.setdefault(domain, {}).setdefault(series, []).append((xv, float(mean), float(half)))
    return out, kinds


def _baseline(frame):
    """Per domain: the random encoder's mean over the domain's tasks, and its band."""
    base = frame[(frame["objective"] == BASELINE) & frame["value"].notna()]
    if base.empty:
        return {}
    base = base.assign(_x=0)
    curves, _ = _curves(base, "_x", ())
    return {d: next(iter(s.values()))[0][1:] for d, s in curves.items()}


def _line_figure(curves, baselines, domains, stem, width, xlabel, ylabel, xticks, sharey: bool = True) -> None:
    """A row of panels (one per domain) sharing the y-axis (unless ``sharey`` is false: panels
    of different metrics): a line per series with its band, the random encoder as a dashed
    grey line with its band; one legend above."""
    import matplotlib.lines as mlines
    import numpy as np

    names = sorted({s for d in curves.values() for s in d})
    palette = dict(zip(names, colors(len(names))))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(names)}
    offsets = {s: (i - (len(names) - 1) / 2) * 0.018 for i, s in enumerate(names)}  # decades: no hidden points
    one = width == "one"
    height = 2.35 if one else 2.45
    with figure(width=width, height=height, ncols=len(domains), squeeze=False, sharey=sharey) as (fig, axes):
        for i, (ax, domain) in enumerate(zip(axes[0], domains)):
            for name in names:
                points = sorted(curves.get(domain, {}).get(name, []))
                if not points:
                    continue
                xs = np.array([p[0] for p in points], dtype=float) * 10 ** offsets[name]
                ys = np.array([p[1] for p in points])
                hs = np.array([p[2] for p in points])
                if np.isfinite(hs).any():
                    ax.fill_between(xs, ys - hs, ys + hs, color=palette[name], alpha=0.15, linewidth=0)
                ax.plot(xs, ys, marker=markers[name], color=palette[name], markeredgecolor="white",
                        markeredgewidth=0.5, label=name, zorder=3)
            if domain in baselines:
                value, half = baselines[domain]
                ax.axhline(value, color="0.35", linestyle="--", linewidth=1.0, zorder=2)
                if math.isfinite(half):
                    ax.axhspan(value - half, value + half, color="0.5", alpha=0.12, linewidth=0, zorder=1)
            ax.set_xscale("log")
            ax.set_xticks(xticks, [_k_label(k) for k in xticks])
            ax.minorticks_off()
            low, high = min(xticks), max(xticks)
            pad = 10 ** (0.12 + abs(min(offsets.values(), default=0)))
            ax.set_xlim(low / pad, high * pad)
            ax.set_title(domain_label(domain))
            if i == 0:
                ax.set_ylabel(ylabel)
        fig.supxlabel(xlabel, fontsize=8)
        handles = [mlines.Line2D([], [], color=palette[n], marker=markers[n], markeredgecolor="white",
                                 markeredgewidth=0.5, label=n) for n in names]
        if baselines:
            handles.append(mlines.Line2D([], [], color="0.35", linestyle="--", label="random (reference)"))
        columns = min(len(handles), 3 if one else 4)
        fig.legend(handles=row_major(handles, columns), loc="outside upper center", ncols=columns)
        save(fig, stem)


def row_major(items: list, columns: int) -> list:
    """``items`` reordered so that a legend with ``columns`` columns (which matplotlib fills
    column by column) reads row by row."""
    rows = -(-len(items) // columns)
    grid = [items[r * columns:(r + 1) * columns] for r in range(rows)]
    return [row[c] for c in range(columns) for row in grid if c < len(row)]


def _xticks(values) -> list:
    return sorted({int(v) for v in values})


def size_figure(frame, stem: str | Path, width: str = "two", one_column: str | Path | None = None) -> dict | None:
    """Metric against tag-system size K (UTS Fig. 3), a panel per domain.

    A line per arm series: the arm without its tag system (:func:`harness.labels.series_label`,
    ``mini/mtc`` through ``mini/mtc K=32`` and ``mini/mtc K=64``), its value at each K the
    mean over the domain's tasks (probe seeds, then seeds averaged), with a 95% band: over
    pre-training seeds where there are two or more, else the test-set sampling interval
    of accuracy (see :func:`_interval_band`). Lines are nudged apart on the x-axis by a
    few hundredths of a decade so that equal values stay visible. The random encoder is a
    dashed grey reference with its band. Panels share the y-axis, so equal gaps look equal.

    Returns ``{"series": {domain: {series: [(K, value), ...]}}, "bands": {domain:
    {series: [half-width, ...]}}, "baselines": {domain: value}, "band": "seeds" | "test
    clips" | None}``, or ``None`` with fewer than two K.
    """
    sized = frame[frame["tag_system_size"].notna()]
    if sized.empty or sized["tag_system_size"].nunique() < 2:
        return None
    domains = _domains(sized)
    curves, kinds = _curves(sized.assign(tag_system_size=sized["tag_system_size"].astype(int)), "tag_system_size",
                            ("tag_system", "tag_system_size"))
    baselines = _baseline(frame)
    band = _band_kind(kinds)
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            _line_figure(curves, baselines, domains, s, w, "tag-system size K",
                         f"{_metric_name(sized)} (test), task mean", _xticks(sized["tag_system_size"]))
    return _result(curves, baselines, band, domains)


LANGUAGE_PANELS = (
    ("linear probe", None, None),
    ("retrieval R@1", ("trained-text-to-audio", "trained-audio-to-text"), "recall@1"),
    ("captioning CIDEr-D", ("greedy",), "cider_d"),
)
"""UTS Fig. 3's panels: title, the result heads (``None``: the report's probe head) and the metric."""


def language_panels(frame, probe_head: str):
    """The rows of each panel of :data:`LANGUAGE_PANELS`, its title in the ``domain`` column."""
    import pandas as pd

    parts = []
    for title, heads, metric in LANGUAGE_PANELS:
        rows = (frame[frame["head"] == probe_head] if heads is None
                else frame[frame["head"].isin(heads) & (frame["metric"] == metric)])
        if not rows.empty:
            parts.append(rows.assign(domain=title))
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]


def language_size_figure(frame, stem: str | Path, probe_head: str, width: str = "two",
                         one_column: str | Path | None = None) -> dict | None:
    """UTS Fig. 3 with its retrieval and captioning panels: against the tag-system size K,
    the linear probe (``probe_head``, the mean over every probe task), the retrieval probe
    (the mean R@1 of both directions over the retrieval tasks) and the captioning probe
    (the mean CIDEr-D over the captioning tasks), a line per arm series, the random encoder
    as the reference, as :func:`size_figure`. ``None`` (nothing drawn) without two K or
    without a retrieval or captioning result."""
    sized = frame[frame["tag_system_size"].notna()]
    if sized.empty or sized["tag_system_size"].nunique() < 2:
        return None
    panels = language_panels(frame, probe_head)
    if set(panels["domain"]) <= {LANGUAGE_PANELS[0][0]}:
        return None
    order = [t for t, _, _ in LANGUAGE_PANELS if t in set(panels["domain"])]
    sized = panels[panels["tag_system_size"].notna()]
    curves, kinds = _curves(sized.assign(tag_system_size=sized["tag_system_size"].astype(int)), "tag_system_size",
                            ("tag_system", "tag_system_size"))
    baselines = _baseline(panels)
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            _line_figure(curves, baselines, order, s, w, "tag-system size K", "test metric, task mean",
                         _xticks(sized["tag_system_size"]), sharey=False)
    return _result(curves, baselines, _band_kind(kinds), order)


def scaling_figure(frame, stem: str | Path, width: str = "two", one_column: str | Path | None = None) -> dict | None:
    """The mean metric of a domain's tasks against the number of pre-training clips.

    A line per arm series: the arm without its data size (an objective with its tag
    system and source), drawn when it was trained on two or more data sizes (a tag-system
    size that keeps fewer clips is not a data-scaling point); bands and reference as
    :func:`size_figure`. Returns the same dict keyed by clips, or ``None`` when no series
    has two sizes.
    """
    if "train_clips" not in frame or frame["train_clips"].isna().all():
        return None
    trained = frame[frame["train_clips"].notna()].copy()
    trained["series"] = _series(trained, ("data_size",))
    sizes = trained.groupby("series")["train_clips"].nunique()
    keep = sorted(sizes[sizes >= 2].index)
    if not keep:
        return None
    trained = trained[trained["series"].isin(keep)].drop(columns="series")
    domains = _domains(trained)
    curves, kinds = _curves(trained.assign(train_clips=trained["train_clips"].astype(int)), "train_clips",
                            ("data_size",))
    baselines = _baseline(frame)
    band = _band_kind(kinds)
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            _line_figure(curves, baselines, domains, s, w, "pre-training clips",
                         f"{_metric_name(trained)} (test), task mean", _xticks(trained["train_clips"]))
    return _result(curves, baselines, band, domains)


def _band_kind(kinds) -> str | None:
    kinds = {k for k in kinds if k}
    return "seeds" if kinds == {"seeds"} else ("test clips" if kinds == {"test clips"} else
                                               (" and ".join(sorted(kinds)) or None))


def _result(curves, baselines, band, domains) -> dict:
    ordered = [d for d in domains if d in curves]
    return {"series": {d: {s: [(int(x), v) for x, v, _ in sorted(p)] for s, p in curves[d].items()} for d in ordered},
            "bands": {d: {s: [h for _, _, h in sorted(p)] for s, p in curves[d].items()} for d in ordered},
            "baselines": {d: baselines[d][0] for d in domains if d in baselines}, "band": band}


def objective_domain_heatmap(frame, stem: str | Path, width: str = "two",
                             one_column: str | Path | None = None) -> dict | None:
    """Each arm's mean metric per domain, as the difference from the random encoder.

    Rows: the arms (named as in the tables), columns: domains. A cell is the arm's mean
    over the domain's tasks (probe seeds, then pre-training seeds averaged) minus the random
    encoder's, on a diverging scale centred at 0 (red above random, blue below, white
    equal), annotated with its value; the random encoder's own mean is given under each
    domain name. Without a random encoder the cells are the metric itself on a sequential
    scale, with the mean chance level under each domain name where the results give it.

    Returns ``{"rows", "columns", "values", "baseline": {domain: value} or None, "mode":
    "difference" | "metric"}`` (values row-major, NaN where an arm has no task of a domain).
    """
    if frame.empty:
        return None
    import numpy as np

    from results.table import _natural_key, arms

    work = frame[frame["value"].notna()].assign(arm=lambda f: arms(f))
    per_seed = work.groupby(["arm", "domain", "task", "seed"], dropna=False)["value"].mean()
    per_task = per_seed.groupby(["arm", "domain", "task"]).mean()
    grid = per_task.groupby(["arm", "domain"]).mean().unstack("domain")
    domains = [d for d in _domains(work) if d in grid.columns]
    grid = grid.reindex(columns=domains)
    base_arms = sorted(set(work.loc[work["objective"] == BASELINE, "arm"]))
    baseline = None
    mode = "metric"
    rows = sorted([a for a in grid.index if a not in base_arms], key=_natural_key)
    if base_arms:
        baseline = grid.loc[base_arms[0]]
        mode = "difference"
        values = grid.reindex(index=rows).to_numpy(dtype=float) - baseline.to_numpy(dtype=float)[None, :]
    else:
        rows = sorted(grid.index, key=_natural_key)
        values = grid.reindex(index=rows).to_numpy(dtype=float)
    chance = None
    if baseline is None and "chance" in work and work["chance"].notna().any():
        chance = work.groupby(["domain", "task"])["chance"].mean().groupby("domain").mean()
    metric = _metric_name(work)
    reference = None  # the last row: the random encoder's own values, or the chance level
    if baseline is not None:
        reference = (f"{base_arms[0]} ({metric})", [float(baseline[d]) for d in domains])
    elif chance is not None:
        reference = ("chance", [float(chance[d]) if d in chance else math.nan for d in domains])
    for w, s in ((width, stem), ("one", one_column)):
        if s is not None:
            _heatmap(values, rows, [domain_label(d) for d in domains], s, w, mode, metric, reference)
    return {"rows": rows, "columns": domains, "values": np.round(values, 6).tolist(),
            "baseline": None if baseline is None else {d: round(float(baseline[d]), 6) for d in domains},
            "mode": mode}


def _heatmap(values, rows, columns, stem, width, mode, metric, reference) -> None:
    import numpy as np

    finite = values[np.isfinite(values)]
    one = width == "one"
    if reference is not None:  # a row without colour under the arms, its values in grey
        values = np.vstack([values, np.full((1, values.shape[1]), np.nan)])
        rows = [*rows, reference[0]]
    height = 0.95 + 0.19 * len(rows)
    with figure(width=width, height=height) as (fig, ax):
        if mode == "difference":
            limit = max(0.05, math.ceil(float(np.abs(finite).max(initial=0.0)) / 0.05) * 0.05)
            image = ax.imshow(values, cmap=DIVERGING, vmin=-limit, vmax=limit, aspect="auto")
            label = f"Δ {metric} vs random"
        else:
            image = ax.imshow(values, cmap="viridis", aspect="auto")
            label = f"{metric} (test)"
        norm = image.norm
        cmap = image.get_cmap()
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if reference is not None and i == values.shape[0] - 1:
                    shown = reference[1][j]
                    ax.text(j, i, "–" if not np.isfinite(shown) else f"{shown:.3f}", ha="center", va="center",
                            fontsize=7, color="0.3", style="italic")
                    continue
                if not np.isfinite(v):
                    ax.text(j, i, "–", ha="center", va="center", fontsize=7)
                    continue
                text = signed(v, 3) if mode == "difference" else f"{v:.3f}"
                r, g, b, _ = cmap(norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, text.replace("-", MINUS), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
        if reference is not None:
            ax.axhline(len(rows) - 1.5, color="0.3", linewidth=0.6)
            ax.get_yticklabels()[-1].set_style("italic")
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.grid(False)
        for side in ax.spines.values():
            side.set_visible(False)
        if one:  # one column: the colour bar below, so the columns keep the width their names need
            bar = fig.colorbar(image, ax=ax, location="bottom", shrink=0.9, aspect=30, pad=0.04)
        else:
            bar = fig.colorbar(image, ax=ax, shrink=0.8, aspect=25, pad=0.02)
        bar.set_label(label)
        (bar.ax.xaxis if one else bar.ax.yaxis).set_major_formatter(_signed_formatter(mode == "difference"))
        save(fig, stem)


def _signed_formatter(signed: bool):
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _pos):
        if abs(v) < 1e-9:
            return "0"
        text = f"{v:+.2f}" if signed else f"{v:.2f}"
        return text.replace("-", MINUS)

    return FuncFormatter(fmt)


def _k_label(k: int) -> str:
    return f"{k / 1000:g}k" if k >= 1000 else str(k)
