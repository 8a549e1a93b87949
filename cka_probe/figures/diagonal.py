"""Diagonal plots: the value (CKA or the table's measure) of layer i against layer i, with bootstrap
interval bands and reference levels.

One panel per comparison of a part (encoder or decoder), every language in
the same panel (one Okabe–Ito colour each), the layer names of the first model
on the x axis, and the shared y range [min(0, lowest bound), 1]. Values are
pooled over seeds (``seed == "all"``). The reference levels of each language
are drawn behind every panel in its colour: the seed-to-seed ceiling SSO~SSO′
(dashed line, hatched band) and the random-initialisation floor SSO~RAND
(dotted line, light band), where the table has them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.study.schema import CEILING, FLOOR_NAME, VALUE, diagonal, value_label

PANELS_PER_ROW = 3


@style.styled
def diagonal_figure(table: pd.DataFrame, part: str) -> Figure:
    """CKA by layer (the diagonal of each comparison of ``part``) for all languages, with interval bands."""
    sub = diagonal(table[table["part"] == part])
    if "seed" in sub:
        sub = sub[sub["seed"].astype(str) == "all"]
    if sub.empty:
        raise CKAProbeError(f"the table has no {part} comparisons")
    references = sub[sub["comparison"].isin([CEILING, FLOOR_NAME])]
    sub = sub[~sub["comparison"].isin([CEILING, FLOOR_NAME])]
    comparisons, languages = list(dict.fromkeys(sub["comparison"])), sorted(sub["language"].unique())
    n_cols = min(PANELS_PER_ROW, len(comparisons))
    n_rows = -(-len(comparisons) // n_cols)
    width = style.DOUBLE_COLUMN_IN if n_cols > 1 else style.SINGLE_COLUMN_IN
    fig, axes = style.panels(n_rows, n_cols, width=width, panel_height=1.6, sharey=True, layout="constrained")
    low = min(0.0, float(np.nanmin(sub[[VALUE, "ci_low"]].to_numpy())))
    for ax, name in zip(axes.flat, comparisons):
        rows = sub[sub["comparison"] == name].sort_values("index_a")
        for k, language in enumerate(languages):
            _references(ax, references[references["language"] == language], style.colour(k), language)
            line = rows[rows["language"] == language]
            ax.plot(line["index_a"], line[VALUE], marker="o", ms=2.5, color=style.colour(k), label=language)
            ax.fill_between(
                line["index_a"], line["ci_low"], line["ci_high"], color=style.colour(k), alpha=0.25, lw=0
            )
        names = rows.drop_duplicates("index_a")["layer_a"].tolist()
        ax.set_xlabel(style.layer_ticks(ax.xaxis, names, name.split("-")[0]))
        ax.set_title(f"{part}: {name}")
        ax.set_ylim(low, 1.02)
        ax.set_yticks([t for t in np.arange(-1.0, 1.01, 0.25) if t >= low - 1e-9])
    for ax in axes.flat[len(comparisons) :]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel(value_label(sub))
    fig.legend(
        *axes.flat[0].get_legend_handles_labels(), title="language", loc="outside right upper", frameon=False
    )
    return fig


REFERENCE_STYLE = {CEILING: ("--", "////", "ceiling SSO~SSO′"), FLOOR_NAME: (":", None, "floor SSO~RAND")}


def _references(ax, rows: pd.DataFrame, colour: str, language: str) -> None:
    """The ceiling and floor of one language as lines with interval bands (labelled once per panel)."""
    for name, (dash, hatch, label) in REFERENCE_STYLE.items():
        ref = rows[rows["comparison"] == name].sort_values("index_a")
        if ref.empty:
            continue
        ax.plot(ref["index_a"], ref[VALUE], ls=dash, lw=0.8, color=colour, label=f"{language} {label}")
        ax.fill_between(
            ref["index_a"],
            ref["ci_low"],
            ref["ci_high"],
            color=colour,
            alpha=0.08,
            lw=0,
            hatch=hatch,
            gid=f"reference {name}",
        )
