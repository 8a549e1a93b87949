"""Resampling statistics of any similarity measure, with the interface of
:mod:`cka_probe.measures.gram_resample`.

``resample`` is the fast Gram-space path for linear CKA; this module serves
every other measure of :mod:`cka_probe.measures.similarity` (CCA family,
Procrustes, RSA) by recomputing the measure on the resampled rows: a bootstrap
resample takes the same rows of both sides (copies included), a permutation
shuffles the rows of the second side. Permutation p-values count null values
at least as *similar* as the observed one: ``>=`` for similarities, ``<=`` for
distances (Procrustes), p = (1 + count) / (1 + R) (Phipson & Smyth 2010).
Intervals are percentile intervals (not calibrated by simulation, unlike
debiased CKA's). The ``debiased`` arguments exist for the interface of
``resample`` and are ignored: the estimator choice is CKA's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cka_probe.errors import CKAProbeError
from cka_probe.inference.intervals import percentile_interval
from cka_probe.measures.similarity import KINDS, similarity_matrix


class LayerSet:
    """The layers of one model over the same n rows (utterances): name -> ``(n, d)`` float64."""

    def __init__(self, layers: Mapping[str, np.ndarray], *, source: str = "") -> None:
        self.names: list[str] = list(layers)
        self.layers = {name: np.asarray(x, dtype=np.float64) for name, x in layers.items()}
        rows = {x.shape[0] if x.ndim else 0 for x in self.layers.values()}
        if len(rows) > 1:
            raise CKAProbeError(f"{source}: layers have different numbers of rows {sorted(rows)}")
        self.n: int = rows.pop()
        self.source = source

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's rows ``index``."""
        return {name: x[index] for name, x in self.layers.items()}


class MeasureStatistics:
    """``point_estimate``, ``bootstrap``, ``permuted``, ``cka_interval`` and ``permutation_pvalue`` for one
    ``measure``."""

    GramSet = LayerSet  # what the callers of ``resample`` build per model side

    def __init__(self, measure: str, **options) -> None:
        if measure not in KINDS or measure == "cka":
            raise CKAProbeError(f"measure must be one of {[m for m in KINDS if m != 'cka']}, got {measure!r}")
        self.measure, self.options, self.kind = measure, options, KINDS[measure]

    def grid(self, a: dict, b: dict) -> np.ndarray:
        """``(L_a, L_b)`` of the measure on row-aligned layer dicts."""
        return similarity_matrix(a, b, measure=self.measure, **self.options).values

    def point_estimate(self, a: LayerSet, b: LayerSet, *, debiased: bool = False) -> np.ndarray:
        """The measure ``(L_a, L_b)`` on all n rows."""
        return self.grid(a.layers, b.layers)

    def bootstrap(
        self, a: LayerSet, b: LayerSet, indices: Sequence[np.ndarray], *, debiased: bool = False
    ) -> np.ndarray:
        """``(R, L_a, L_b)``: the measure on the rows of each resample, the same rows on both sides."""
        return self._stacked([self.grid(a.rows(i), b.rows(i)) for i in indices], a, b)

    def permuted(
        self, a: LayerSet, b: LayerSet, permutations: Sequence[np.ndarray], *, debiased: bool = False
    ) -> np.ndarray:
        """``(R, L_a, L_b)`` with the rows of ``b`` shuffled by each permutation: the null of no
        association."""
        return self._stacked([self.grid(a.layers, b.rows(p)) for p in permutations], a, b)

    @staticmethod
    def cka_interval(draws: np.ndarray, estimate, level: float = 0.95, *, debiased: bool = False):
        """Percentile interval ``(low, high)`` of the draws over axis 0."""
        return percentile_interval(draws, level)

    def permutation_pvalue(self, observed: np.ndarray, null: np.ndarray) -> np.ndarray:
        """One-sided p of "more similar than shuffled rows", for either direction of the measure."""
        sign = 1.0 if self.kind == "similarity" else -1.0
        return (1 + (sign * null >= sign * observed[None]).sum(axis=0)) / (1 + len(null))

    @staticmethod
    def _stacked(grids: list[np.ndarray], a: LayerSet, b: LayerSet) -> np.ndarray:
        return np.stack(grids) if grids else np.empty((0, len(a.names), len(b.names)))
