"""One publication style for every figure: figures made at the size they are printed,
fonts of at least 7 pt at that size, a colour-blind-safe palette, vector PDF with embedded
TrueType fonts, and byte-stable output.

    from results.style import figure, save, width_inches
    with figure(width="one", height=2.4) as (fig, ax):     # 3.3 in: one column of a two-column paper
        ax.plot(...)
        save(fig, out_dir / "figures" / "longtail")        # longtail.png and longtail.pdf

Widths: :data:`WIDTHS` — ``"one"`` (3.3 in, one column) and ``"two"`` (6.9 in, the full
text width of a two-column paper). A figure is laid out by matplotlib's constrained
layout and saved at exactly its size (no ``bbox_inches="tight"`` cropping or growing), so
a font set to 7 pt is 7 pt when the figure is placed at that width in the paper
(``\\includegraphics[width=\\columnwidth]`` or ``[width=\\textwidth]``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

PALETTE = "colorblind"  # seaborn's colour-blind-safe qualitative palette (Okabe-Ito-like)
DIVERGING = "RdBu_r"  # ColorBrewer's red-blue: colour-blind safe, white at the centre
DPI = 300
MIN_FONT_PT = 7.0
"""No text of a figure is smaller than this at its print size (the acceptance rule)."""

WIDTHS = {"one": 3.3, "two": 6.9}
"""Print widths in inches: one column, and the text width, of a two-column paper."""

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "standard",  # exactly the figure's size: the print size
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.02,
    "figure.constrained_layout.w_pad": 0.02,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "svg.hashsalt": "audio-harness",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.columnspacing": 1.0,
}


def width_inches(width: str | float) -> float:
    """A print width: ``"one"`` / ``"two"`` (:data:`WIDTHS`) or inches."""
    if isinstance(width, str):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {sorted(WIDTHS)} or inches, got {width!r}")
        return WIDTHS[width]
    return float(width)


def colors(n: int) -> list:
    import seaborn as sns

    return sns.color_palette(PALETTE, n)


@contextlib.contextmanager
def figure(width: str | float = "one", height: float = 2.6, ncols: int = 1, nrows: int = 1, **kw) -> Iterator:
    """A (fig, ax) pair in the publication style; ``width`` is ``"one"``, ``"two"`` or inches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    with plt.rc_context(RC), sns.axes_style("ticks", RC):
        sns.set_palette(PALETTE)
        fig, ax = plt.subplots(nrows, ncols, figsize=(width_inches(width), height), **kw)
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically, without timestamps (same data, same
    bytes), at the figure's own size, readable under the user's umask."""
    import os

    from harness.store import current_umask

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None,
                                                                 "Creator": None})):
        path = stem.with_suffix(f".{ext}")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fig.savefig(tmp, format=ext, metadata=metadata)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
        written.append(path)
    return written


def text_problems(fig, min_pt: float = MIN_FONT_PT) -> list[str]:
    """What breaks the figure rules in a drawn figure: text under ``min_pt`` points, text
    outside the figure, two texts that overlap, and a legend that overlaps an axes (data)
    or another legend. Empty when the figure is clean. Used by the tests and the report.

    Text is every visible ``Text`` artist with content (titles, labels, tick labels,
    annotations, legend entries); tick labels of one axis are compared with other text,
    not with each other's neighbours' padding. Extents come from the Agg renderer at the
    figure's print size.
    """
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: measure it on a fresh Agg canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    problems: list[str] = []
    texts = []
    tick_labels, drawn = set(), set()  # every tick label, and those of the ticks in view (drawn)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.majorTicks + axis.minorTicks:
                tick_labels |= {id(tick.label1), id(tick.label2)}
            if ax.axison and axis.get_visible():  # an axes turned off draws no tick label
                for tick in axis._update_ticks():
                    drawn |= {id(tick.label1), id(tick.label2)}
    for artist in fig.findobj(Text):
        if not artist.get_visible() or not artist.get_text().strip():
            continue
        if id(artist) in tick_labels and id(artist) not in drawn:
            continue
        if artist.axes is not None and not artist.axes.get_visible():
            continue
        if artist.get_clip_on() and artist.axes is not None and artist.get_transform() != fig.transFigure:
            # clipped data text (an annotation inside the axes) that lies outside is not drawn
            extent = artist.get_window_extent(renderer)
            if not artist.axes.bbox.overlaps(extent):
                continue
        size = artist.get_fontsize()
        if size < min_pt - 1e-6:
            problems.append(f"font {size:.1f} pt < {min_pt} pt: {artist.get_text()!r}")
        extent = artist.get_window_extent(renderer)
        if extent.width == 0 or extent.height == 0:
            continue
        if (extent.x0 < box.x0 - 1 or extent.y0 < box.y0 - 1 or extent.x1 > box.x1 + 1
                or extent.y1 > box.y1 + 1):
            problems.append(f"text outside the figure: {artist.get_text()!r}")
        texts.append((artist, extent))
    for i, (a, ea) in enumerate(texts):
        for b, eb in texts[i + 1:]:
            overlap_w = min(ea.x1, eb.x1) - max(ea.x0, eb.x0)
            overlap_h = min(ea.y1, eb.y1) - max(ea.y0, eb.y0)
            if overlap_w > 0.5 and overlap_h > 0.5:
                problems.append(f"texts overlap: {a.get_text()!r} and {b.get_text()!r}")
    legends = [lg for lg in fig.findobj(Legend) if lg.get_visible()]
    for i, legend in enumerate(legends):
        extent = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if not ax.get_visible() or ax.get_label() == "<colorbar>" or not ax.has_data():
                continue
            inner = ax.get_window_extent(renderer)
            if _overlaps(extent, inner):
                problems.append(f"legend overlaps the axes {ax.get_title() or ax.get_label()!r}")
        for other in legends[i + 1:]:
            if _overlaps(extent, other.get_window_extent(renderer)):
                problems.append("two legends overlap")
    return problems


def _overlaps(a, b, tol: float = 0.5) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol
