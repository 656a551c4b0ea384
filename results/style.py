"""One publication style for every figure: readable fonts, a colour-blind-safe palette,
vector PDF with embedded TrueType fonts, and byte-stable output.

    from results.style import figure, save
    with figure(width=3.4, height=2.6) as (fig, ax):
        ax.plot(...)
        save(fig, out_dir / "figures" / "longtail")   # longtail.png and longtail.pdf
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

PALETTE = "colorblind"  # seaborn's colour-blind-safe qualitative palette (Okabe-Ito-like)
DPI = 200

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "svg.hashsalt": "audio-harness",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def colors(n: int) -> list:
    import seaborn as sns

    return sns.color_palette(PALETTE, n)


@contextlib.contextmanager
def figure(width: float = 3.4, height: float = 2.6, ncols: int = 1, nrows: int = 1, **kw) -> Iterator:
    """A (fig, ax) pair in the publication style (sizes in inches; 3.4 in is one column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    with plt.rc_context(RC), sns.axes_style("ticks", RC):
        sns.set_palette(PALETTE)
        fig, ax = plt.subplots(nrows, ncols, figsize=(width, height), **kw)
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically, without timestamps (same data, same bytes)."""
    import os

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None,
                                                                 "Creator": None})):
        path = stem.with_suffix(f".{ext}")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fig.savefig(tmp, format=ext, metadata=metadata)
        os.replace(tmp, path)
        written.append(path)
    return written
