"""The CER gap's Student-t intervals: against the textbook t-interval, the crossed seeds × utterances
standard error by simulation, coverage where the basic interval falls short, one seed pooling to itself."""

import numpy as np
import pytest
import scipy.stats

from cka_probe.inference import intervals
from cka_probe.inference.baselines import hierarchical_draws
from cka_probe.inference.cer_regime import CERRegime, draw_errors
from cka_probe.inference.effects import student_rows
from cka_probe.inference.seeds import crossed_parts
from cka_probe.study.cer import gap_draws


def test_t_interval_on_the_bootstrap_se_of_a_mean_is_the_textbook_t_interval():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=40)
    draws = x[rng.integers(0, len(x), (20000, len(x)))].mean(1)
    se = intervals.student_se(draws, len(x))
    np.testing.assert_allclose(se, scipy.stats.sem(x), rtol=0.02)
    low, high = intervals.t_interval(x.mean(), [(se**2, len(x) - 1)])
    expected = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    np.testing.assert_allclose([low, high], expected, rtol=0.01)


def test_the_t_pvalue_is_below_5_percent_exactly_where_the_interval_excludes_0():
    rng = np.random.default_rng(1)
    estimate, se = rng.normal(size=300), rng.uniform(0.1, 1, 300)
    one = [(se**2, 12)]
    low, high = intervals.t_interval(estimate, one)
    p = intervals.t_pvalue(estimate, one)
    np.testing.assert_array_equal(p < 0.05, (low > 0) | (high < 0))
    np.testing.assert_allclose(p, 2 * scipy.stats.t.sf(np.abs(estimate) / se, 12))
    two = [(se**2 / 2, 2), (se**2 / 2, 60)]  # a seed part with 2 df and an utterance part with 60
    low, high = intervals.t_interval(estimate, two)
    p = intervals.t_pvalue(estimate, two)
    np.testing.assert_array_equal(p < 0.05, (low > 0) | (high < 0))
    edge = intervals.t_interval(estimate, two, level=1 - p)  # the 1 − p interval ends at 0
    np.testing.assert_allclose(np.minimum(np.abs(edge[0]), np.abs(edge[1])), 0, atol=1e-7)
    np.testing.assert_array_equal(intervals.t_pvalue(np.array([0.0, 0.3]), [(np.zeros(2), 5)]), [1.0, 0.0])
    np.testing.assert_array_equal(
        intervals.t_pvalue(np.array([0.0, 0.3]), [(np.zeros(2), 2), (np.zeros(2), 9)]), [1.0, 0.0]
    )
    assert np.isnan(intervals.student_se(np.ones((10, 1)), 1)).all()


def test_a_part_without_variance_leaves_the_other_part_s_t_interval():
    parts = [(np.array([0.0]), 2), (np.array([0.49]), 40)]
    expected = scipy.stats.t.interval(0.95, 40, loc=1.0, scale=0.7)
    np.testing.assert_allclose(np.ravel(intervals.t_interval(np.array([1.0]), parts)), expected)


def seed_means(regime: CERRegime, reps: int, seed: int):
    """Per data set: the seed-mean gap and its crossed s.e.² and the hierarchical bootstrap's variance."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        e_so, e_do, length = draw_errors(regime, rng)
        gaps = 100 * (e_do.sum(1) - e_so.sum(1)) / length.sum()
        draws = np.stack([gap_draws(s, d, length, np.random.default_rng(7), 400) for s, d in zip(e_so, e_do)])
        variance = sum(v for v, _ in crossed_parts(gaps, draws, regime.n))
        out.append((gaps.mean(), variance, hierarchical_draws(draws).var()))
    return np.array(out).T


@pytest.mark.parametrize("tau", [0.0, 0.04])
def test_the_crossed_variance_is_the_variance_of_the_seed_mean_over_data_sets(tau):
    """Seeds agree (τ = 0): the hierarchical bootstrap counts each seed's noise twice (measured 2.1× the
    variance); training variance dominates (τ = 0.04): it reads it off three seeds (0.70×). The crossed
    parts: 1.10× and 0.90×."""
    mean, crossed, hierarchical = seed_means(CERRegime(60, 0.05, 0.08, seeds=3, tau=tau), reps=600, seed=2)
    true = mean.var(ddof=1)  # s.e. of this variance ≈ 6 % over 600 data sets
    assert crossed.mean() == pytest.approx(true, rel=0.15)
    if tau == 0:
        assert hierarchical.mean() > 1.5 * true
    else:
        assert hierarchical.mean() < 0.8 * true


def test_one_seed_pools_to_its_own_row_and_disagreeing_seeds_widen_the_interval():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, (3, 500, 1))  # three seeds on the same utterance resamples
    one = student_rows(np.array([[0.5]]), 0.5 + noise[:1], n=80)
    columns = ["estimate", "ci_low", "ci_high", "p", "p_adj"]
    np.testing.assert_allclose(one.loc[1, columns].to_numpy(float), one.loc[0, columns].to_numpy(float))

    def pooled_width(centres):
        estimates = np.array(centres)[:, None]
        pooled = student_rows(estimates, estimates[:, None, :] + noise, n=80).iloc[-1]
        return pooled.ci_high - pooled.ci_low, bool(pooled.seeds_agree)

    (agree_width, agree), (disagree_width, disagree) = pooled_width([0.5] * 3), pooled_width([-0.4, 0.5, 1.4])
    assert agree and not disagree
    assert disagree_width > 5 * agree_width  # between-seed sd 0.9 with 2 df


def coverage(regime: CERRegime, reps: int, seed: int) -> tuple[float, float]:
    """Coverage of the tables' interval and of the basic interval on the hierarchical draws."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(2)
    for _ in range(reps):
        e_so, e_do, length = draw_errors(regime, rng)
        gaps = 100 * (e_do.sum(1) - e_so.sum(1)) / length.sum()
        shared = int(rng.integers(2**32))
        draws = np.stack(
            [gap_draws(s, d, length, np.random.default_rng(shared), 1000) for s, d in zip(e_so, e_do)]
        )
        pooled = student_rows(gaps[:, None], draws[:, :, None], n=regime.n).iloc[-1]
        basic = intervals.basic_interval(hierarchical_draws(draws, seed=shared), gaps.mean())
        hits += [pooled.ci_low <= regime.gap <= pooled.ci_high, basic[0] <= regime.gap <= basic[1]]
    return tuple(hits / reps)


def test_cer_gap_coverage_of_50_heavy_tailed_utterances_reaches_the_nominal_level():
    """Skewness 1.6, excess kurtosis 6.5 per utterance, as the tiny run's most skewed bins; s.e. 0.5
    points."""
    new, basic = coverage(CERRegime(50, 0.05, 0.08, shape=1.0), reps=2000, seed=4)
    assert new >= 0.925 and basic < new  # measured: 93.75 % and 92.15 %


def test_cer_gap_coverage_over_three_seeds_holds_when_training_variance_dominates():
    new, basic = coverage(CERRegime(50, 0.05, 0.08, seeds=3, tau=0.03), reps=400, seed=5)
    assert new >= 0.93 and basic < 0.90  # measured: 96.0 % and 85.5 %
