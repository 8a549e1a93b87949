"""The dose–response tables of a sweep: each effect per divergence level, and its slope over the levels.

A sweep (:mod:`cka_probe.pipeline.sweep`) writes the study's tables once per
*cell*, a divergence level d of the corpus and a meaning-loss weight w of the
DO model (:func:`cka_probe.study.tables.write_tables`). From each cell's
pooled rows (``seed == all``) this module reads, per language:

- ``cer.csv`` (``unit == char``): the surface gap CER(DO) − CER(SSO) and the
  meaning gap CER(DO) − CER(MSO), in CER points;
- ``encoder_entanglement.csv``: the lean CKA(DO, SSO)ᵢ − CKA(DO, MSO)ᵢ at
  each encoder layer i, and again at the top encoder layer (the one the
  decoders read);

and writes ``dose.csv``, one row per quantity, language, weight, layer and
level with its value and 95 % interval, and ``dose_slopes.csv``, one row per
line (quantity, language, weight, layer) with the weighted least-squares slope
of the values over the levels, its interval, p and verdict
(:func:`cka_probe.inference.dose_response.slope_from_se`):

    b = Σ_l c_l y_l,  c_l = w_l (d_l − d̄_w) / Σ_l w_l (d_l − d̄_w)²,  w_l = 1 / se_l²,  Var b = Σ_l c_l² se_l²

in the quantity's unit per divergence level; positive: the effect grows as the
surface form moves away from the meaning.

**Standard errors from the intervals, not draws.** The cell tables carry each
value's interval but not its bootstrap draws (``write_tables`` keeps them in
memory), so each level's standard error is read off its interval,

    se_l = (ci_high_l − ci_low_l) / (2 z_{0.975}),

the standard error itself for a normal interval (one seed's CER gap, Student's
t with n − 1 ≈ 300 df; a CKA percentile interval of a near-normal bootstrap).
Pooled over K seeds the tables' intervals are t-based with K − 1 df for the
seeds' part, wider than ±z·se, so se_l then overstates the standard error and
the slope's interval errs wide. The levels share sentences, speakers and
training seeds; were their errors positively correlated alike, the
independence that ``slope_from_se`` assumes would also err wide, since the
coefficients sum to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.inference.dose_response import slope_from_se
from cka_probe.study.schema import (
    DOSE_DIVERGENCE,
    DOSE_KEYS,
    DOSE_LEAN,
    DOSE_MEANING_GAP,
    DOSE_QUANTITIES,
    DOSE_SURFACE_GAP,
    DOSE_TOP_LEAN,
    DOSE_WEIGHT,
    pooled,
    read_table,
)

LEVEL = 0.95
"""The level of the cell tables' intervals (``write_tables``'s default) and of the slopes'."""

GAPS = {"surface": DOSE_SURFACE_GAP, "meaning": DOSE_MEANING_GAP}
DOSE_COLUMNS = (
    *DOSE_KEYS,
    DOSE_DIVERGENCE,
    "value",
    "ci_low",
    "ci_high",
    "se",
    "p",
    "seeds_agree",
    "seeds",
    "n",
)
SLOPE_COLUMNS = (*DOSE_KEYS, "levels", "slope", "se", "ci_low", "ci_high", "p", "verdict")


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: the folder of the tables of divergence level ``divergence`` and weight
    ``meaning_weight``."""

    divergence: float
    meaning_weight: float
    tables: Path


def _cer_rows(tables: Path) -> pd.DataFrame:
    """The pooled character CER gaps of every language and task of a cell, as dose rows."""
    cer = pooled(read_table(tables / "cer.csv"))
    cer = cer[(cer["unit"] == "char") & cer["task"].isin(list(GAPS))]
    return cer.assign(quantity=cer["task"].map(GAPS), index=np.nan, layer="", value=cer["gap"])


def _lean_rows(tables: Path) -> pd.DataFrame:
    """The pooled encoder lean of every language and layer of a cell, and again at its top layer."""
    lean = pooled(read_table(tables / "encoder_entanglement.csv")).assign(quantity=DOSE_LEAN)
    lean = lean.assign(value=lean["lean"])
    top = lean[lean["index"] == lean.groupby("language")["index"].transform("max")]
    return pd.concat([top.assign(quantity=DOSE_TOP_LEAN), lean], ignore_index=True)


def cell_rows(cell: Cell) -> pd.DataFrame:
    """The dose rows (:data:`DOSE_COLUMNS`) of one cell; ``se`` is the interval's half-width over z."""
    rows = pd.concat([_cer_rows(cell.tables), _lean_rows(cell.tables)], ignore_index=True)
    half = (rows["ci_high"] - rows["ci_low"]) / 2
    return rows.assign(
        **{DOSE_DIVERGENCE: cell.divergence, DOSE_WEIGHT: cell.meaning_weight},
        se=half / norm.ppf((1 + LEVEL) / 2),
    ).astype({"index": "Int64"})[list(DOSE_COLUMNS)]


def dose_table(cells: Sequence[Cell]) -> pd.DataFrame:
    """The dose rows of every cell, ordered by quantity, language, weight, layer and level."""
    if not cells:
        raise CKAProbeError("a dose table needs the tables of at least one cell")
    rows = pd.concat([cell_rows(cell) for cell in cells], ignore_index=True)
    rank = rows["quantity"].map({quantity: i for i, quantity in enumerate(DOSE_QUANTITIES)})
    keys = ["language", DOSE_WEIGHT, "index", DOSE_DIVERGENCE]
    return rows.assign(rank=rank).sort_values(["rank", *keys], kind="stable").drop(columns="rank")


def _slope(line: pd.DataFrame) -> dict[str, object]:
    """The slope of one line's values over its levels, or NaN with the reason when it has none."""
    try:
        fit = slope_from_se(line[DOSE_DIVERGENCE], line["value"], line["se"], level=LEVEL)
    except CKAProbeError as err:
        return {"slope": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan} | {
            "verdict": f"not computed ({err})"
        }
    return {
        "slope": fit.slope,
        "se": fit.se,
        "ci_low": fit.ci_low,
        "ci_high": fit.ci_high,
        "p": fit.p,
        "verdict": fit.verdict,
    }


def dose_slopes(dose: pd.DataFrame) -> pd.DataFrame:
    """Per line of ``dose`` (quantity, language, weight, layer): the number of levels and the WLS slope of
    the values over them with its interval, p and verdict (:data:`SLOPE_COLUMNS`)."""
    lines = dose.groupby(list(DOSE_KEYS), dropna=False, sort=False)
    rows = [
        dict(zip(DOSE_KEYS, key, strict=True)) | {"levels": len(line)} | _slope(line) for key, line in lines
    ]
    return pd.DataFrame(rows, columns=list(SLOPE_COLUMNS))


def write_dose_tables(cells: Sequence[Cell], out_dir: str | Path) -> dict[str, Path]:
    """``dose.csv`` and ``dose_slopes.csv`` of ``cells`` in ``out_dir``, each written atomically."""
    dose = dose_table(cells)
    tables = {"dose": dose, "dose_slopes": dose_slopes(dose)}
    return {
        name: atomic_write_text(Path(out_dir) / f"{name}.csv", table.to_csv(index=False), point="tables")
        for name, table in tables.items()
    }
