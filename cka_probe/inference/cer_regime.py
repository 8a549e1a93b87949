"""Per-utterance character errors of an SO and a DO model with a known population CER gap.

For checking the CER-gap interval by simulation (``benchmarks/bench_coverage.py``,
the coverage test). Utterance i has a reference length L_i ~ U{10, …, 59} and
a difficulty δ_i ~ Gamma(shape, 1/shape) (mean 1; shape 1.0 gives per-utterance
skewness 1.6 and excess kurtosis 6.5, as the ``tiny`` run's most skewed bins,
shape 0.5 gives 2.6 and 14, beyond any of them) shared by both models. Model m makes Poisson(L_i p_m δ_i)
errors and, with probability
``burst``, a burst of Poisson(L_i / 2) more (a repeated or dropped phrase), as
often for either model. So E[e_DO − e_SO | L] = L (p_DO − p_SO), and the
population gap 100 · Σ(e_DO − e_SO) / Σ L is 100 (p_DO − p_SO) CER points.

Seed replicates: each of ``seeds`` training seeds k draws its own
p_DO,k ~ N(p_DO, τ²) (training variance, τ in error rate) and fresh errors
for both models on the same utterances; the gap averaged over seeds is still
100 (p_DO − p_SO) (p_DO,k is clipped at 0, which τ ≤ p_DO / 4 makes negligible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CERRegime:
    """Utterances, error rates, difficulty shape, burst probability, seeds and their spread τ."""

    n: int
    p_so: float
    p_do: float
    shape: float = 2.0
    burst: float = 0.0
    seeds: int = 1
    tau: float = 0.0

    @property
    def gap(self) -> float:
        """The population DO − SO gap in CER points."""
        return 100 * (self.p_do - self.p_so)

    @property
    def label(self) -> str:
        tails = f" shape={self.shape}" + (f" burst={self.burst}" if self.burst else "")
        seeds = f" K={self.seeds} τ={self.tau}" if self.seeds > 1 else ""
        return f"n={self.n} p={self.p_so}/{self.p_do}{tails}{seeds}"


def draw_errors(regime: CERRegime, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors ``e_so (K, n)``, ``e_do (K, n)`` of K seeds and reference lengths ``(n,)``."""
    length = rng.integers(10, 60, regime.n).astype(float)
    difficulty = rng.gamma(regime.shape, 1 / regime.shape, regime.n)

    def errors(p: float) -> np.ndarray:
        bursts = (rng.random(regime.n) < regime.burst) * rng.poisson(length / 2)
        return (rng.poisson(length * max(p, 0.0) * difficulty) + bursts).astype(float)

    p_do = regime.p_do + regime.tau * rng.standard_normal(regime.seeds)
    e_so = np.stack([errors(regime.p_so) for _ in range(regime.seeds)])
    e_do = np.stack([errors(p) for p in p_do])
    return e_so, e_do, length
