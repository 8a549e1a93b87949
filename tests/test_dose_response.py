"""The dose–response slope over levels of the divergence dial: coverage of a planted slope in simulation,
verdicts, and errors for input it cannot fit."""

from __future__ import annotations

import numpy as np
import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.inference.dose_response import VERDICTS, slope_from_draws, slope_from_se

LEVELS = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
SE = np.array([0.02, 0.03, 0.05, 0.04, 0.07])
TRENDS = {
    "linear": 0.1 + 0.05 * LEVELS,
    "bent": 0.1 + 0.3 * LEVELS - 0.12 * LEVELS**2,  # its slope: the inverse-variance-weighted linear trend
}


def planted(mu: np.ndarray) -> float:
    """The weighted least-squares slope of the true per-level values (numpy's fit, 1/se per residual)."""
    return float(np.polyfit(LEVELS, mu, 1, w=1 / SE)[0])


def sweeps(mu: np.ndarray, n: int = 1000, draws: int = 0, seed: int = 0):
    """``n`` simulated sweeps over the levels: estimates μ + se·z, and per level ``draws`` bootstrap-like
    draws around each estimate."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        estimates = mu + SE * rng.standard_normal(len(LEVELS))
        yield estimates, estimates + SE * rng.standard_normal((draws, len(LEVELS)))


@pytest.mark.parametrize("trend", sorted(TRENDS))
def test_the_interval_from_standard_errors_covers_a_planted_slope(trend):
    mu = TRENDS[trend]
    fits = [slope_from_se(LEVELS, y, SE) for y, _ in sweeps(mu)]
    covered = np.mean([f.ci_low <= planted(mu) <= f.ci_high for f in fits])
    assert 0.93 <= covered <= 0.97, covered
    assert np.mean([f.slope for f in fits]) == pytest.approx(planted(mu), abs=3 * SE.max() / np.sqrt(1000))


@pytest.mark.parametrize("trend", sorted(TRENDS))
def test_the_interval_from_bootstrap_draws_covers_a_planted_slope(trend):
    mu = TRENDS[trend]
    fits = [slope_from_draws(LEVELS, y, d) for y, d in sweeps(mu, draws=1000)]
    covered = np.mean([f.ci_low <= planted(mu) <= f.ci_high for f in fits])
    assert 0.93 <= covered <= 0.97, covered


def test_verdicts_follow_the_interval():
    rising, falling, flat = 0.1 + 0.1 * LEVELS, 0.3 - 0.1 * LEVELS, np.full(len(LEVELS), 0.2)
    assert slope_from_se(LEVELS, rising, SE).verdict == VERDICTS[1] == "grows with divergence"
    assert slope_from_se(LEVELS, falling, SE).verdict == VERDICTS[-1]
    assert slope_from_se(LEVELS, flat, SE).verdict == VERDICTS[0]
    unresolved = np.mean([slope_from_se(LEVELS, y, SE).verdict == VERDICTS[0] for y, _ in sweeps(flat)])
    assert unresolved >= 0.93  # a flat response is rarely called a trend


def test_standard_errors_weight_the_levels():
    # one level far off the line: weighted by a large se it barely moves the slope, by a small one it does
    y = 0.1 * LEVELS + np.array([0, 0, 0, 0, 1.0])
    loose = slope_from_se(LEVELS, y, [0.01, 0.01, 0.01, 0.01, 10.0])
    tight = slope_from_se(LEVELS, y, [0.01, 0.01, 0.01, 0.01, 0.001])
    assert loose.slope == pytest.approx(0.1, abs=1e-4) and tight.slope > 0.4


@pytest.mark.parametrize(
    ("levels", "estimates", "se", "message"),
    [
        ([1, 1, 1], [0, 1, 2], [1, 1, 1], "two distinct levels"),
        ([0, 1, 2], [0, 1], [1, 1, 1], "one length"),
        ([0, 1, 2], [0, np.nan, 2], [1, 1, 1], "finite"),
        ([0, 1, 2], [0, 1, 2], [1, 0, 1], "standard error > 0"),
    ],
)
def test_input_it_cannot_fit_is_named(levels, estimates, se, message):
    with pytest.raises(CKAProbeError, match=message):
        slope_from_se(levels, estimates, se)


def test_draws_need_two_rows_per_level():
    with pytest.raises(CKAProbeError, match="R >= 2"):
        slope_from_draws(LEVELS, LEVELS, np.zeros((1, len(LEVELS))))
