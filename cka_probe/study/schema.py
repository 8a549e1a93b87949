"""The study's table schema: column names, reference comparisons and row selectors.

What ``figures/`` and the report read from the tables the study writes, so
that neither imports the computation. Every table is tidy (one row per cell)
and opens with :func:`read_table` (``pandas.read_csv`` with the schema's names and types).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CEILING, FLOOR_NAME = "SSO-SSO'", "SSO-RAND"
"""The seed-to-seed ceiling (SSO replicate j against j + 1) and the random-initialisation floor
comparisons."""

POOLED = "all"
"""The ``seed`` of rows pooled over seeds (the other rows carry the replicate number)."""

VALUE = "value"
"""The column holding a cell's value: the measure named in the ``measure`` column (linear CKA for
``cka``)."""

EFFECT_COLUMNS = ("ci_low", "ci_high", "p", "p_adj", "seeds_agree")
"""The columns that every table of an effect per seed and pooled carries after the estimate
(:mod:`cka_probe.inference.effects`): its interval, p, BH-adjusted p and whether the seeds agree in sign."""

TEXT_COLUMNS = {"seed": str, "ed_bin": str}
"""Columns read as text: a seed label (a replicate number or ``all``) and an edit-distance bin."""

CELL_COLUMNS = ("part", "comparison", "stream", "stream_b", "layer_a", "layer_b")
"""What a cell of the cross-task table compares: the part, the comparison, its two streams and its two layers
by name (tables derived from it carry them over)."""

COLUMNS: tuple[str, ...] = (
    "language",
    *CELL_COLUMNS,
    "index_a",
    "index_b",
    "seed",
    "seeds",
    "measure",
    VALUE,
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "null_mean",
    "n",
    "estimator",
    "kernel",
    "pooling",
)
"""The columns of the cross-task table (``tables/cross_task.csv``), in order."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A table of the study from its CSV file, with the value column named :data:`VALUE` (tables written
    before it was renamed call it ``cka``) and :data:`TEXT_COLUMNS` as text."""
    table = pd.read_csv(path, dtype=TEXT_COLUMNS)
    if VALUE not in table.columns and "cka" in table.columns:
        table = table.rename(columns={"cka": VALUE})
    return table


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows pooled over seeds (``seed == "all"``) of a table with a ``seed`` column."""
    return table[table["seed"].astype(str) == POOLED].reset_index(drop=True)


def diagonal(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with layer i against layer i (``index_a == index_b``) of a cross-task table."""
    return table[table["index_a"] == table["index_b"]].reset_index(drop=True)


def value_label(table: pd.DataFrame) -> str:
    """What the value column of ``table`` holds, for an axis: ``linear CKA (debiased)`` for CKA (a table
    without a ``measure`` column holds CKA), the measure's name otherwise."""
    measure = "/".join(sorted(set(table["measure"]))) if "measure" in table else "cka"
    if measure != "cka":
        return measure
    return (
        f"linear CKA ({'/'.join(sorted(set(table['estimator'])))})" if "estimator" in table else "linear CKA"
    )


DOSE_DIVERGENCE, DOSE_WEIGHT = "divergence", "meaning_weight"
"""The dials of a sweep (``cka-probe sweep``): the corpus's divergence level and the DO model's meaning-loss
weight, as columns of ``dose.csv``, ``dose_slopes.csv`` and ``dynamics.csv``."""

DOSE_SURFACE_GAP, DOSE_MEANING_GAP = "surface CER gap (DO − SSO)", "meaning CER gap (DO − MSO)"
DOSE_LEAN, DOSE_TOP_LEAN = "encoder lean", "encoder lean, top layer"
"""The ``quantity`` of a dose row: a task's CER gap in points, the encoder lean CKA(DO, SSO) − CKA(DO, MSO)
per layer and at the top encoder layer."""

DOSE_QUANTITIES = (DOSE_SURFACE_GAP, DOSE_MEANING_GAP, DOSE_TOP_LEAN, DOSE_LEAN)
"""Every quantity of ``dose.csv``, in the order the figures draw them."""

DOSE_UNITS = {
    DOSE_SURFACE_GAP: "CER points",
    DOSE_MEANING_GAP: "CER points",
    DOSE_LEAN: "CKA",
    DOSE_TOP_LEAN: "CKA",
}
"""The unit of each dose quantity (a slope is in this unit per divergence level)."""

DOSE_KEYS = ("quantity", "language", DOSE_WEIGHT, "index", "layer")
"""What one dose–response line is: a quantity of a language at one meaning weight (and encoder layer)."""

DYNAMICS_EPOCH = "epoch"
"""The training epoch of a ``dynamics.csv`` row (0: the initial weights)."""

PROBE_PANELS = {
    "surface_preference": "surface preference\n(share of divergent words)",
    "surface_selectivity": "surface-word selectivity\n(accuracy − control)",
    "meaning_selectivity": "meaning-word selectivity\n(accuracy − control)",
}
"""The probes of ``word_probes.csv`` the probe figure draws (one panel each), with their axis labels."""

PROBE_CHANCE = {"surface_preference": 0.5, "surface_selectivity": 0.0, "meaning_selectivity": 0.0}
"""Each drawn probe's value without information: a coin's forced choice; a probe as good as its control."""

PROBE_CEILING, PROBE_FLOOR = "SSO′", "RAND"
"""The reference models of ``word_probes.csv``: the second SSO seed and the random-initialisation floor."""


def is_surface_path(stream: str) -> bool:
    """Whether ``stream`` is a structured variant's encoder path that its surface decoder reads
    (``encoder/<kind>/surface``)."""
    return stream.startswith("encoder/") and stream.endswith("/surface")
