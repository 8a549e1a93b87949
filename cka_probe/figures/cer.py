"""The CER figure: the DO−SO gap per surface–meaning edit-distance bin.

The gap figure has one panel per task (surface, meaning), the edit-distance
bins on the x axis, the gap in CER points (positive: the dual-output model is
worse) with its bootstrap interval, one colour and marker per language, and a
zero line. Only ``unit == "char"`` rows pooled over seeds (``seed == "all"``) are drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.text.cer import ED_BINS

MARKERS = ("o", "s", "^", "D")


@style.styled
def cer_gap_figure(gaps: pd.DataFrame) -> Figure:
    """DO−SO CER gap by surface–meaning edit-distance bin, per task, languages side by side."""
    gaps = gaps[(gaps["unit"] == "char") & (gaps["seed"].astype(str) == "all" if "seed" in gaps else True)]
    if gaps.empty:
        raise CKAProbeError("the CER gap table has no character-level rows")
    tasks, languages = list(dict.fromkeys(gaps["task"])), sorted(gaps["language"].unique())
    fig, axes = style.panels(
        1,
        len(tasks),
        width=style.SINGLE_COLUMN_IN * (1 + (len(tasks) > 1) * 0.6),
        panel_height=1.9,
        sharey=True,
        layout="constrained",
    )
    offsets = np.linspace(-0.12, 0.12, len(languages))
    for ax, task in zip(axes.flat, tasks):
        for k, language in enumerate(languages):
            rows = gaps[(gaps["task"] == task) & (gaps["language"] == language)]
            x = np.array([ED_BINS.index(b) for b in rows["ed_bin"]]) + offsets[k]
            # the interval as drawn lines, not error bars: an interval need not contain its estimate
            ax.vlines(x, rows["ci_low"], rows["ci_high"], color=style.colour(k), lw=1)
            ax.plot(
                x,
                rows["gap"],
                marker=MARKERS[k % len(MARKERS)],
                ms=3.5,
                lw=1,
                color=style.colour(k),
                label=language,
            )
        ax.axhline(0, color="0.5", lw=0.6, ls="--")
        ax.set_xticks(range(len(ED_BINS)), ED_BINS)
        ax.set_xlabel("surface–meaning edit distance")
        ax.set_title(f"{task} CER: DO − SO")
    axes[0, 0].set_ylabel("CER gap (points)")
    axes[0, 0].legend(title="language", frameon=False)
    return fig
