"""Cross-language analysis: the comparison set of each language side by side, and their differences.

The languages are independent samples of utterances, so the bootstrap
distribution of a difference CKA_a − CKA_b at one layer is the difference of
the two languages' independent bootstrap draws (Efron & Tibshirani 1993,
§8.3, two-sample problems); its interval (that of the measure,
:meth:`~cka_probe.inference.resample_measures.ResampledMeasure.interval`)
and a two-sided bootstrap p-value, BH-adjusted over the layers of one
comparison, are reported per layer of the diagonal, per seed replicate (seed k
of one language against seed k of the other) and pooled over seeds (the
difference of the two languages' pooled draws).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.inference.effects import effect_rows
from cka_probe.study.cross_task import CrossTaskResult, cross_task_by_language
from cka_probe.study.schema import CELL_COLUMNS, EFFECT_COLUMNS, diagonal, pooled

DIFF_COLUMNS: tuple[str, ...] = (
    *CELL_COLUMNS,
    "index",
    "language_a",
    "language_b",
    "seed",
    "seeds",
    "cka_a",
    "cka_b",
    "diff",
    *EFFECT_COLUMNS,
    "n_a",
    "n_b",
    "measure",
    "estimator",
)


def _pair(a: CrossTaskResult, b: CrossTaskResult, level: float) -> pd.DataFrame:
    """Per-layer differences (diagonal of every comparison) between two languages."""
    keys = ["part", "comparison", "index_a"]
    merged = pooled(diagonal(a.table)).merge(pooled(diagonal(b.table)), on=keys, suffixes=("", "_2"))
    if merged.empty:
        raise CKAProbeError("the two languages share no comparison layers to difference")
    rows = []
    for (part, name), group in merged.groupby(["part", "comparison"], sort=False):
        index = group["index_a"].to_numpy()
        ka, kb = a.seed_estimates[part, name][:, index, index], b.seed_estimates[part, name][:, index, index]
        k = min(len(ka), len(kb))
        draws = a.seed_draws[part, name][:k, :, index, index] - b.seed_draws[part, name][:k, :, index, index]
        delta = a.draws[part, name][:, index, index] - b.draws[part, name][:, index, index]  # (R, layers)
        effects = effect_rows(
            ka[:k] - kb[:k],
            draws,
            key="",
            pooled=delta,
            interval=lambda d, e: a.statistics.interval(d, e, level),
        )
        effects["cka_a"] = np.concatenate([*ka[:k], ka.mean(0)])
        effects["cka_b"] = np.concatenate([*kb[:k], kb.mean(0)])
        effects["diff"] = effects["cka_a"] - effects["cka_b"]
        rows.append(
            group.iloc[effects["cell"]]
            .reset_index(drop=True)
            .drop(columns=["seed", "seeds", "ci_low", "ci_high", "p", "p_adj"])
            .join(effects)
        )
    out = pd.concat(rows, ignore_index=True)
    out = out.rename(
        columns={
            "index_a": "index",
            "language": "language_a",
            "language_2": "language_b",
            "n": "n_a",
            "n_2": "n_b",
        }
    )
    return out[list(DIFF_COLUMNS)]


def language_differences(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Differences CKA(language_a) − CKA(language_b) per layer, for every pair of languages (sorted names)."""
    if len(results) < 2:
        raise CKAProbeError(f"cross-language analysis needs two languages, got {sorted(results)}")
    pairs = combinations(sorted(results), 2)
    return pd.concat([_pair(results[a], results[b], level) for a, b in pairs], ignore_index=True)


def cross_lang(
    stores: Sequence[str | Path], *, level: float = 0.95, **options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cross-task tables of all languages side by side, and their per-layer differences.

    ``options`` are those of :func:`cka_probe.study.cross_task.cross_task_arrays`.
    Returns ``(table, differences)``.
    """
    results = cross_task_by_language(stores, level=level, **options)
    table = pd.concat([result.table for result in results.values()], ignore_index=True)
    return table, language_differences(results, level=level)
