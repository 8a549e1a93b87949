"""Kernel CKA at scale: the blocked Gram passes, the RBF median (exact and subsampled), Nyström CKA."""

import cka_reference as ref
import numpy as np
import pytest
import torch

from cka_probe import cka_matrix, kernel_cka, nystrom_cka_matrix
from cka_probe.errors import CKAProbeError
from cka_probe.measures import gram
from cka_probe.measures.kernels import median_of_distances


def tanh_related(rng, n, dx=6, dy=5):
    """x (n, dx) and y = tanh(x W) + noise (n, dy)."""
    x = rng.standard_normal((n, dx))
    return x, np.tanh(x @ rng.standard_normal((dx, dy))) + 0.3 * rng.standard_normal((n, dy))


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7])
def test_median_of_symmetric_distances_is_numpys(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 3, (n, 2)).astype(float)  # many ties and duplicate rows
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    assert median_of_distances(torch.from_numpy(sq)) == np.median(sq)


@pytest.mark.parametrize("budget", [8 * 6 * 37, 8 * 6 * 37 * 5, 2**28])  # 1 row, 5 rows, one block per pass
@pytest.mark.parametrize("debiased", [False, True])
def test_blocked_gram_passes_match_the_reference(monkeypatch, budget, debiased):
    monkeypatch.setattr(gram, "BLOCK_BUDGET", budget)
    rng = np.random.default_rng(3)
    xs = [tanh_related(rng, 37)[0] for _ in range(2)]
    ys = [tanh_related(rng, 37)[1], rng.standard_normal((37, 40))]
    table = cka_matrix(xs, ys, kernel="rbf", sigma=0.6, debiased=debiased)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            expected = ref.cka(ref.rbf_gram(x, 0.6), ref.rbf_gram(y, 0.6), debiased)
            assert table.iloc[i, j] == pytest.approx(expected, abs=1e-10)
    poly = cka_matrix(xs, kernel="poly", debiased=debiased)  # the blockwise first pass (no median)
    cube = lambda a: (a @ a.T / a.shape[1] + 1) ** 3
    assert poly.iloc[0, 1] == pytest.approx(ref.cka(cube(xs[0]), cube(xs[1]), debiased), abs=1e-10)


def test_float32_rbf_stays_within_1e_6_of_float64():
    rng = np.random.default_rng(4)
    x, y = tanh_related(rng, 500, 32, 24)
    exact = cka_matrix([x], [y], kernel="rbf").iloc[0, 0]
    assert cka_matrix([x.astype(np.float32) + 100], [y.astype(np.float32)], kernel="rbf").iloc[
        0, 0
    ] == pytest.approx(exact, abs=1e-6)


def test_subsampled_median_is_recorded_and_close_to_the_exact_one():
    rng = np.random.default_rng(5)
    x, y = tanh_related(rng, 400)
    exact = cka_matrix([x], [y], kernel="rbf")
    assert exact.attrs["rbf_median"] == "exact"
    assert cka_matrix([x], [y], kernel="rbf", median_rows=400).iloc[0, 0] == pytest.approx(
        exact.iloc[0, 0], abs=1e-12
    )
    sub = cka_matrix([x], [y], kernel="rbf", median_rows=100)
    assert sub.attrs["rbf_median"] == "subsampled, 100 rows"
    assert sub.attrs["rbf_sq_sigma_x"]["0"] != exact.attrs["rbf_sq_sigma_x"]["0"]
    assert sub.iloc[0, 0] == pytest.approx(exact.iloc[0, 0], abs=0.02)
    assert kernel_cka(x, y, median_rows=100) == pytest.approx(sub.iloc[0, 0], abs=1e-12)
    with pytest.raises(CKAProbeError, match="median_rows applies to the rbf kernel"):
        cka_matrix([x], [y], kernel="linear", median_rows=100)


@pytest.mark.parametrize("debiased", [False, True])
def test_nystrom_converges_to_exact_kernel_cka_as_rank_grows(debiased):
    rng = np.random.default_rng(6)
    n = 240
    xs = [tanh_related(rng, n)[0], rng.standard_normal((n, 3))]
    ys = [tanh_related(rng, n)[1], np.tanh(xs[0][:, :4])]
    exact = cka_matrix(xs, ys, kernel="rbf", debiased=debiased).values
    errors = [
        np.abs(nystrom_cka_matrix(xs, ys, rank=m, debiased=debiased).values - exact).max()
        for m in (10, 40, 120, n)
    ]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-9  # every row a landmark: K W^+ K = K
    table = nystrom_cka_matrix(xs, ys, rank=40, debiased=debiased, seed=3)
    assert (
        table.attrs["estimator"] == "nystrom"
        and table.attrs["rank"] == 40
        and table.attrs["debiased"] == debiased
    )
    np.testing.assert_array_equal(
        table.values, nystrom_cka_matrix(xs, ys, rank=40, debiased=debiased, seed=3).values
    )


def test_nystrom_of_a_constant_layer_and_bad_rank_are_errors():
    rng = np.random.default_rng(7)
    x, y = tanh_related(rng, 50)
    with pytest.raises(CKAProbeError, match="y layer 1: CKA is undefined for a constant"):
        nystrom_cka_matrix([x], [y, np.ones((50, 2))], rank=20)
    with pytest.raises(CKAProbeError, match="rank must be >= 1"):
        nystrom_cka_matrix([x], [y], rank=0)
