"""Layer-by-layer heatmaps of a cross-task table's values (CKA or its measure; never recomputed).

One figure per part (encoder or decoder): a row of panels per language, a
column per comparison, one colour scale shared by every panel (CKA from
min(0, smallest value) to 1) and one colour bar. Rows of a panel are the
layers of the first model of the comparison (``layer_a``), columns those of
the second (``layer_b``); tick labels are the layer names after their common
prefix, which the axis label carries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.study.schema import CEILING, FLOOR_NAME, VALUE, value_label

ANNOTATE_MAX_LAYERS = 8  # beyond this, cell values are too small to read at column width
PANELS_PER_ROW = 3


def matrix(rows: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """The (L_a, L_b) value matrix of one comparison and its layer names, in model order."""
    grid = rows.pivot(index="index_a", columns="index_b", values=VALUE).sort_index().sort_index(axis=1)
    names_a = rows.drop_duplicates("index_a").set_index("index_a").sort_index()["layer_a"].tolist()
    names_b = rows.drop_duplicates("index_b").set_index("index_b").sort_index()["layer_b"].tolist()
    return grid.to_numpy(dtype=float), names_a, names_b


def sides(name: str) -> tuple[str, str]:
    """The two models of a comparison's name: ``DO-SSO``, ``split-2/branch/surface-SSO``,
    ``SSO-split-2/surface``."""
    first, last = name.rsplit("-", 1)
    return (first, last) if last.isupper() else tuple(name.split("-", 1))


def _panel(ax: Axes, rows: pd.DataFrame, limits: tuple[float, float], annotate: bool):
    """Draw one comparison's matrix on ``ax``; returns the image (for the shared colour bar)."""
    values, names_a, names_b = matrix(rows)
    image = ax.imshow(
        values, cmap=style.HEATMAP_CMAP, vmin=limits[0], vmax=limits[1], origin="lower", aspect="auto"
    )
    role_a, role_b = sides(rows["comparison"].iloc[0])
    ax.set_ylabel(style.layer_ticks(ax.yaxis, names_a, role_a))
    ax.set_xlabel(style.layer_ticks(ax.xaxis, names_b, role_b))
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=4.5,
                color="black" if value > limits[0] + 0.6 * (limits[1] - limits[0]) else "white",
            )
    return image


@style.styled
def heatmap_figure(table: pd.DataFrame, part: str, *, annotate: bool | None = None) -> Figure:
    """Heatmaps of every comparison of ``part`` (``encoder`` | ``decoder``) for every language.

    Panels run in rows of at most :data:`PANELS_PER_ROW` comparisons, one block of rows per language.
    """
    sub = table[table["part"] == part]
    if "seed" in sub:  # pooled over seeds; the reference comparisons are drawn on the diagonal plots
        sub = sub[(sub["seed"].astype(str) == "all") & ~sub["comparison"].isin([CEILING, FLOOR_NAME])]
    if sub.empty:
        raise CKAProbeError(f"the table has no {part} comparisons")
    comparisons, languages = list(dict.fromkeys(sub["comparison"])), sorted(sub["language"].unique())
    limits = (min(0.0, float(sub[VALUE].min())), 1.0)
    if annotate is None:
        annotate = max(sub["index_a"].max(), sub["index_b"].max()) < ANNOTATE_MAX_LAYERS
    n_cols = min(PANELS_PER_ROW, len(comparisons))
    rows_per_language = -(-len(comparisons) // n_cols)
    width = style.DOUBLE_COLUMN_IN if n_cols > 1 else style.SINGLE_COLUMN_IN
    fig, axes = style.panels(
        len(languages) * rows_per_language, n_cols, width=width, panel_height=2.0, layout="constrained"
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for block, language in enumerate(languages):
        panels = axes[block * rows_per_language : (block + 1) * rows_per_language].flat
        for ax, name in zip(panels, comparisons):
            rows = sub[(sub["language"] == language) & (sub["comparison"] == name)]
            if not rows.empty:
                ax.set_axis_on()
                image = _panel(ax, rows, limits, annotate)
                ax.set_title(f"{language} {part}: {name} (n={rows['n'].iloc[0]})")
    fig.colorbar(image, ax=axes, shrink=0.6, label=value_label(sub))
    return fig
