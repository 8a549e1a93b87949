"""CCA family, Procrustes and RSA against independent float64 implementations, invariances and errors."""

import functools
import re

import measures_reference as ref
import numpy as np
import pytest
import torch

from cka_probe import bootstrap_ci, permutation_test, similarity, similarity_matrix
from cka_probe.errors import CKAProbeError

# (n, dx, dy): tall, square-ish, n < d, one-dimensional
SHAPES = [(80, 5, 8), (200, 20, 10), (30, 3, 3), (60, 1, 4), (25, 40, 30), (12, 30, 6)]


def pair(n, dx, dy, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 4))
    x = latent @ rng.standard_normal((4, dx)) + rng.standard_normal((n, dx)) + 5.0
    y = latent @ rng.standard_normal((4, dy)) + 0.7 * rng.standard_normal((n, dy)) - 3.0
    return x, y


@pytest.mark.parametrize("n, dx, dy", SHAPES)
def test_measures_match_the_reference(n, dx, dy):
    x, y = pair(n, dx, dy)
    full_rank = n - 1 > max(dx, dy)
    if full_rank:
        assert similarity(x, y, measure="cca") == pytest.approx(ref.mean_cca(x, y), abs=1e-8)
        assert similarity(x, y, measure="pwcca") == pytest.approx(ref.pwcca(x, y), abs=1e-8)
    assert similarity(x, y, measure="cca", ridge=0.1) == pytest.approx(
        ref.mean_cca(x, y, ridge=0.1), abs=1e-8
    )
    assert similarity(x, y, measure="svcca") == pytest.approx(ref.svcca(x, y), abs=1e-8)
    distance, angle = ref.procrustes(x, y)
    assert similarity(x, y, measure="procrustes") == pytest.approx(distance, abs=1e-10)
    assert similarity(x, y, measure="procrustes_angle") == pytest.approx(angle, abs=1e-8)
    for rdm in ("correlation", "euclidean"):
        for compare in ("spearman", "pearson"):
            if rdm == "correlation" and min(dx, dy) == 1:
                continue
            got = similarity(x, y, measure="rsa", rdm=rdm, compare=compare)
            assert got == pytest.approx(ref.rsa(x, y, rdm, compare), abs=1e-10)


def test_rsa_of_float32_inputs_stays_within_1e_6():
    x, y = pair(150, 16, 12)
    assert similarity(x.astype(np.float32), y.astype(np.float32), measure="rsa") == pytest.approx(
        ref.rsa(x, y), abs=1e-6
    )


def test_matrix_cells_equal_the_pairs_and_ys_none_is_xs_with_itself():
    x, y = pair(70, 6, 9)
    z = np.tanh(x)
    for measure in ("cca", "svcca", "pwcca", "procrustes", "rsa"):
        table = similarity_matrix({"x": x, "z": z}, {"y": y, "x": x}, measure=measure)
        assert table.loc["z", "y"] == pytest.approx(similarity(z, y, measure=measure), abs=1e-12)
        own = similarity_matrix([x, z], measure=measure)
        assert own.loc[0, 1] == pytest.approx(similarity(x, z, measure=measure), abs=1e-12)
        assert table.attrs["measure"] == measure and table.attrs["n"] == 70
    assert similarity_matrix([x], measure="procrustes").attrs["kind"] == "distance"


def test_cca_is_invariant_to_invertible_linear_maps():
    x, y = pair(100, 6, 5, seed=3)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    b = np.diag([1e-3, 1, 10, 100, 1e3])
    base = similarity(x, y, measure="cca")
    assert similarity(x @ a + 7, y @ b, measure="cca") == pytest.approx(base, abs=1e-9)
    assert similarity(x, x @ a, measure="cca") == pytest.approx(1.0, abs=1e-9)


def test_procrustes_is_invariant_to_orthogonal_maps_scaling_and_translation():
    x, y = pair(90, 7, 7, seed=5)
    q, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((7, 7)))
    for measure in ("procrustes", "procrustes_angle"):
        base = similarity(x, y, measure=measure)
        assert similarity(3.5 * x @ q - 2, y, measure=measure) == pytest.approx(base, abs=1e-10)
        assert similarity(x, 0.01 * y @ q.T, measure=measure) == pytest.approx(base, abs=1e-10)
        assert similarity(x, 4 * x @ q, measure=measure) == pytest.approx(0.0, abs=1e-6)
    # not invariant to a general linear map: that is what separates it from CCA
    stretch = np.diag([1, 1, 1, 1, 1, 1, 20.0])
    assert (
        abs(similarity(x, y @ stretch, measure="procrustes") - similarity(x, y, measure="procrustes")) > 1e-3
    )


def test_spearman_rsa_is_invariant_to_monotone_transforms_of_the_rdm():
    """y2 is built (classical MDS) so that ||y2_i - y2_j|| = sqrt(||y_i - y_j||): a monotone map of y's
    RDM."""
    x, y = pair(40, 5, 4, seed=7)
    d = np.sqrt(((y[:, None] - y[None]) ** 2).sum(2))
    h = np.eye(40) - 1 / 40
    evals, evecs = np.linalg.eigh(-0.5 * h @ d @ h)  # squared target distances are d itself
    y2 = evecs * np.sqrt(evals.clip(0))
    spearman = functools.partial(similarity, measure="rsa", rdm="euclidean", compare="spearman")
    pearson = functools.partial(similarity, measure="rsa", rdm="euclidean", compare="pearson")
    assert spearman(x, y2) == pytest.approx(spearman(x, y), abs=1e-9)
    assert abs(pearson(x, y2) - pearson(x, y)) > 1e-3


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda x, y: similarity(x[:5], y[:5, :2], measure="cca"),
            "x: CCA needs full column rank, but the centred layer has rank 4 < d = 6 (n = 5)",
        ),
        (lambda x, y: similarity(np.c_[x, x[:, :1]], y, measure="pwcca"), "rank 6 < d = 7"),
        (
            lambda x, y: similarity(np.ones((80, 3)), y, measure="svcca"),
            "x: SVCCA is undefined for a constant",
        ),
        (
            lambda x, y: similarity(x, np.ones((80, 3)), measure="cca", ridge=0.1),
            "y: CCA is undefined for a constant",
        ),
        (
            lambda x, y: similarity(x, np.ones((80, 3)), measure="procrustes"),
            "y: Procrustes distance is undefined",
        ),
        (lambda x, y: similarity(x[:2], y[:2], measure="rsa"), "RSA needs at least 4 rows, got n=2"),
        (lambda x, y: similarity(np.c_[x[:, :1], x[:, :1]], y, measure="rsa"), "x: row 0 is constant"),
        (lambda x, y: similarity(x, y[:79], measure="cca"), "has 79 rows"),
        (lambda x, y: similarity(x, y, measure="svd"), "measure must be one of"),
        (lambda x, y: similarity(x, y, measure="cca", debiased=True), "takes the options ['ridge']"),
        (lambda x, y: similarity(x, y, measure="cca", ridge=-1), "ridge must be >= 0"),
        (lambda x, y: similarity(x, y, measure="rsa", rdm="cosine"), "rdm must be one of"),
    ],
)
def test_undefined_cases_are_clear_errors(call, message):
    x, y = pair(80, 6, 5)
    with pytest.raises(CKAProbeError, match=re.escape(message)):
        call(x, y)


def test_rsa_memory_budget_is_a_clear_error(monkeypatch):
    import cka_probe.measures.rsa as rsa

    monkeypatch.setattr(rsa, "MEMORY_BUDGET", 1000)
    x, y = pair(80, 6, 5)
    with pytest.raises(CKAProbeError, match="GiB of RDM entries"):
        similarity(x, y, measure="rsa")


def test_measures_work_with_group_bootstrap_and_permutation_test():
    x, y = pair(120, 4, 4, seed=9)
    groups = np.repeat(np.arange(30), 4)
    for measure in ("cca", "procrustes", "rsa"):
        statistic = functools.partial(similarity, measure=measure)
        interval = bootstrap_ci(x, y, groups=groups, statistic=statistic, n_resamples=30, seed=1)
        assert interval.estimate == pytest.approx(statistic(x, y), abs=1e-12)
        assert interval.low <= interval.high
    related = permutation_test(
        x, y, groups=groups, statistic=functools.partial(similarity, measure="cca"), n_permutations=49, seed=2
    )
    assert related.p_value == 1 / 50
    unrelated = permutation_test(
        x,
        np.random.default_rng(0).standard_normal((120, 4)),
        groups=groups,
        statistic=functools.partial(similarity, measure="cca"),
        n_permutations=49,
        seed=2,
    )
    assert unrelated.p_value > 0.05


def test_torch_inputs_give_the_numpy_values():
    x, y = pair(50, 5, 6)
    for measure in ("pwcca", "procrustes_angle", "rsa"):
        assert similarity(torch.from_numpy(x), torch.from_numpy(y), measure=measure) == pytest.approx(
            similarity(x, y, measure=measure), abs=1e-12
        )
