"""One effect over seed replicates: per-seed rows and the pooled row, with interval, p and sign agreement.

Every table of the analysis reports an effect (a CKA difference, a CER gap)
for each seed replicate k (``seed`` = k) and pooled over the K seeds
(``seed`` = ``all``: the mean over seeds, its interval from the hierarchical
bootstrap over seeds, then utterances, :func:`cka_probe.cka.hierarchical.pooled_draws`).
p is the two-sided bootstrap p-value; ``p_adj`` its Benjamini–Hochberg
adjustment over the cells of one table block (e.g. the layers of one
comparison and language). ``seeds_agree`` (pooled rows) is True when every
seed's estimate has the sign of the pooled mean: a verdict needs it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cka_probe.cka.adjust import benjamini_hochberg
from cka_probe.cka.hierarchical import pooled_draws
from cka_probe.cka.resample import bootstrap_pvalue

Interval = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def signs_agree(estimates: np.ndarray) -> np.ndarray:
    """(m,) whether every seed's estimate (K, m) is non-zero with the sign of their mean."""
    return np.all(np.sign(estimates) == np.sign(estimates.mean(axis=0)), axis=0) & (estimates.mean(axis=0) != 0)


def _stats(estimate: np.ndarray, draws: np.ndarray, interval: Interval) -> dict[str, np.ndarray]:
    if not len(draws):
        missing = np.full(estimate.shape, np.nan)
        return {"estimate": estimate, "ci_low": missing, "ci_high": missing, "p": missing, "p_adj": missing}
    low, high = interval(draws, estimate)
    p = bootstrap_pvalue(draws)
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "p": p, "p_adj": benjamini_hochberg(p)}


def effect_rows(estimates: np.ndarray, draws: np.ndarray, *, interval: Interval, key: str,
                pooled: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
    """Rows ``cell, seed, seeds, estimate, ci_low, ci_high, p, p_adj, seeds_agree`` for estimates (K, m)
    and per-seed draws (K, R, m) on shared utterance resamples; ``pooled`` replaces the pooled draws
    (e.g. the difference of two independent samples' pooled draws)."""
    estimates, k = np.atleast_2d(estimates), len(estimates)
    frames = [pd.DataFrame({"cell": np.arange(estimates.shape[1]), "seed": str(i), "seeds": 1, "seeds_agree": pd.NA,
                            **_stats(estimates[i], draws[i], interval)}) for i in range(k)]  # fmt: skip
    if pooled is None:
        pooled = pooled_draws(draws, key=key) if draws.shape[1] else draws[0]
    frames.append(pd.DataFrame({"cell": np.arange(estimates.shape[1]), "seed": "all", "seeds": k,
                                "seeds_agree": signs_agree(estimates),
                                **_stats(estimates.mean(axis=0), pooled, interval)}))  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"seeds_agree": "boolean"})
