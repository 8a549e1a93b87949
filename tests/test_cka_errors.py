"""Every undefined case raises a clear one-line error naming the layer; no NaN cell is ever returned."""

import numpy as np
import pytest
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures import cka_matrix, kernel_cka, linear_cka

torch.set_num_threads(1)
RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((20, 4)), RNG.standard_normal((20, 3))


@pytest.mark.parametrize("fn", [linear_cka, kernel_cka])
def test_single_pair_errors(fn):
    with pytest.raises(ValueError, match="y has 19 rows but x has 20"):
        fn(X, Y[:19])
    with pytest.raises(ValueError, match="at least 4 rows, got n=3"):
        fn(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="x: contains NaN or Inf"):
        fn(np.where(X > 1.5, np.nan, X), Y)
    with pytest.raises(ValueError, match="y: contains NaN or Inf"):
        fn(X, np.where(Y > 1.5, -np.inf, Y))
    with pytest.raises(ValueError, match="y: CKA is undefined for a constant representation"):
        fn(X, np.full((20, 3), 1e6 + 0.1))
    with pytest.raises(ValueError, match="2-D array"):
        fn(X[:, 0], Y)


def test_errors_are_cka_probe_errors_and_one_line():
    with pytest.raises(CKAProbeError) as info:
        cka_matrix({"enc.0": X}, {"dec.1": Y[:7]})
    assert "\n" not in str(info.value) and "y layer dec.1 has 7 rows" in str(info.value)


def test_matrix_nan_inf_and_bad_arguments():
    with pytest.raises(CKAProbeError, match="x layer b: contains NaN or Inf"):
        cka_matrix({"a": X, "b": np.where(X > 1, np.inf, X)})
    with pytest.raises(CKAProbeError, match="kernel must be"):
        cka_matrix([X], kernel="cosine")
    with pytest.raises(CKAProbeError, match="sigma must be positive"):
        cka_matrix([X], kernel="rbf", sigma=0)
    with pytest.raises(CKAProbeError, match="dtype must be"):
        cka_matrix([X], dtype="float16")
    with pytest.raises(CKAProbeError, match="no layers"):
        cka_matrix({})


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("n", [20, 4])  # feature space and Gram space (n <= d)
def test_constant_layer_is_an_error_naming_it(kernel, n):
    xs = {"ok": X[:n], "flat": np.full((n, 4), 3.3)}
    with pytest.raises(CKAProbeError, match="^x layer flat: CKA is undefined for a constant") as info:
        cka_matrix(xs, {"y": Y[:n]}, kernel=kernel)
    assert "\n" not in str(info.value)


def test_rbf_with_zero_median_distance_raises():
    mostly_same = np.zeros((20, 2))
    mostly_same[:3] = RNG.standard_normal((3, 2))
    with pytest.raises(CKAProbeError, match="x layer 0: RBF bandwidth is 0"):
        cka_matrix([mostly_same], [Y], kernel="rbf")
