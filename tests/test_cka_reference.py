"""The engine against an independent float64 Gram-space implementation (tests/cka_reference.py)."""

import cka_reference as ref
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_probe.measures import cka_matrix, kernel_cka, linear_cka
from cka_probe.measures.gram import gram_terms
from cka_probe.measures.kernels import median_squared_distance, resolve_kernel
from cka_probe.measures.matrix import feature_terms

torch.set_num_threads(1)

SHAPES = [(5, 3, 2), (12, 40, 7), (30, 4, 60), (64, 64, 64), (200, 10, 25), (257, 31, 3)]


def latent_related(rng, n, dx, dy, offset=0.0):
    """x (n, dx) and y (n, dy) sharing a 2-d latent, with an optional mean offset."""
    z = rng.standard_normal((n, 2))
    x = z @ rng.standard_normal((2, dx)) + 0.7 * rng.standard_normal((n, dx)) + offset
    y = np.tanh(z @ rng.standard_normal((2, dy))) + 0.5 * rng.standard_normal((n, dy)) - offset
    return x, y


@pytest.mark.parametrize("n, dx, dy", SHAPES)
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_gram_space_reference(n, dx, dy, debiased):
    x, y = latent_related(np.random.default_rng(n + dx), n, dx, dy, offset=3.0)
    expected = ref.cka(ref.linear_gram(x), ref.linear_gram(y), debiased)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n, dx, dy", SHAPES)
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("sigma", [0.8, 1.0])
def test_rbf_cka_matches_reference_bandwidth(n, dx, dy, debiased, sigma):
    x, y = latent_related(np.random.default_rng(n * dy), n, dx, dy)
    expected = ref.cka(ref.rbf_gram(x, sigma), ref.rbf_gram(y, sigma), debiased)
    assert kernel_cka(x, y, sigma=sigma, debiased=debiased) == pytest.approx(expected, abs=1e-6)


def test_median_matches_numpy_for_odd_and_even_counts():
    for n in (5, 6):
        x = np.random.default_rng(n).standard_normal((n, 3))
        sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        assert median_squared_distance(torch.from_numpy(x)) == pytest.approx(np.median(sq), rel=1e-12)


def test_polynomial_and_callable_kernels_match_reference():
    x, y = latent_related(np.random.default_rng(3), 40, 5, 6)
    poly = lambda a: (a @ a.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    assert kernel_cka(x, y, kernel="poly") == pytest.approx(ref.cka(poly(x), poly(y)), abs=1e-6)
    cubic = lambda a, c: (a @ c.T) ** 3  # noqa: E731
    expected = ref.cka((x @ x.T) ** 3, (y @ y.T) ** 3, True)
    assert kernel_cka(x, y, kernel=cubic, debiased=True) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_matches_reference_in_both_spaces(debiased):
    rng = np.random.default_rng(7)
    for n in (30, 90):  # n < d: Gram space; n > d: feature space
        x0, y0 = latent_related(rng, n, 50 if n == 30 else 8, 6, offset=5.0)
        xs = {"a": x0, "b": x0[:, :3] ** 2}
        ys = [y0, y0 + x0[:, :6]]
        table = cka_matrix(xs, ys, debiased=debiased)
        assert table.attrs["space"] == ("gram" if n == 30 else "feature")
        for i, xv in enumerate(xs.values()):
            for j, yv in enumerate(ys):
                expected = ref.cka(ref.linear_gram(xv), ref.linear_gram(yv), debiased)
                assert table.iloc[i, j] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_and_gram_hsic_agree_in_scale(debiased):
    """Minibatch CKA adds HSIC values from either space, so they must agree, not just their ratios."""
    xs = [torch.from_numpy(a) for a in latent_related(np.random.default_rng(11), 50, 4, 7, offset=2.0)]
    linear = resolve_kernel("linear", 0.8)
    feature = feature_terms(xs[:1], xs[1:], unbiased=debiased, dtype=torch.float64)
    gram = gram_terms(
        xs[:1], xs[1:], linear, unbiased=debiased, dtype=torch.float64, labels_x=["x"], labels_y=["y"]
    )
    k, l = ref.linear_gram(xs[0].numpy()), ref.linear_gram(xs[1].numpy())
    for terms in (feature, gram):
        assert float(terms.cross[0, 0]) == pytest.approx(ref.hsic(k, l, debiased), rel=1e-9)
        assert float(terms.self_x[0]) == pytest.approx(ref.hsic(k, k, debiased), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 40),
    dx=st.integers(1, 12),
    dy=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    debiased=st.booleans(),
    scale=st.floats(1e-3, 1e3),
)
def test_property_linear_cka_equals_reference(n, dx, dy, seed, debiased, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((n, dx))
    y = rng.standard_normal((n, dy)) + x[:, :1]
    kc, lc = ref.centre(ref.linear_gram(x), debiased), ref.centre(ref.linear_gram(y), debiased)
    if np.sum(kc * kc) <= 1e-12 * scale**4 or np.sum(lc * lc) <= 1e-12:
        return  # self-HSIC too small for a meaningful reference value
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(
        ref.cka(ref.linear_gram(x), ref.linear_gram(y), debiased), abs=1e-6
    )
