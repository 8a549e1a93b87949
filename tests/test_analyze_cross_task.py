"""Cross-task comparison set over plain arrays: known structure, formulas, intervals, p-values."""

import numpy as np
import pandas as pd
import pytest
from cka_reference import feature_space_cka
from helpers import layers, representations

from cka_probe.errors import CKAProbeError
from cka_probe.inference import intervals
from cka_probe.measures import gram_resample
from cka_probe.study.cross_task import COMPARISONS, cross_task_arrays
from cka_probe.study.roles import assign_roles, role_of
from cka_probe.study.schema import COLUMNS, diagonal, pooled


def unbiased_hsic(x, y):
    """Gram-free unbiased HSIC: m(m−3)·HSIC₁ = ‖XᵀY‖² − m/(m−2)·r_xᵀr_y + s_x·s_y/((m−1)(m−2))."""
    m = len(x)
    x, y = x - x.mean(0), y - y.mean(0)
    rx, ry = (x**2).sum(1), (y**2).sum(1)
    total = np.sum((x.T @ y) ** 2) - m / (m - 2) * rx @ ry + rx.sum() * ry.sum() / ((m - 1) * (m - 2))
    return total / (m * (m - 3))


def rows(table, part, comparison):
    return table[(table.part == part) & (table.comparison == comparison)]


def test_do_encoder_identical_to_sso_gives_cka_one_on_that_diagonal():
    rng = np.random.default_rng(0)
    n = 40
    sso = layers(rng, "encoder.layers", n)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    # rotated and rescaled copies: linear CKA is invariant to both (Kornblith et al. 2019, §3)
    do_encoder = {name: 3.0 * x @ q for name, x in sso.items()}
    reps = representations(rng, n, do_encoder=do_encoder)
    reps["sso"]["encoder"] = sso
    table = cross_task_arrays(reps, language="en", n_boot=20, n_perm=50, progress=False).table
    diag = diagonal(rows(table, "encoder", "DO-SSO"))
    np.testing.assert_allclose(diag.value, 1.0, atol=1e-12)
    np.testing.assert_allclose(diag[["ci_low", "ci_high"]], 1.0, atol=1e-12)
    assert (diag.p == 1 / 51).all()
    off = rows(table, "encoder", "DO-SSO").query("index_a != index_b")
    assert (off.value < 0.9).all()
    assert (diagonal(rows(table, "encoder", "DO-MSO")).value < 0.9).all()


def test_every_cell_matches_the_feature_space_formula():
    rng = np.random.default_rng(1)
    reps = representations(rng, 30)
    table = pooled(
        cross_task_arrays(reps, language="ko", n_boot=0, n_perm=0, debiased=False, progress=False).table
    )
    assert len(table) == 3 * 9 + 6 * 4
    for comp in COMPARISONS:
        xs, ys = reps[comp.role_a][comp.stream_a], reps[comp.role_b][comp.stream_b]
        got = rows(table, comp.part, comp.name).set_index(["layer_a", "layer_b"]).value
        for (la, lb), value in got.items():
            assert value == pytest.approx(feature_space_cka(xs[la], ys[lb]), abs=1e-12)
    assert table.ci_low.isna().all() and table.p.isna().all()


def test_debiased_estimator_matches_the_gram_free_u_statistic():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((25, 4)), rng.standard_normal((25, 7))
    a, b = gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y})
    expected = unbiased_hsic(x, y) / np.sqrt(unbiased_hsic(x, x) * unbiased_hsic(y, y))
    assert gram_resample.point_estimate(a, b, debiased=True)[0, 0] == pytest.approx(expected, abs=1e-12)


def test_a_permutation_of_both_sides_is_a_resample_with_the_same_value():
    rng = np.random.default_rng(3)
    a = gram_resample.GramSet(layers(rng, "a", 20))
    b = gram_resample.GramSet(layers(rng, "b", 20))
    draws = gram_resample.bootstrap(a, b, [rng.permutation(20)])
    np.testing.assert_allclose(draws[0], gram_resample.point_estimate(a, b), atol=1e-12)


def related(rng, n, d=16, strength=1.0):
    x = rng.standard_normal((n, d))
    return x, strength * x @ rng.standard_normal((d, d)) / np.sqrt(d) + rng.standard_normal((n, d))


@pytest.mark.parametrize("strength", [0.0, 0.5, 2.0])
def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n(strength):
    rng = np.random.default_rng(4)
    widths = []
    for n in (40, 320):
        x, y = related(rng, n, strength=strength)
        a, b = gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y})
        estimate = gram_resample.point_estimate(a, b)[0, 0]
        boots = [rng.integers(0, n, n) for _ in range(200)]
        low, high = intervals.percentile_interval(gram_resample.bootstrap(a, b, boots))
        assert low[0, 0] <= estimate <= high[0, 0]
        widths.append(high[0, 0] - low[0, 0])
    assert widths[1] < 0.6 * widths[0]


def test_permutation_p_separates_related_from_independent():
    rng = np.random.default_rng(5)
    perms = [rng.permutation(60) for _ in range(99)]
    p = {}
    for strength in (0.0, 2.0):
        x, y = related(rng, 60, d=4, strength=strength)
        a, b = gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y})
        p[strength] = intervals.permutation_pvalue(
            gram_resample.point_estimate(a, b), gram_resample.permuted(a, b, perms)
        )[0, 0]
    assert p[2.0] == pytest.approx(0.01)
    assert p[0.0] > 0.05


def test_table_is_tidy_and_survives_a_csv_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    table = cross_task_arrays(
        representations(rng, 12), language="en", n_boot=5, n_perm=5, progress=False
    ).table
    assert list(table.columns) == list(COLUMNS)
    assert set(zip(table.part, table.comparison)) == {(c.part, c.name) for c in COMPARISONS}
    assert (table.n == 12).all() and (table.estimator == "debiased").all()
    table.to_csv(tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), table)


def test_results_are_seeded():
    reps = representations(np.random.default_rng(7), 15)
    first, second = (
        cross_task_arrays(reps, language="en", n_boot=10, n_perm=10, seed=3, progress=False).table
        for _ in range(2)
    )
    pd.testing.assert_frame_equal(first, second)


def test_bad_inputs_name_the_layer_or_role():
    rng = np.random.default_rng(8)
    reps = representations(rng, 10)
    reps["mso"]["encoder"]["encoder.layers.1"] = np.ones((10, 5))
    with pytest.raises(CKAProbeError, match="encoder.layers.1"):
        cross_task_arrays(reps, language="en", n_boot=0, n_perm=0, progress=False)
    del reps["do"]["decoder/meaning"]
    with pytest.raises(CKAProbeError, match="DO model has no 'decoder/meaning'"):
        cross_task_arrays(reps, language="en", progress=False)
    reps = representations(rng, 10)
    reps["sso"]["encoder"]["encoder.layers.0"] = np.full((10, 5), np.nan)
    with pytest.raises(CKAProbeError, match="en/sso/encoder/encoder.layers.0: contains NaN"):
        cross_task_arrays(reps, language="en", progress=False)
    reps = representations(rng, 10)
    reps["mso"] = {s: {k: v[:8] for k, v in layer.items()} for s, layer in reps["mso"].items()}
    with pytest.raises(CKAProbeError, match="different numbers of utterances"):
        cross_task_arrays(reps, language="en", progress=False)


def test_roles_from_provenance():
    stores = {
        "a.h5": {"arch": "so", "tasks": ["surface"], "language": "en"},
        "b.h5": {"arch": "so", "tasks": '["meaning"]', "language": "en"},
        "c.h5": {"arch": "do", "tasks": ["surface", "meaning"], "language": "en"},
    }
    assert assign_roles(stores) == {"en": {"sso": ["a.h5"], "mso": ["b.h5"], "do": ["c.h5"]}}
    with pytest.raises(CKAProbeError, match="two SSO models for language 'en': a.h5 and d.h5"):
        assign_roles({**stores, "d.h5": stores["a.h5"]})
    with pytest.raises(CKAProbeError, match="language 'en': no DO model"):
        assign_roles({k: v for k, v in stores.items() if k != "c.h5"})
    with pytest.raises(CKAProbeError, match="x.h5: cannot tell the model's role"):
        role_of({"arch": "so", "tasks": ["surface", "meaning"]}, "x.h5")
