"""The figures of a sweep: each effect against the divergence level, per meaning weight, and over training.

Read from the sweep's tables only (``dose.csv``, ``dose_slopes.csv``,
``dynamics.csv``; :mod:`cka_probe.study.dose`, :mod:`cka_probe.study.dynamics`):

- ``dose_response``: per language, the surface CER gap DO − SSO, the meaning
  gap DO − MSO (CER points) and the top encoder layer's lean CKA(DO, SSO) −
  CKA(DO, MSO) against the divergence level, one line per meaning weight with
  its 95 % intervals; the legend gives each line's slope per level;
- ``dose_lean_by_layer``: the lean against the level at every encoder layer,
  one line per weight;
- ``dose_surface_heatmap``: the surface CER gap over divergence level ×
  meaning weight, each cell annotated with its value and interval;
- ``dynamics`` (with ``dynamics.csv``): the lean at every encoder layer
  against the training epoch, one line per cell.

Intervals are drawn as lines, not error bars (an interval need not be
symmetric about its estimate); lines of one panel are nudged apart along x so
that their intervals do not hide each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.figures.write import read_table
from cka_probe.study import schema

MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")
LEVEL_LABEL = "divergence level"
LEAN_LABEL = "lean: CKA(DO, SSO) − CKA(DO, MSO)"
AXIS_LABELS = {
    schema.DOSE_SURFACE_GAP: "surface CER, DO − SSO (CER points)",
    schema.DOSE_MEANING_GAP: "meaning CER, DO − MSO (CER points)",
    schema.DOSE_TOP_LEAN: LEAN_LABEL,
    schema.DOSE_LEAN: LEAN_LABEL,
}
"""The y axis of each quantity, with its unit (:data:`~cka_probe.study.schema.DOSE_UNITS`)."""


def _weights(table: pd.DataFrame) -> list[float]:
    return sorted(table[schema.DOSE_WEIGHT].unique())


def _nudges(count: int, levels: np.ndarray) -> np.ndarray:
    """Offsets along x for ``count`` lines: a tenth of the smallest step between ``levels``, spread evenly."""
    step = np.diff(np.unique(levels)).min() if len(np.unique(levels)) > 1 else 1.0
    return np.linspace(-0.1, 0.1, count) * step if count > 1 else np.zeros(1)


def _slope_label(slopes: pd.DataFrame | None, line: pd.DataFrame) -> str:
    """``", slope +1.20 [+0.31, +2.09] per level"`` for the line's row of ``slopes`` (empty without one)."""
    if slopes is None:
        return ""
    keys = line.iloc[0]
    row = slopes[
        (slopes["quantity"] == keys["quantity"])
        & (slopes["language"] == keys["language"])
        & (slopes[schema.DOSE_WEIGHT] == keys[schema.DOSE_WEIGHT])
        & (slopes["index"].fillna(-1) == (-1 if pd.isna(keys["index"]) else keys["index"]))
    ]
    if row.empty or not np.isfinite(row["slope"].iloc[0]):
        return ""
    digits = 2 if schema.DOSE_UNITS[keys["quantity"]] == "CER points" else 3
    b, low, high = (f"{v:+.{digits}f}" for v in row[["slope", "ci_low", "ci_high"]].iloc[0])
    return f", slope {b} [{low}, {high}] per level"


def _draw_lines(ax, rows: pd.DataFrame, slopes: pd.DataFrame | None) -> None:
    """One line per meaning weight of ``rows`` (one quantity, language and layer) against the level, with
    its intervals as vertical lines and a zero line."""
    weights = _weights(rows)
    for k, (weight, nudge) in enumerate(zip(weights, _nudges(len(weights), rows[schema.DOSE_DIVERGENCE]))):
        line = rows[rows[schema.DOSE_WEIGHT] == weight].sort_values(schema.DOSE_DIVERGENCE)
        x = line[schema.DOSE_DIVERGENCE] + nudge
        ax.vlines(x, line["ci_low"], line["ci_high"], color=style.colour(k), lw=1)
        ax.plot(
            x,
            line["value"],
            marker=MARKERS[k % len(MARKERS)],
            ms=3.5,
            lw=1,
            color=style.colour(k),
            label=f"w = {weight:g}{_slope_label(slopes, line)}",
        )
    ax.axhline(0, color="0.5", lw=0.6, ls="--")
    ax.set_xticks(sorted(rows[schema.DOSE_DIVERGENCE].unique()))
    ax.set_xlabel(LEVEL_LABEL)


def _checked(table: pd.DataFrame, quantities: tuple[str, ...], what: str) -> pd.DataFrame:
    rows = table[table["quantity"].isin(quantities)]
    if rows.empty:
        raise CKAProbeError(f"the dose table has no rows of {what}")
    return rows


@style.styled
def dose_figure(dose: pd.DataFrame, slopes: pd.DataFrame | None = None) -> Figure:
    """Per language (rows): the surface gap, the meaning gap and the top layer's lean against the level, one
    line per meaning weight; with ``slopes`` each line's slope in its legend."""
    quantities = (schema.DOSE_SURFACE_GAP, schema.DOSE_MEANING_GAP, schema.DOSE_TOP_LEAN)
    dose = _checked(dose, quantities, "CER gaps or encoder lean")
    languages = sorted(dose["language"].unique())
    fig, axes = style.panels(
        len(languages), len(quantities), width=style.DOUBLE_COLUMN_IN, panel_height=2.3, layout="constrained"
    )
    for row, language in zip(axes, languages):
        for ax, quantity in zip(row, quantities):
            _draw_lines(ax, dose[(dose["language"] == language) & (dose["quantity"] == quantity)], slopes)
            ax.set_ylabel(AXIS_LABELS[quantity])
            ax.set_title(f"{language}: {quantity}")
            ax.legend(frameon=False, fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return fig


def _layer_grid(table: pd.DataFrame) -> tuple[Figure, Any, list, list, pd.Series]:
    """A panel per language (rows) and encoder layer (columns) of ``table``, sharing the y axis; returns the
    figure, the axes, the languages, the layer indices and the layer names by index."""
    languages, layers = sorted(table["language"].unique()), sorted(table["index"].unique())
    names = table.drop_duplicates("index").set_index("index")["layer"]
    fig, axes = style.panels(
        len(languages),
        len(layers),
        width=max(style.DOUBLE_COLUMN_IN, 1.6 * len(layers)),
        panel_height=1.9,
        sharey=True,
        layout="constrained",
    )
    return fig, axes, languages, layers, names


@style.styled
def dose_layers_figure(dose: pd.DataFrame) -> Figure:
    """The encoder lean against the level at every encoder layer (columns), per language (rows), one line
    per meaning weight."""
    lean = _checked(dose, (schema.DOSE_LEAN,), "the encoder lean")
    fig, axes, languages, layers, names = _layer_grid(lean)
    for row, language in zip(axes, languages):
        for ax, index in zip(row, layers):
            _draw_lines(ax, lean[(lean["language"] == language) & (lean["index"] == index)], None)
            ax.set_title(f"{language}: {names[index]}")
        row[0].set_ylabel(LEAN_LABEL)
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(),
        title="meaning weight",
        frameon=False,
        loc="outside right upper",
    )
    return fig


@style.styled
def surface_heatmap(dose: pd.DataFrame) -> Figure:
    """The surface CER gap DO − SSO over divergence level (x) × meaning weight (y), a panel per language,
    one diverging colour scale centred on 0, each cell annotated with its value and interval."""
    gaps = _checked(dose, (schema.DOSE_SURFACE_GAP,), "the surface CER gap")
    languages = sorted(gaps["language"].unique())
    limit = float(np.nanmax(np.abs(gaps["value"]))) or 1.0
    fig, axes = style.panels(
        1,
        len(languages),
        width=style.SINGLE_COLUMN_IN * (1 + 0.8 * (len(languages) - 1)),
        panel_height=2.4,
        layout="constrained",
    )
    for ax, language in zip(axes.flat, languages):
        rows = gaps[gaps["language"] == language]
        grid = rows.pivot(index=schema.DOSE_WEIGHT, columns=schema.DOSE_DIVERGENCE, values="value")
        image = ax.imshow(
            grid.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower", aspect="auto"
        )
        for _, r in rows.iterrows():
            i, j = grid.index.get_loc(r[schema.DOSE_WEIGHT]), grid.columns.get_loc(r[schema.DOSE_DIVERGENCE])
            dark = abs(r["value"]) > 0.6 * limit
            text = f"{r['value']:+.2f}\n[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=5.5, color="white" if dark else "black")
        ax.set_xticks(range(len(grid.columns)), [f"{d:g}" for d in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{w:g}" for w in grid.index])
        ax.set_xlabel(LEVEL_LABEL)
        ax.set_ylabel("meaning weight w")
        ax.set_title(f"{language}: surface CER gap, DO − SSO")
    fig.colorbar(image, ax=axes.ravel().tolist(), label=AXIS_LABELS[schema.DOSE_SURFACE_GAP], shrink=0.9)
    return fig


@style.styled
def dynamics_figure(dynamics: pd.DataFrame) -> Figure:
    """The encoder lean against the training epoch at every encoder layer (columns), per language (rows),
    one line per cell (colour: level, line style: weight) with its interval as a band."""
    fig, axes, languages, layers, names = _layer_grid(dynamics)
    levels, weights = sorted(dynamics[schema.DOSE_DIVERGENCE].unique()), _weights(dynamics)
    cells = dynamics.groupby(["language", "index", schema.DOSE_DIVERGENCE, schema.DOSE_WEIGHT])
    for (language, index, level, weight), line in cells:
        ax = axes[languages.index(language), layers.index(index)]
        line = line.sort_values(schema.DYNAMICS_EPOCH)
        colour = style.colour(levels.index(level))
        ax.fill_between(
            line[schema.DYNAMICS_EPOCH], line["ci_low"], line["ci_high"], color=colour, alpha=0.12, lw=0
        )
        ax.plot(
            line[schema.DYNAMICS_EPOCH],
            line["lean"],
            color=colour,
            ls=LINESTYLES[weights.index(weight) % len(LINESTYLES)],
            marker=".",
            ms=3,
            lw=1,
            label=f"d = {level:g}, w = {weight:g}",
        )
    for language, ax_row in zip(languages, axes):
        for ax, index in zip(ax_row, layers):
            ax.axhline(0, color="0.5", lw=0.6, ls="--")
            ax.set_title(f"{language}: {names[index]}" + (" (top)" if index == layers[-1] else ""))
            ax.set_xlabel("training epoch")
        ax_row[0].set_ylabel(LEAN_LABEL)
    handles = axes[0, 0].get_legend_handles_labels()
    fig.legend(*handles, title="level d, weight w", frameon=False, loc="outside right upper")
    return fig


def write_dose_figures(tables_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """The sweep's figures (module docstring) from ``tables_dir``, PNG and PDF in ``out_dir``."""
    tables_dir = Path(tables_dir)
    dose = read_table(tables_dir / "dose.csv")
    slopes = read_table(tables_dir / "dose_slopes.csv")
    paths = style.save(dose_figure(dose, slopes), out_dir, "dose_response")
    paths += style.save(dose_layers_figure(dose), out_dir, "dose_lean_by_layer")
    paths += style.save(surface_heatmap(dose), out_dir, "dose_surface_heatmap")
    if (tables_dir / "dynamics.csv").exists():
        paths += style.save(dynamics_figure(read_table(tables_dir / "dynamics.csv")), out_dir, "dynamics")
    return paths
