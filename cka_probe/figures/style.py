"""Shared figure style: colour-blind-safe colours, paper column widths, saving.

Colours: the Okabe–Ito palette (Okabe & Ito 2008), distinguishable under the
common colour-vision deficiencies; heatmaps use viridis (perceptually uniform,
readable in grey scale). Sizes: a single column is 3.4 in and a double column
7.0 in wide (two-column conference formats), with 7–8 pt text so that figures
stay legible at 100 %.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.axis import Axis  # noqa: E402

from cka_probe.atomic import atomic_output

OKABE_ITO: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
HEATMAP_CMAP = "viridis"
SINGLE_COLUMN_IN = 3.4
DOUBLE_COLUMN_IN = 7.0
FORMATS: tuple[str, ...] = ("png", "pdf")

RC = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6.5,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "savefig.dpi": 300,
    "pdf.fonttype": 42,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def styled(draw: Callable) -> Callable:
    """Run a figure-drawing function inside the shared style (fonts, colours, sizes)."""

    @functools.wraps(draw)
    def in_style(*args, **kwargs):
        with plt.rc_context(RC):
            return draw(*args, **kwargs)

    return in_style


def panels(
    n_rows: int, n_cols: int, *, width: float, panel_height: float, **kwargs
) -> tuple[plt.Figure, object]:
    """A figure of ``n_rows × n_cols`` panels (a 2-D array of axes) at ``width`` inches."""
    return plt.subplots(n_rows, n_cols, figsize=(width, panel_height * n_rows), squeeze=False, **kwargs)


def colour(i: int) -> str:
    """The i-th Okabe–Ito colour."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def short_names(names: Sequence[str]) -> tuple[str, list[str]]:
    """Split layer names into their common dotted prefix and the rest: ``("encoder.layers.", ["0", "1"])``."""
    names = list(names)
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    prefix = ".".join(parts[0][:common]) + "." if common else ""
    return prefix, [n[len(prefix) :] for n in names]


def layer_ticks(axis: Axis, names: Sequence[str], model: str) -> str:
    """Put layer names (after their common prefix) on ``axis`` at 0..L−1; returns the axis label.

    The label is the model and the prefix without its final dot: ``SSO encoder`` for ``encoder.embed``, ...
    """
    prefix, short = short_names(names)
    axis.set_ticks(
        range(len(names)), short, rotation=90 if axis.axis_name == "x" and max(map(len, short)) > 3 else 0
    )
    return f"{model} {prefix.rstrip('.')}" if prefix else model


def save(fig: plt.Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` into ``out_dir`` (each via a temporary file and a rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with atomic_output(path, point="figures") as tmp:
            fig.savefig(tmp, format=fmt, dpi=300, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
