"""How the report reads a run's tables: the pooled rows, each seed's values, and which rows are resolved.

Every statement is read off a table (never recomputed). The pooled rows
(``seed == "all"``: the mean over seed replicates with its seeds-and-utterances
interval) carry the findings. A row is *resolved* when its BH-adjusted p is
below :data:`ALPHA` and, pooled over seeds, every seed agrees in sign.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.schema import POOLED, pooled, read_table

ALPHA = 0.05
"""The level of the BH-adjusted p-values behind every "at layers …" statement."""


def read(tables: Path, name: str, *, per_seed: bool = False) -> pd.DataFrame | None:
    """The table ``tables/<name>.csv`` (its pooled rows only unless ``per_seed``), or None if absent."""
    path = tables / f"{name}.csv"
    if not path.exists():
        return None
    table = read_table(path)
    return table if per_seed or "seed" not in table else pooled(table)


def per_seed(tables: Path, name: str, keys: dict, column: str, digits: int = 2) -> str:
    """``" (seeds: +1.20, -0.30)"``: the per-seed values of one pooled row, when there are several seeds."""
    table = read(tables, name, per_seed=True)
    if "seed" not in table:
        return ""
    rows = table[table["seed"] != POOLED]
    for key, value in keys.items():
        rows = rows[rows[key] == value]
    return f" (seeds: {', '.join(f'{v:+.{digits}f}' for v in rows[column])})" if len(rows) > 1 else ""


def agree(value) -> bool:
    """A ``seeds_agree`` cell read from CSV: True unless it says False (missing: a per-seed row)."""
    return str(value).strip().lower() not in ("false", "0", "0.0")


def cleared(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose BH-adjusted p is below :data:`ALPHA` and (pooled over seeds) whose seeds agree in sign."""
    agreeing = rows["seeds_agree"].map(agree) if "seeds_agree" in rows else True
    return rows[(rows["p_adj"] < ALPHA) & agreeing]


def resolved(row) -> int:
    """+1 / −1 when a pooled row's interval lies above / below 0 and every seed agrees, else 0."""
    if not agree(getattr(row, "seeds_agree", True)):
        return 0
    return 1 if row.ci_low > 0 else -1 if row.ci_high < 0 else 0
