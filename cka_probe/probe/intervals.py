"""Intervals of the probes: grouped bootstrap of held-out predictions, pooled over seeds, and differences.

A probe's estimate is the mean of a per-word held-out value v_w (a forced
choice c_w, a correct decoding, or task minus control correctness for the
selectivity). Words of one group (an utterance, with the utterances of its
sentence, :mod:`cka_probe.probe.groups`) are not independent, so the
bootstrap draws whole groups with replacement (:mod:`cka_probe.inference.resampling`):
resample r with multiplicities m_rg gives θ*_r = Σ_g m_rg S_g / Σ_g m_rg n_g
(S_g the sum of v over group g's n_g words), and the interval is the
percentile interval of the θ*_r (:func:`~cka_probe.inference.intervals.percentile_interval`).
The held-out predictions are resampled, not the probe refitted: the
interval is that of the held-out mean given the fitted probes.

Every call draws with ``np.random.default_rng(seed)`` over the groups in
sorted order, so two stores of one manifest (seed replicates, or two
models) share their resamples. Seeds are pooled by the package's rule
(:func:`~cka_probe.inference.seeds.pooled_draws`: the seed mean of each
resample plus a Student-t seed part); a difference between two models
(e.g. DO − SSO per layer) is the difference of their pooled draws on the
shared resamples, with the two-sided bootstrap p-value
(:func:`~cka_probe.inference.intervals.bootstrap_pvalue`) adjusted over the
layers of each probe by Benjamini–Hochberg (:mod:`cka_probe.inference.adjust`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.inference.adjust import benjamini_hochberg
from cka_probe.inference.intervals import bootstrap_pvalue, percentile_interval
from cka_probe.inference.resampling import bootstrap_counts
from cka_probe.inference.seeds import pooled_draws


@dataclass(frozen=True)
class Outcome:
    """One probe of one layer: held-out values ``(n,)`` of words named ``keys (n,)`` in ``groups (n,)``."""

    values: np.ndarray
    keys: np.ndarray
    groups: np.ndarray

    @property
    def estimate(self) -> float:
        """The mean held-out value; NaN without words."""
        return float(self.values.mean()) if len(self.values) else float("nan")


@dataclass
class StoreProbe:
    """Every probe (``{layer: {probe: Outcome}}``) of one store, and ``info`` (the chosen regularisers,
    word counts) for the JSON sidecar."""

    store: str
    stream: str
    layers: dict[str, dict[str, Outcome]]
    info: dict = field(default_factory=dict)


def grouped_draws(outcome: Outcome, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot,)`` means of the held-out values over group bootstrap resamples (module docstring)."""
    if not len(outcome.values):
        return np.full(n_boot, np.nan)
    _, group = np.unique(outcome.groups, return_inverse=True)
    sums = np.bincount(group, weights=outcome.values)
    sizes = np.bincount(group).astype(np.float64)
    counts = bootstrap_counts(np.random.default_rng(seed), len(sizes), n_boot).astype(np.float64)
    return counts @ sums / (counts @ sizes)


def _same_words(outcomes: Sequence[Outcome], what: str) -> None:
    """Raise unless every outcome holds the same words in the same groups."""
    first = outcomes[0]
    for other in outcomes[1:]:
        if not (np.array_equal(first.keys, other.keys) and np.array_equal(first.groups, other.groups)):
            raise CKAProbeError(
                f"{what}: the stores' probes hold different words; probe stores of one manifest"
            )


def pooled(outcomes: Sequence[Outcome], n_boot: int, seed: int, key: str) -> tuple[float, np.ndarray]:
    """The mean over seeds of the estimates and its draws ``(n_boot,)`` (:func:`pooled_draws`)."""
    _same_words(outcomes, key)
    estimates = np.array([o.estimate for o in outcomes])
    draws = np.stack([grouped_draws(o, n_boot, seed) for o in outcomes])  # (K, R)
    return float(estimates.mean()), pooled_draws(draws, estimates, seed=seed, key=key)


def summarise(
    results: Sequence[StoreProbe], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """One row per layer of seed replicates ``results`` of one model: for each probe P the columns
    ``P``, ``P_lo``, ``P_hi`` (mean over seeds, percentile interval) and ``n_P`` (words)."""
    first = results[0]
    rows = []
    for layer, probes in first.layers.items():
        row: dict = {"layer": layer, "stream": first.stream, "seeds": len(results)}
        for name, outcome in probes.items():
            estimate, draws = pooled(
                [r.layers[layer][name] for r in results], n_boot, seed, f"{layer}/{name}"
            )
            low, high = percentile_interval(draws, level) if len(outcome.values) else (np.nan, np.nan)
            row |= {
                name: estimate,
                f"{name}_lo": float(low),
                f"{name}_hi": float(high),
                f"n_{name}": len(outcome.values),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def probe_differences(
    a: Sequence[StoreProbe],
    b: Sequence[StoreProbe],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """A − B per layer (layers of one name in both) and probe: rows ``layer, probe, estimate, ci_low,
    ci_high, p, p_adj, seeds_a, seeds_b, n_words``; ``a`` and ``b`` the seed replicates of two models probed
    on one manifest, p two-sided and BH-adjusted over the layers of each probe."""
    layers = [layer for layer in a[0].layers if layer in b[0].layers]
    if not layers:
        raise CKAProbeError(f"{a[0].store} and {b[0].store} share no layer name to compare")
    rows = []
    for layer in layers:
        for name, outcome in a[0].layers[layer].items():
            key = f"{layer}/{name}"
            _same_words([a[0].layers[layer][name], b[0].layers[layer][name]], key)
            est_a, draws_a = pooled([r.layers[layer][name] for r in a], n_boot, seed, f"a/{key}")
            est_b, draws_b = pooled([r.layers[layer][name] for r in b], n_boot, seed, f"b/{key}")
            diff = draws_a - draws_b
            low, high = percentile_interval(diff, level) if len(outcome.values) else (np.nan, np.nan)
            p = float(bootstrap_pvalue(diff)) if len(outcome.values) else np.nan
            rows.append(
                {
                    "layer": layer,
                    "probe": name,
                    "estimate": est_a - est_b,
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p": p,
                    "seeds_a": len(a),
                    "seeds_b": len(b),
                    "n_words": len(outcome.values),
                }
            )
    table = pd.DataFrame(rows)
    table.insert(
        table.columns.get_loc("p") + 1,
        "p_adj",
        table.groupby("probe", sort=False)["p"].transform(benjamini_hochberg),
    )
    return table
