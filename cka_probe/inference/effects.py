"""One effect over seed replicates: per-seed rows and the pooled row, with interval, p and sign agreement.

Every table of the analysis reports an effect (a CKA difference, a CER gap)
for each seed replicate k (``seed`` = k) and pooled over the K seeds
(``seed`` = ``all``: the mean over seeds, its interval from the seed mean's
utterance draws plus a Student-t seed part, :func:`cka_probe.inference.seeds.pooled_draws`).
p is the two-sided bootstrap p-value; ``p_adj`` its Benjamini–Hochberg
adjustment over the cells of one table block (e.g. the layers of one
comparison and language). ``seeds_agree`` (pooled rows) is True when every
seed's estimate has the sign of the pooled mean: a verdict needs it.

:func:`student_rows` is the Student-t variant for a statistic near normal
(the CER gaps): per seed on the bootstrap s.e. with n − 1 df; pooled on the
seed and utterance parts of the variance (:func:`cka_probe.inference.seeds.crossed_parts`,
K − 1 and n − 1 df, Banerjee's interval); p-values matching the intervals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cka_probe.inference.adjust import benjamini_hochberg
from cka_probe.inference.intervals import bootstrap_pvalue, student_se, t_interval, t_pvalue
from cka_probe.inference.seeds import crossed_parts, pooled_draws

Interval = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def signs_agree(estimates: np.ndarray) -> np.ndarray:
    """(m,) whether every seed's estimate (K, m) is non-zero with the sign of their mean."""
    return np.all(np.sign(estimates) == np.sign(estimates.mean(axis=0)), axis=0) & (
        estimates.mean(axis=0) != 0
    )


def _stats(estimate: np.ndarray, draws: np.ndarray, interval: Interval) -> dict[str, np.ndarray]:
    if not len(draws):
        missing = np.full(estimate.shape, np.nan)
        return {"estimate": estimate, "ci_low": missing, "ci_high": missing, "p": missing}
    low, high = interval(draws, estimate)
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "p": bootstrap_pvalue(draws)}


def _t_stats(
    estimate: np.ndarray, parts: list[tuple[np.ndarray, float]], level: float
) -> dict[str, np.ndarray]:
    low, high = t_interval(estimate, parts, level)
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "p": t_pvalue(estimate, parts)}


def _rows(estimates: np.ndarray, per_seed: list[dict], pooled: dict) -> pd.DataFrame:
    """The table of :func:`effect_rows` from each seed's and the pooled ``estimate, ci_low, ci_high, p``."""
    cells = np.arange(estimates.shape[1])
    frames = [
        pd.DataFrame({"cell": cells, "seed": str(i), "seeds": 1, "seeds_agree": pd.NA, **stats})
        for i, stats in enumerate(per_seed)
    ]
    frames.append(
        pd.DataFrame(
            {
                "cell": cells,
                "seed": "all",
                "seeds": len(estimates),
                "seeds_agree": signs_agree(estimates),
                **pooled,
            }
        )
    )
    out = pd.concat(frames, ignore_index=True).astype({"seeds_agree": "boolean"})
    out.insert(
        out.columns.get_loc("p") + 1,
        "p_adj",
        out.groupby("seed", sort=False)["p"].transform(benjamini_hochberg),
    )
    return out


def effect_rows(
    estimates: np.ndarray,
    draws: np.ndarray,
    *,
    interval: Interval,
    key: str,
    pooled: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rows ``cell, seed, seeds, estimate, ci_low, ci_high, p, p_adj, seeds_agree`` for estimates (K, m)
    and per-seed draws (K, R, m) on shared utterance resamples; ``pooled`` replaces the pooled draws
    (e.g. the difference of two independent samples' pooled draws)."""
    estimates = np.atleast_2d(estimates)
    if pooled is None:
        pooled = pooled_draws(draws, estimates, key=key) if draws.shape[1] else draws[0]
    per_seed = [_stats(e, d, interval) for e, d in zip(estimates, draws)]
    return _rows(estimates, per_seed, _stats(estimates.mean(axis=0), pooled, interval))


def student_rows(estimates: np.ndarray, draws: np.ndarray, *, n: int, level: float = 0.95) -> pd.DataFrame:
    """:func:`effect_rows` with Student-t intervals and p for a statistic over n utterances."""
    estimates = np.atleast_2d(estimates)
    per_seed = [_t_stats(e, [(student_se(d, n) ** 2, n - 1)], level) for e, d in zip(estimates, draws)]
    return _rows(
        estimates, per_seed, _t_stats(estimates.mean(axis=0), crossed_parts(estimates, draws, n), level)
    )
