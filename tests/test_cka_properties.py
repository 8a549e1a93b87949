"""Invariances and known values of CKA (Kornblith et al. 2019, Sec. 2-3)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from cka_probe.measures import cka_matrix, kernel_cka, linear_cka

torch.set_num_threads(1)


def data(seed, n=60, dx=8, dy=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx))
    return x, np.sin(x[:, :dy]) + 0.3 * rng.standard_normal((n, dy))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n", [30, 6])  # feature space and Gram space
def test_invariant_to_orthogonal_transform_scaling_and_translation(debiased, n):
    x, y = data(1, n=n)
    q = ortho_group.rvs(x.shape[1], random_state=2)
    base = linear_cka(x, y, debiased=debiased)
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(7.5 * x, 0.01 * y, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x + 40.0, y - 3.0, debiased=debiased) == pytest.approx(base, abs=1e-9)
    rbf = kernel_cka(x, y, debiased=debiased)
    assert kernel_cka(3 * (x @ q) + 5, y, debiased=debiased) == pytest.approx(rbf, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 30), d=st.integers(1, 10), seed=st.integers(0, 2**16), debiased=st.booleans())
def test_self_similarity_is_one_and_cka_is_symmetric(n, d, seed, debiased):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d + 1))
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(
        linear_cka(y, x, debiased=debiased), abs=1e-12
    )
    assert kernel_cka(x, y, debiased=debiased) == pytest.approx(
        kernel_cka(y, x, debiased=debiased), abs=1e-12
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 30), dx=st.integers(1, 40), dy=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_biased_cka_lies_in_unit_interval(n, dx, dy, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, dx)), rng.standard_normal((n, dy))
    for value in (linear_cka(x, y), kernel_cka(x, y)):
        assert -1e-12 <= value <= 1 + 1e-12


def test_debiased_cka_of_independent_gaussians_is_near_zero():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2000, 512)), rng.standard_normal((2000, 512))
    assert abs(linear_cka(x, y, debiased=True)) < 0.02
    assert linear_cka(x, y) > 0.15  # biased: about d / (n + d) = 0.2


def test_debiased_can_be_negative_and_is_not_clamped():
    rng = np.random.default_rng(5)
    values = [
        linear_cka(rng.standard_normal((8, 3)), rng.standard_normal((8, 3)), debiased=True) for _ in range(20)
    ]
    assert min(values) < 0


def test_symmetric_matrix_equals_full_computation():
    x, y = data(3, n=80)
    layers = {"a": x, "b": y, "c": x[:, :2] * y[:, :1]}
    for debiased in (False, True):
        table = cka_matrix(layers, debiased=debiased)
        full = cka_matrix(layers, dict(layers), debiased=debiased)
        np.testing.assert_allclose(table.values, full.values, atol=1e-12)
        np.testing.assert_allclose(table.values, table.values.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(table.values), 1.0, atol=1e-12)


def test_float32_path_agrees_with_float64_under_large_mean_offset():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3000, 24)) * np.linspace(0.1, 5, 24) + 1000.0
    y = x[:, :12] @ rng.standard_normal((12, 16)) + rng.standard_normal((3000, 16)) - 500.0
    layers_x = {"x": x, "xx": x[:, ::2]}
    layers_y = {"y": y}
    for debiased in (False, True):
        exact = cka_matrix(layers_x, layers_y, debiased=debiased)
        single = (
            {k: v.astype(np.float32) for k, v in layers_x.items()},
            {k: v.astype(np.float32) for k, v in layers_y.items()},
        )
        exact32 = cka_matrix(
            *[{k: v.astype(np.float64) for k, v in s.items()} for s in single], debiased=debiased
        )
        fast = cka_matrix(*single, debiased=debiased)
        assert fast.attrs["dtype"] == "float32" and exact.attrs["dtype"] == "float64"
        np.testing.assert_allclose(fast.values, exact32.values, atol=1e-6)
        np.testing.assert_allclose(fast.values, exact.values, atol=1e-4)
        rbf32 = cka_matrix(
            {k: v[:300] for k, v in single[0].items()},
            {k: v[:300] for k, v in single[1].items()},
            kernel="rbf",
        )
        rbf64 = cka_matrix(
            {k: v[:300] for k, v in layers_x.items()}, {k: v[:300] for k, v in layers_y.items()}, kernel="rbf"
        )
        np.testing.assert_allclose(rbf32.values, rbf64.values, atol=1e-4)


def test_torch_tensors_and_attrs():
    x, y = data(4)
    table = cka_matrix(
        [torch.from_numpy(x)], {"y": torch.from_numpy(y)}, kernel="rbf", sigma=0.5, debiased=True
    )
    assert table.iloc[0, 0] == pytest.approx(kernel_cka(x, y, sigma=0.5, debiased=True), abs=1e-12)
    attrs = table.attrs
    assert (attrs["estimator"], attrs["kernel"], attrs["sigma"], attrs["n"]) == ("debiased", "rbf", 0.5, 60)
    assert attrs["dims_x"] == {"0": 8} and attrs["dims_y"] == {"y": 5}
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    assert attrs["rbf_sq_sigma_x"]["0"] == pytest.approx(0.25 * np.median(sq), rel=1e-12)
