"""Defences for CKA itself (cka_probe.measures.defences) against formulas computed directly with numpy."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from cka_probe.errors import CKAProbeError
from cka_probe.measures import linear_cka
from cka_probe.measures.defences import (
    cka_without_top_pcs,
    numerator_terms,
    principal_axes,
    remove_top_pcs,
    top_direction_share,
)


def centred(x):
    return x - x.mean(0)


def top_part(x, k):
    """The rank-k SVD approximation of the centred ``x``, by numpy."""
    u, s, vt = np.linalg.svd(centred(x), full_matrices=False)
    return (u[:, :k] * s[:k]) @ vt[:k]


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7)) @ rng.standard_normal((7, 7))
    y = x[:, :4] + 0.8 * rng.standard_normal((60, 4))
    return x, y


def test_the_numerator_terms_sum_to_the_frobenius_norm_of_the_cross_product(pair):
    x, y = pair
    direct = np.linalg.norm(centred(y).T @ centred(x)) ** 2
    np.testing.assert_allclose(float(numerator_terms(x, y).sum()), direct, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_share_is_the_cross_product_of_the_top_parts_over_the_whole(pair, k):
    x, y = pair
    want = (
        np.linalg.norm(top_part(y, k).T @ top_part(x, k)) ** 2
        / np.linalg.norm(centred(y).T @ centred(x)) ** 2
    )
    np.testing.assert_allclose(top_direction_share(x, y, k), want, rtol=1e-10)


def test_the_share_is_one_from_the_larger_rank_on(pair):
    rng = np.random.default_rng(1)
    x, y = pair
    low = rng.standard_normal((60, 2)) @ rng.standard_normal((2, 9))  # rank 2 in 9 columns
    assert principal_axes(low).rank == 2 and principal_axes(y).rank == 4
    assert top_direction_share(low, y, 4) == 1.0 and top_direction_share(x, y, 50) == 1.0
    assert top_direction_share(low, y, 2) < 1.0


def test_removing_top_pcs_leaves_the_centred_rest(pair):
    x, _ = pair
    for k in (0, 1, 3):
        np.testing.assert_allclose(remove_top_pcs(x, k).numpy(), centred(x) - top_part(x, k), atol=1e-12)
    _, _, vt = np.linalg.svd(centred(x), full_matrices=False)
    np.testing.assert_allclose(remove_top_pcs(x, 2).numpy() @ vt[:2].T, 0.0, atol=1e-12)


def test_a_shared_huge_variance_direction_carries_all_of_a_high_cka():
    rng = np.random.default_rng(2)
    n, d = 300, 20
    shared = 60.0 * rng.standard_normal((n, 1))
    rest_x, rest_y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    x, y = np.hstack([rest_x, shared]), np.hstack([shared, rest_y])
    assert linear_cka(x, y, debiased=True) > 0.95
    assert top_direction_share(x, y, 1) > 0.99
    without = cka_without_top_pcs(x, y, 1)
    assert abs(without - linear_cka(rest_x, rest_y, debiased=True)) < 0.02 and abs(without) < 0.05


def test_both_defences_are_invariant_to_rotations_and_isotropic_scaling(pair):
    x, y = pair
    qx, qy = ortho_group.rvs(7, random_state=3), ortho_group.rvs(4, random_state=4)
    moved_x, moved_y = 1e3 * x @ qx + 5.0, 1e-3 * y @ qy
    for k in (1, 2):
        np.testing.assert_allclose(
            cka_without_top_pcs(moved_x, moved_y, k), cka_without_top_pcs(x, y, k), rtol=1e-9
        )
        np.testing.assert_allclose(
            top_direction_share(moved_x, moved_y, k), top_direction_share(x, y, k), rtol=1e-9
        )
    np.testing.assert_allclose(
        remove_top_pcs(x @ qx, 2).numpy(), remove_top_pcs(x, 2).numpy() @ qx, atol=1e-10
    )


def test_one_svd_per_side_serves_every_call(pair):
    x, y = pair
    px, py = principal_axes(x), principal_axes(y)
    assert cka_without_top_pcs(px, py, 1) == cka_without_top_pcs(x, y, 1)
    assert top_direction_share(px, py, 2) == top_direction_share(x, y, 2)


def test_undefined_cases_name_the_side(pair):
    x, y = pair
    with pytest.raises(
        CKAProbeError, match="y: cannot remove 4 principal directions of a representation of rank 4"
    ):
        cka_without_top_pcs(x, y, 4)
    with pytest.raises(CKAProbeError, match="x: CKA is undefined for a constant"):
        top_direction_share(np.ones((60, 3)), y, 1)
    with pytest.raises(CKAProbeError, match="y has 50 rows but x has 60"):
        top_direction_share(x, y[:50], 1)
    orthogonal = np.zeros((60, 1))
    orthogonal[:2, 0] = 1, -1
    other = np.zeros((60, 1))
    other[2:4, 0] = 1, -1
    with pytest.raises(CKAProbeError, match="share is undefined"):
        top_direction_share(orthogonal, other, 1)
