"""Resampling statistics of any registered measure: estimates, bootstrap and permutation grids,
intervals and permutation p-values, parameterised by the measure's registry entry.

The grids come from the entry's resampling (:class:`cka_probe.measures.registry.Resampling`):
for linear CKA the Gram-space fast path of :mod:`cka_probe.measures.gram_resample`
(tie-corrected), for every other measure the measure recomputed on the
resampled rows. A bootstrap resample takes the same rows of both sides (copies
included), a permutation shuffles the rows of the second side.

* Interval: tie-corrected draws (linear CKA) get
  :func:`~cka_probe.inference.intervals.cka_interval` (percentile for the
  debiased estimator, basic for the biased one, as simulated in
  ``benchmarks/bench_coverage.py``); any other measure the percentile interval
  (Efron & Tibshirani 1993, §13.3; not calibrated by simulation).
* Permutation p-value: the share of null values at least as *similar* as the
  observed one, p = (1 + count) / (1 + R) (Phipson & Smyth 2010), counting
  ``>=`` for a similarity and ``<=`` for a distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cka_probe.inference.intervals import cka_interval, percentile_interval, permutation_pvalue
from cka_probe.measures.registry import Layers, lookup


class ResampledMeasure:
    """The resampling statistics of the registered ``measure``.

    ``debiased`` is the estimator choice of linear CKA and applies where the
    measure's resampling takes it; ``options`` are further options of its
    resampled grid (a ``CKAProbeError`` names any it does not take).
    """

    def __init__(self, measure: str = "cka", *, debiased: bool = True, **options) -> None:
        self.measure = lookup(measure)
        self.resampling = self.measure.resampling
        self.measure.check_options(options, self.resampling.options)
        self.options = {
            k: v for k, v in {"debiased": debiased, **options}.items() if k in self.resampling.options
        }

    @property
    def name(self) -> str:
        """The measure's registered name."""
        return self.measure.name

    @property
    def estimator(self) -> str:
        """ "debiased" or "biased" where the resampling takes that choice (linear CKA), else the measure's
        name."""
        if "debiased" not in self.options:
            return self.name
        return "debiased" if self.options["debiased"] else "biased"

    @property
    def kernel(self) -> str:
        """The kernel of the resampled grid ("linear" for CKA), "-" where none applies."""
        return self.resampling.kernel

    def layers(self, layers: Mapping[str, np.ndarray], *, source: str = "") -> Layers:
        """One model side's layers (name -> ``(n, d)``) held for resampling; ``source`` prefixes errors."""
        return self.resampling.layer_set(layers, source=source)

    def point_estimate(self, a: Layers, b: Layers) -> np.ndarray:
        """The measure ``(L_a, L_b)`` on all n rows."""
        return self.resampling.point_estimate(a, b, **self.options)

    def bootstrap(self, a: Layers, b: Layers, indices: Sequence[np.ndarray]) -> np.ndarray:
        """``(R, L_a, L_b)``: the measure on each resample ``indices[r]`` ``(n,)``, the same rows on both
        sides."""
        return self.resampling.bootstrap(a, b, indices, **self.options)

    def permuted(self, a: Layers, b: Layers, permutations: Sequence[np.ndarray]) -> np.ndarray:
        """``(R, L_a, L_b)`` with the rows of ``b`` shuffled by each permutation: the null of no
        association."""
        return self.resampling.permuted(a, b, permutations, **self.options)

    def interval(self, draws: np.ndarray, estimate, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` over axis 0 of ``draws (R, ...)`` around ``estimate (...)`` (module docstring)."""
        if self.resampling.tie_corrected:
            return cka_interval(draws, estimate, level, debiased=bool(self.options.get("debiased")))
        return percentile_interval(draws, level)

    def permutation_pvalue(self, observed: np.ndarray, null: np.ndarray) -> np.ndarray:
        """One-sided p ``(...)`` of "more similar than shuffled rows" from ``observed (...)`` and
        ``null (R, ...)``, in the direction of the measure's kind."""
        sign = 1.0 if self.measure.kind == "similarity" else -1.0
        return permutation_pvalue(sign * np.asarray(observed), sign * np.asarray(null))
