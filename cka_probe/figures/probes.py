"""The probe figure: what each model's encoder layers keep of the said and the meant word.

One row of panels per language, one panel per probe of
:data:`~cka_probe.study.schema.PROBE_PANELS` (the surface preference at
divergent words, the surface and meaning word selectivity), layer index on the
x axis. Each model of ``word_probes.csv`` is a line with its interval band
(pooled over seeds; a structured variant by the stream its surface decoder
reads); the seed-to-seed reference SSO′ is a dashed and the random-
initialisation floor RAND a dotted grey line, and the value without
information (0.5, or 0) a thin horizontal line.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.study.schema import PROBE_CEILING, PROBE_CHANCE, PROBE_FLOOR, PROBE_PANELS, is_surface_path

REFERENCE_LINES = {PROBE_CEILING: "--", PROBE_FLOOR: ":"}


def drawn_lines(table: pd.DataFrame) -> pd.DataFrame:
    """The rows drawn as model lines: every model's ``encoder`` stream, a variant's surface path instead
    where it has one."""
    surface = table["stream"].map(is_surface_path)
    has_path = surface.groupby(table["model"]).transform("any")
    return table[(surface & has_path) | ((table["stream"] == "encoder") & ~has_path)]


def _line(ax, rows: pd.DataFrame, probe: str, label: str, color: str, linestyle: str = "-") -> None:
    """``probe`` by layer index with its interval band."""
    ax.plot(rows["index"], rows[probe], marker="o", ms=2.2, label=label, color=color, linestyle=linestyle)
    ax.fill_between(rows["index"], rows[f"{probe}_lo"], rows[f"{probe}_hi"], color=color, alpha=0.2, lw=0)


@style.styled
def probe_figure(table: pd.DataFrame) -> Figure:
    """Surface preference and selectivities by layer for every model and language of ``word_probes.csv``."""
    lines = drawn_lines(table)
    if lines.empty:
        raise CKAProbeError("the probe table has no encoder rows to draw")
    languages = sorted(lines["language"].unique())
    fig, axes = style.panels(
        len(languages),
        len(PROBE_PANELS),
        width=style.DOUBLE_COLUMN_IN,
        panel_height=1.9,
        layout="constrained",
    )
    models = [m for m in dict.fromkeys(lines["model"]) if m not in REFERENCE_LINES]
    for row, language in zip(axes, languages):
        here = lines[lines["language"] == language]
        for ax, (probe, label) in zip(row, PROBE_PANELS.items()):
            ax.axhline(PROBE_CHANCE[probe], color="0.6", lw=0.5)
            for k, model in enumerate(models):
                rows = here[here["model"] == model].sort_values("index")
                _line(ax, rows, probe, model, color=style.colour(k))
            for model, dash in REFERENCE_LINES.items():
                rows = here[here["model"] == model].sort_values("index")
                if len(rows):
                    _line(ax, rows, probe, model, color="0.35", linestyle=dash)
            names = here.drop_duplicates("index").sort_values("index")["layer"].tolist()
            ax.set_xlabel(style.layer_ticks(ax.xaxis, names, f"{language}:"))
            ax.set_ylabel(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7), frameon=False)
    return fig
