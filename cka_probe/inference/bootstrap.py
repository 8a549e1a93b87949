"""Seeded resampling statistics for CKA: group bootstrap intervals and permutation tests.

Frames of one utterance are not independent samples, so both procedures
resample *groups* (e.g. utterance ids, one label per row): the bootstrap draws
whole groups with replacement (Efron & Tibshirani 1993); the permutation test
pairs each group of x with another group of y. The draws are those of
:mod:`cka_probe.inference.resampling`, seeded by ``seed``.

Intervals (chosen by simulation, ``benchmarks/bench_coverage.py``): for linear
CKA of data (``statistic=None``) the interval is the percentile interval of
the group bootstrap of the *debiased* estimator written over distinct groups
(:mod:`cka_probe.measures.grouped`: no term pairs two frames of one utterance, nor
a group with its own copies), which covered the population CKA at the
nominal level also for strongly correlated frames of one utterance, where the
percentile interval of biased CKA fell to 0–90 % (its bias, ≈ d/(n+d) for
unrelated representations, is not in the bootstrap distribution).
``debiased=False`` gives biased CKA with the basic interval (better than the
percentile one, still uncalibrated where d is not small against n). Any other
statistic gets the BCa interval (Efron 1987) with the group jackknife.

Both accept either data, ``(x (n, dx), y (n, dy))`` with ``statistic(x_rows,
y_rows) -> float`` (default ``linear_cka``), or a callable ``fn(rows_x,
rows_y) -> float`` of two integer index arrays, for statistics over data the
caller holds (e.g. one layer pair of two activation stores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cka_probe.errors import CKAProbeError
from cka_probe.inference.intervals import bca_interval, cka_interval
from cka_probe.inference.resampling import (
    bootstrap_counts,
    bootstrap_draws,
    group_rows,
    grouped_rows,
    leave_one_out,
    paired_rows,
    permutations,
)
from cka_probe.measures.grouped import GroupedCKA
from cka_probe.measures.pair import linear_cka
from cka_probe.measures.weighted import weighted_linear_cka

Statistic = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval (method: see the module) around ``estimate`` (the statistic on all rows)."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_groups: int


@dataclass(frozen=True)
class PermutationResult:
    """Observed statistic, one-sided p-value P(null >= observed) and the null values."""

    statistic: float
    p_value: float
    n_permutations: int
    n_groups: int
    null: np.ndarray


def as_statistic(x, y, groups, statistic: Callable) -> tuple[Statistic, int]:
    """``(fn(rows_x, rows_y) -> float, n)`` from data or from a callable ``x``."""
    if callable(x):
        if y is not None or groups is None:
            raise CKAProbeError("with a callable statistic give groups (one label per row) and no y")
        return x, len(groups)
    if y is None:
        raise CKAProbeError("give both x and y, or a callable of (rows_x, rows_y)")
    if len(x) != len(y):
        raise CKAProbeError(f"x has {len(x)} rows but y has {len(y)}")
    return (lambda rows_x, rows_y: float(statistic(x[rows_x], y[rows_y]))), len(x)


def bootstrap_ci(
    x,
    y=None,
    *,
    groups: Sequence | None = None,
    statistic: Callable | None = None,
    debiased: bool = True,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Group bootstrap interval, resampling whole groups with replacement (see the module's notes on methods).

    ``bootstrap_ci(x, y, groups=utterance_ids)`` gives the debiased linear CKA
    of x and y and its interval for the population CKA; ``statistic=f`` that of
    ``f(x_rows, y_rows)``; ``bootstrap_ci(fn, groups=ids)`` that of ``fn(rows, rows)``.
    """
    if not 0 < confidence < 1:
        raise CKAProbeError(f"confidence must be in (0, 1), got {confidence}")
    if statistic is None and not callable(x):
        return _linear_interval(x, y, groups, debiased, n_resamples, confidence, seed)
    fn, n = as_statistic(x, y, groups, statistic or linear_cka)
    parts = _parts(groups, n)
    draws = bootstrap_draws(np.random.default_rng(seed), len(parts), n_resamples)
    values = np.empty(n_resamples)
    for b, draw in enumerate(tqdm(draws, desc="bootstrap", leave=False, disable=None)):
        rows = grouped_rows(parts, draw)
        values[b] = fn(rows, rows)
    jackknife = np.array([fn(rows, rows) for rows in leave_one_out(parts)])
    everything = np.arange(n)
    estimate = fn(everything, everything)
    low, high = bca_interval(values, estimate, jackknife, confidence)
    return Interval(estimate, float(low), float(high), confidence, n_resamples, len(parts))


def _parts(groups: Sequence | None, n: int) -> list[np.ndarray]:
    parts = group_rows(groups, n)
    if len(parts) < 2:
        raise CKAProbeError("the bootstrap needs at least 2 groups")
    return parts


def _linear_interval(
    x, y, groups, debiased: bool, n_resamples: int, confidence: float, seed: int
) -> Interval:
    """Linear CKA with its tie-corrected group bootstrap (multiplicities of groups, never copies).

    Debiased: the U-statistic over distinct groups (:mod:`cka_probe.measures.grouped`), percentile interval;
    biased: CKA of all rows with copy pairs of rows left out (:mod:`cka_probe.measures.weighted`), basic
    interval.
    """
    if y is None:
        raise CKAProbeError("give both x and y, or a callable of (rows_x, rows_y)")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise CKAProbeError(f"x has {len(x)} rows but y has {len(y)}")
    parts = _parts(groups, len(x))
    if debiased and len(parts) < 4:
        raise CKAProbeError(f"debiased CKA needs at least 4 groups, got {len(parts)}")
    label = np.empty(len(x), dtype=np.int64)
    for g, rows in enumerate(parts):
        label[rows] = g

    grouped = GroupedCKA(x, y, label) if debiased else None

    def resampled(counts: np.ndarray) -> np.ndarray:
        """CKA (B,) of the resamples with group multiplicities ``counts (B, groups)``."""
        return grouped(counts) if debiased else weighted_linear_cka(x, y, counts[:, label])

    estimate = float(resampled(np.ones((1, len(parts))))[0])
    counts = bootstrap_counts(np.random.default_rng(seed), len(parts), n_resamples)  # (B, groups)
    width = max(x.shape[1], y.shape[1])
    chunk = max(1, int(2**24 // (2 * width**2 + len(x) * (width + 2))))  # about 128 MB of float64 per chunk
    values = np.concatenate(
        [resampled(counts[i : i + chunk]) for i in range(0, n_resamples, chunk)] or [np.empty(0)]
    )
    low, high = cka_interval(values, estimate, confidence, debiased=debiased)
    return Interval(estimate, float(low), float(high), confidence, n_resamples, len(parts))


def permutation_test(
    x,
    y=None,
    *,
    groups: Sequence | None = None,
    statistic: Callable = linear_cka,
    n_permutations: int = 1000,
    seed: int = 0,
) -> PermutationResult:
    """Permutation test of CKA against independence, permuting whole groups of y against x.

    p = (1 + #{null >= observed}) / (1 + n_permutations) (Phipson & Smyth 2010),
    never 0. Without ``groups`` rows are permuted individually.
    """
    fn, n = as_statistic(x, y, groups, statistic)
    parts = group_rows(groups, n)
    if len(parts) < 2:
        raise CKAProbeError("the permutation test needs at least 2 groups")
    orders = permutations(np.random.default_rng(seed), len(parts), n_permutations)
    rows_x = np.arange(n)
    observed = fn(rows_x, rows_x)
    null = np.array(
        [
            fn(rows_x, paired_rows(parts, order, n))
            for order in tqdm(orders, desc="permutations", leave=False, disable=None)
        ]
    )
    p_value = (1 + np.count_nonzero(null >= observed)) / (1 + n_permutations)
    return PermutationResult(observed, float(p_value), n_permutations, len(parts), null)
