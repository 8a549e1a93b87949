"""Exact permutation moments of debiased HSIC and the Pearson type III p-value
(:mod:`cka_probe.measures.permutation_moments`).

The moments are checked against all n! permutations, each permuted HSIC₁ computed with Song et al.'s
formula term by term (not U-centred); the U-centred statistic against :mod:`gram_resample`; the p-values
against a gamma written out, Monte-Carlo permutations and their uniformity under independence.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from cka_probe.measures import gram_resample
from cka_probe.measures import permutation_moments as pm


def linear_grams(xs: list[np.ndarray]) -> np.ndarray:
    """(L, n, n) Grams of the centred features xs (n, d_l)."""
    return np.stack([(x - x.mean(0)) @ (x - x.mean(0)).T for x in xs])


def song_hsic(k: np.ndarray, l: np.ndarray) -> np.ndarray:
    """HSIC₁ (Song et al. 2012, Eq. 5) of the Gram k (n, n) with each Gram of l (R, n, n), term by term."""
    n = len(k)
    kt = k * (1 - np.eye(n))
    lt = l * (1 - np.eye(n))
    trace = np.einsum("ij,rij->r", kt, lt)
    ones = kt.sum() * lt.sum((1, 2)) / ((n - 1) * (n - 2))
    cross = 2 / (n - 2) * np.einsum("i,ri->r", kt.sum(1), lt.sum(2))
    return (trace + ones - cross) / (n * (n - 3))


def enumerated(k: np.ndarray, l: np.ndarray) -> np.ndarray:
    """HSIC₁ of k (n, n) against l with its rows and columns in every one of the n! orders, (n!,)."""
    perms = np.array(list(itertools.permutations(range(len(k)))))
    return song_hsic(k, l[perms[:, :, None], perms[:, None, :]])


def features(rng: np.random.Generator, n: int, case: str) -> list[np.ndarray]:
    """Two layers of n rows: full rank, rank one, or with tied (duplicated) rows."""
    if case == "rank one":
        return [rng.normal(size=(n, 1)), rng.normal(size=(n, 1)) * [[1.0, -2.0]]]
    if case == "ties":
        x = rng.standard_t(3, size=(n, 4))
        x[1] = x[0]
        x[3] = x[2]
        return [x, np.repeat(rng.normal(size=(n // 2 + 1, 2)), 2, axis=0)[:n]]
    return [rng.normal(size=(n, 3)), rng.standard_t(3, size=(n, 8))]


@pytest.mark.parametrize("case", ["full rank", "rank one", "ties"])
@pytest.mark.parametrize("n", [5, 6, 7])
def test_moments_equal_all_permutations(n, case):
    """Mean, variance and skewness of every layer pair (2 × 2, batched) equal those of HSIC₁ over all n!
    permutations of the second side's rows, to 1e-10; debiased CKA's permutation variance is 2/(n(n − 3))."""
    rng = np.random.default_rng([n, len(case)])
    k, l = linear_grams(features(rng, n, case)), linear_grams(features(rng, n, "full rank"))
    moments = pm.permutation_moments(pm.invariants(pm.u_centred(k)), pm.invariants(pm.u_centred(l)))
    for i, j in itertools.product(range(2), range(2)):
        null = enumerated(k[i], l[j])
        sd = null.std()
        assert abs(moments.mean[i, j].item() - null.mean()) <= 1e-10 * sd
        assert moments.variance[i, j].item() == pytest.approx(null.var(), rel=1e-10)
        third = np.mean((null - null.mean()) ** 3)
        assert abs(moments.skewness[i, j].item() * sd**3 - third) <= 1e-10 * sd**3
        own = song_hsic(k[i], k[i][None])[0] * song_hsic(l[j], l[j][None])[0]
        assert np.var(null / np.sqrt(own)) == pytest.approx(2 / (n * (n - 3)), rel=1e-10)


def test_shapes_count_every_triple_of_pairs():
    """The shapes' patterns cover every ordered triple of ordered pairs i ≠ j: Σ m_σ (n)_b = (n(n − 1))³."""
    for n in range(2, 12):
        assert sum(m * pm.falling(n, b) for m, b, _, _ in pm.SHAPES) == (n * (n - 1)) ** 3


def test_u_centred_hsic_equals_gram_resample():
    """Σ Ã_ij B̃_ij / (n(n − 3)) equals gram_resample's debiased HSIC and CKA of the same rows; Ã needs no
    centred rows, and permuting K's rows and columns permutes Ã's."""
    rng = np.random.default_rng(7)
    n = 50
    xs = {f"x{i}": rng.normal(size=(n, d)) + 3.0 for i, d in enumerate([2, 16, 80])}
    ys = {f"y{i}": rng.standard_t(3, size=(n, d)) for i, d in enumerate([1, 30])}
    a, b = gram_resample.GramSet(xs), gram_resample.GramSet(ys)
    ua, ub = pm.u_centred(a.grams), pm.u_centred(b.grams)
    identity = np.arange(n)
    terms_a, terms_b = a.terms(identity, debiased=True), b.terms(identity, debiased=True)
    expected = gram_resample.hsic(terms_a, terms_b, n, debiased=True)
    np.testing.assert_allclose(pm.debiased_hsic(ua, ub).numpy(), expected, rtol=1e-10)
    own_a = torch.diagonal(pm.debiased_hsic(ua, ua))
    np.testing.assert_allclose(own_a.numpy(), gram_resample.self_hsic(terms_a, n, debiased=True), rtol=1e-10)
    cka = pm.debiased_hsic(ua, ub) / torch.outer(own_a, torch.diagonal(pm.debiased_hsic(ub, ub))).sqrt()
    np.testing.assert_allclose(cka.numpy(), gram_resample.point_estimate(a, b, debiased=True), rtol=1e-10)

    raw = np.stack([x @ x.T for x in xs.values()])  # of the rows as given, offset by 3
    size = np.abs(raw).max()
    np.testing.assert_allclose(
        pm.u_centred(raw), pm.u_centred(linear_grams(list(xs.values()))), atol=1e-10 * size
    )
    pi = rng.permutation(n)
    shuffled = pm.u_centred(raw[:, pi][:, :, pi])
    np.testing.assert_allclose(shuffled, pm.u_centred(raw)[:, pi][:, :, pi], atol=1e-10 * size)


def test_pearson3_pvalue_is_a_moment_matched_gamma():
    """Skewness γ > 0: X = mean + sd·(G − κ)/√κ with G ~ Gamma(κ = 4/γ²); γ < 0 its mirror image; γ = 0 the
    normal."""
    observed = torch.tensor([-1.0, 0.3, 2.5, 9.0], dtype=torch.float64)
    mean, variance = torch.tensor(0.5, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64)
    for skewness in (0.7, -0.7):
        shape = 4 / skewness**2
        z = np.sign(skewness) * (observed.numpy() - 0.5) / 2
        gamma_tail = stats.gamma.sf(shape + np.sqrt(shape) * z, shape)
        expected = gamma_tail if skewness > 0 else 1 - gamma_tail
        pvalue = pm.pearson3_pvalue(observed, mean, variance, torch.tensor(skewness, dtype=torch.float64))
        np.testing.assert_allclose(pvalue.numpy(), expected, rtol=1e-10)
    normal = [0.5 * math.erfc((x - 0.5) / 2 / math.sqrt(2)) for x in observed.tolist()]
    np.testing.assert_allclose(
        pm.pearson3_pvalue(observed, mean, variance, torch.tensor(0.0, dtype=torch.float64)),
        normal,
        rtol=1e-10,
    )


def draw(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """Gaussian or heavy-tailed (Student t, 3 degrees of freedom) features."""
    return rng.normal(size=shape) if kind == "gaussian" else rng.standard_t(3, size=shape)


@pytest.mark.parametrize("kind", ["gaussian", "t3"])
def test_pvalues_uniform_under_independence(kind, one_thread):
    """1,000 independent data sets (n = 40, d = 5 and 4): the rejection rates at 0.1, 0.05 and 0.01 are within
    3.5 binomial standard errors √(α(1 − α)/1000) of α (0.033, 0.024, 0.011)."""
    rng = np.random.default_rng(["gaussian", "t3"].index(kind))
    count, n = 1000, 40
    k = linear_grams([draw(rng, kind, (n, 5)) for _ in range(count)])
    l = linear_grams([draw(rng, kind, (n, 4)) for _ in range(count)])
    a, b = pm.u_centred(k), pm.u_centred(l)
    moments = pm.permutation_moments(pm.invariants(a), pm.invariants(b))
    pair = lambda grid: torch.diagonal(grid)  # data set r is the pair (k_r, l_r)
    observed = (a * b).sum((1, 2)) / (n * (n - 3))
    p = pm.pearson3_pvalue(observed, *(pair(m) for m in (moments.mean, moments.variance, moments.skewness)))
    for alpha in (0.1, 0.05, 0.01):
        assert abs((p <= alpha).double().mean().item() - alpha) <= 3.5 * math.sqrt(
            alpha * (1 - alpha) / count
        )


@pytest.mark.parametrize(
    ("kind", "strength", "allowance"),
    [
        ("gaussian", 0.0, 0.0),
        ("gaussian", 0.15, 0.0),
        ("t3", 0.0, 0.07),
        ("t3", 0.15, 0.07),
        ("gaussian", 0.6, 0.0),
    ],
)
def test_pvalues_agree_with_monte_carlo_permutations(kind, strength, allowance, one_thread):
    """One data set (n = 40, Y = strength·X W + noise) per case: the Pearson type III p-value of debiased
    CKA is within 4 Monte-Carlo standard errors √(p(1 − p)/R) (R = 4,000 permutations of
    gram_resample.permuted) of the Monte-Carlo p-value, plus for t3 features the Pearson III curve's own
    error (up to 0.07 measured at n = 40 against 50,000 permutations, docs/resampled-statistics.md); at
    strength 0.6 the Monte-Carlo p-value is its floor 1/(R + 1) and the Pearson III one a tenth of it or
    less."""
    rng = np.random.default_rng([len(kind), round(100 * strength)])
    n, count = 40, 4000
    x = draw(rng, kind, (n, 5))
    y = strength * x[:, :3] @ rng.normal(size=(3, 4)) + draw(rng, kind, (n, 4))
    a, b = gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y})
    observed = gram_resample.point_estimate(a, b, debiased=True)[0, 0]
    null = gram_resample.permuted(a, b, [rng.permutation(n) for _ in range(count)], debiased=True)[:, 0, 0]
    monte_carlo = (1 + np.sum(null >= observed)) / (count + 1)
    p = pm.cka_pvalues(a.grams, b.grams)[0, 0].item()
    error = math.sqrt(max(p * (1 - p), 1 / count) / count)
    assert abs(p - monte_carlo) <= 4 * error + allowance
    if strength > 0.5:
        assert monte_carlo == 1 / (count + 1) and p < monte_carlo / 10


def test_constant_layer_has_no_pvalue():
    """A constant layer (an all-zero U-centred Gram) has no permutation distribution: NaN in its row only."""
    rng = np.random.default_rng(5)
    k = linear_grams([np.ones((20, 3)), rng.normal(size=(20, 3))])
    p = pm.cka_pvalues(k, linear_grams([rng.normal(size=(20, 2))]))
    assert torch.isnan(p[0, 0]) and 0 < p[1, 0] < 1
