"""Seeded resampling statistics for CKA: group bootstrap intervals and permutation tests.

Frames of one utterance are not independent samples, so both procedures
resample *groups* (e.g. utterance ids, one label per row): the bootstrap draws
whole groups with replacement (Efron & Tibshirani 1993, percentile interval);
the permutation test pairs each group of x with another group of y.

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

from cka_probe.cka.pair import linear_cka
from cka_probe.errors import CKAProbeError

Statistic = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval around ``estimate`` (the statistic on all rows)."""

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


def group_rows(groups: Sequence | None, n: int) -> list[np.ndarray]:
    """Row indices of each group, in order of first appearance; ``None`` makes every row a group."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise CKAProbeError(f"groups must hold one label per row: {labels.shape[0] if labels.ndim else 0} labels for {n} rows")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == g) for g in order]


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
    statistic: Callable = linear_cka,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` resampling whole groups with replacement.

    ``bootstrap_ci(x, y, groups=utterance_ids)`` gives the interval of
    ``linear_cka(x, y)``; ``bootstrap_ci(fn, groups=ids)`` of ``fn(rows, rows)``.
    Note: repeated rows bias the debiased estimator; prefer biased CKA here or many groups.
    """
    fn, n = as_statistic(x, y, groups, statistic)
    if not 0 < confidence < 1:
        raise CKAProbeError(f"confidence must be in (0, 1), got {confidence}")
    parts = group_rows(groups, n)
    if len(parts) < 2:
        raise CKAProbeError("the bootstrap needs at least 2 groups")
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for b in tqdm(range(n_resamples), desc="bootstrap", leave=False, disable=None):
        rows = np.concatenate([parts[g] for g in rng.integers(0, len(parts), len(parts))])
        values[b] = fn(rows, rows)
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    everything = np.arange(n)
    return Interval(fn(everything, everything), float(low), float(high), confidence, n_resamples, len(parts))


def paired_rows(parts: list[np.ndarray], order: np.ndarray, n: int) -> np.ndarray:
    """Rows of y to pair with x's rows when x's group g meets y's group ``order[g]``.

    Groups of other lengths are matched by relative position (row k of m takes
    row floor(k m' / m) of the m' rows), keeping each group's internal order.
    """
    rows_y = np.empty(n, dtype=np.int64)
    for target, source in zip(parts, (parts[g] for g in order)):
        rows_y[target] = source[np.arange(len(target)) * len(source) // len(target)]
    return rows_y


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
    rng = np.random.default_rng(seed)
    rows_x = np.arange(n)
    observed = fn(rows_x, rows_x)
    null = np.array([
        fn(rows_x, paired_rows(parts, rng.permutation(len(parts)), n))
        for _ in tqdm(range(n_permutations), desc="permutations", leave=False, disable=None)
    ])
    p_value = (1 + np.count_nonzero(null >= observed)) / (1 + n_permutations)
    return PermutationResult(observed, float(p_value), n_permutations, len(parts), null)
