"""Gaussian representations with a known population linear CKA, frames grouped by utterance.

For checking intervals by simulation (``benchmarks/bench_coverage.py``, the
coverage test). Shared signal z ~ N(0, Λ) and independent noises e_k ~ N(0, Λ),
Λ = diag(1, 1/2, ..., 1/d) (a decaying spectrum, as activations have):

    x = z + a₀ e₀,  y_k = z + a_k e_k   ⇒   Σ_xx = (1 + a₀²) Λ, Σ_yy = (1 + a_k²) Λ, Σ_xy = Λ,

so the population linear CKA ‖Σ_xy‖²_F / (‖Σ_xx‖_F ‖Σ_yy‖_F) = 1 / ((1 + a₀²)(1 + a_k²)),
whatever Λ. Two targets sharing x give the difference of two CKAs that share
one model. Utterance structure: frame t of utterance g is
√ρ u_g + √(1 − ρ) v_gt with u, v independent draws of (z, e), so every frame
has the population above and frames of one utterance correlate by ρ.
Seed replicates (:func:`draw_seeds`) share z, the utterances' signal, and
draw their own noises, the target's scaled by e^{τξ_k}: training variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cka_probe.errors import CKAProbeError


@dataclass(frozen=True)
class Regime:
    """Population CKA of x with each target, utterances, width, frames per utterance, within-utterance
    correlation."""

    ckas: tuple[float, ...]
    n: int
    d: int
    frames: int = 1
    rho: float = 0.0

    @property
    def noise(self) -> np.ndarray:
        """a₀, a₁, ... with a₀ = a_k and 1/(1 + a²)² = the first CKA; further targets keep a₀ fixed."""
        if not all(0 < c <= 1 for c in self.ckas):
            raise CKAProbeError(f"population CKAs must be in (0, 1], got {self.ckas}")
        a0 = np.sqrt(1 / np.sqrt(self.ckas[0]) - 1)
        return np.array([a0, *(np.sqrt(1 / (c * (1 + a0**2)) - 1) for c in self.ckas)])


def population_cka(regime: Regime) -> np.ndarray:
    """The population CKA of x with each target (k,), from the closed form."""
    a = regime.noise
    return 1 / ((1 + a[0] ** 2) * (1 + a[1:] ** 2))


def _grouped(regime: Regime, rng: np.random.Generator) -> np.ndarray:
    """One draw of (z or e) for every frame (n·frames, d), frames of one utterance correlated by ρ."""
    scale = 1 / np.sqrt(np.arange(1, regime.d + 1))
    shared = rng.standard_normal((regime.n, 1, regime.d))
    own = rng.standard_normal((regime.n, regime.frames, regime.d))
    return ((np.sqrt(regime.rho) * shared + np.sqrt(1 - regime.rho) * own) * scale).reshape(-1, regime.d)


def draw(regime: Regime, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``x (n·frames, d)``, targets ``[y_k (n·frames, d)]`` and the utterance label of each row."""
    z = _grouped(regime, rng)
    x, *ys = (z + a * _grouped(regime, rng) for a in regime.noise)
    return x, ys, np.repeat(np.arange(regime.n), regime.frames)


def seed_mean_cka(regime: Regime, tau: float) -> float:
    """The population CKA of x with the first target averaged over seeds whose target noise is a₁·e^{τξ},
    ξ ~ N(0, 1): E_ξ[1 / ((1 + a₀²)(1 + a₁² e^{2τξ}))] (Gauss–Hermite quadrature, 60 nodes)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    a = regime.noise
    return float(
        np.sum(weights / ((1 + a[0] ** 2) * (1 + a[1] ** 2 * np.exp(2 * tau * nodes)))) / np.sum(weights)
    )


def draw_seeds(
    regime: Regime, seeds: int, tau: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """K seed replicates ``x_k``, ``y_k`` (n·frames, d) of the first target on the same utterances: the signal
    z
    is shared, each seed draws its own noises and its target noise scale a₁·e^{τξ_k} (training variance)."""
    z, a = _grouped(regime, rng), regime.noise
    xs = [z + a[0] * _grouped(regime, rng) for _ in range(seeds)]
    ys = [z + a[1] * np.exp(tau * rng.standard_normal()) * _grouped(regime, rng) for _ in range(seeds)]
    return xs, ys
