"""The measure registry: every measure registered once, every consumer resolving through it, and the
tidy tables' ``measure`` and ``value`` columns."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import representations
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from cka_probe import similarity, similarity_matrix
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError
from cka_probe.inference.resample_measures import ResampledMeasure
from cka_probe.measures import registry
from cka_probe.measures.similarity import options_of
from cka_probe.study.cross_task import COMPARISONS, cross_task_arrays
from cka_probe.study.schema import COLUMNS, VALUE, diagonal, pooled, read_table

BUILT_IN = ("cka", "cca", "svcca", "pwcca", "procrustes", "procrustes_angle", "rsa")


def row_sum_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The toy measure by hand: 1 − Pearson r of the two sides' row sums."""
    return 1 - np.corrcoef(x.sum(1), y.sum(1))[0, 1]


def toy_grid(tx, ty, labels_x, labels_y, *, offset: float = 0.0) -> torch.Tensor:
    """``(Lx, Ly)`` of 1 − r(row sums) + offset, from validated layers."""
    ty = tx if ty is None else ty
    sums = lambda side: torch.stack([t.to(torch.float64).sum(1) for t in side])
    zx, zy = (s - s.mean(1, keepdim=True) for s in (sums(tx), sums(ty)))
    zx, zy = zx / zx.norm(dim=1, keepdim=True), zy / zy.norm(dim=1, keepdim=True)
    return 1 - zx @ zy.T + offset


@pytest.fixture
def toy():
    measure = registry.register(
        registry.Measure.on_layers("toy", "distance", ("offset",), toy_grid, "1 - r of the row sums")
    )
    yield measure
    registry.unregister("toy")


def test_each_measure_is_registered_once_under_its_name():
    assert registry.names() == BUILT_IN
    assert all(registry.lookup(name).name == name for name in BUILT_IN)
    assert {name: registry.lookup(name).kind for name in BUILT_IN} == {
        **dict.fromkeys(BUILT_IN, "similarity"),
        "procrustes": "distance",
        "procrustes_angle": "distance",
    }
    with pytest.raises(CKAProbeError, match="'cca' is already registered"):
        registry.register(registry.lookup("cca"))
    with pytest.raises(CKAProbeError, match="kind must be one of"):
        registry.Measure.on_layers("odd", "closeness", (), toy_grid, "")
    assert registry.names() == BUILT_IN


def test_linear_cka_resamples_in_gram_space_and_every_other_measure_recomputes_its_grid():
    assert registry.lookup("cka").resampling.layer_set is registry.gram_resample.GramSet
    for name in BUILT_IN[1:]:
        resampling = registry.lookup(name).resampling
        assert resampling.layer_set is registry.LayerSet and not resampling.tie_corrected


def test_a_registered_measure_reaches_similarity_matrix_the_cli_and_options_of(toy, tmp_path):
    rng = np.random.default_rng(0)
    xs = {f"x{i}": rng.standard_normal((30, 3)) for i in range(2)}
    ys = {f"y{i}": rng.standard_normal((30, 4)) for i in range(3)}
    table = similarity_matrix(xs, ys, measure="toy", offset=0.5)
    for (a, b), value in table.stack().items():
        assert value == pytest.approx(row_sum_distance(xs[a], ys[b]) + 0.5, abs=1e-12)
    assert table.attrs["kind"] == "distance" and table.attrs["options"] == {"offset": "0.5"}
    assert similarity(xs["x0"], ys["y1"], measure="toy") == pytest.approx(
        row_sum_distance(xs["x0"], ys["y1"])
    )
    assert options_of("toy", {"offset": 1.0, "ridge": 0.1}) == {"offset": 1.0}
    with pytest.raises(CKAProbeError, match=r"measure 'toy' takes the options \['offset'\], not \['ridge'\]"):
        similarity_matrix(xs, ys, measure="toy", ridge=0.1)
    np.savez(tmp_path / "a.npz", **xs)
    np.savez(tmp_path / "b.npz", **ys)
    out = tmp_path / "t.csv"
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.npz"),
                str(tmp_path / "b.npz"),
                "--measure",
                "toy",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(pd.read_csv(out, index_col=0).to_numpy(), table.to_numpy() - 0.5, atol=1e-12)


def test_an_unregistered_measure_is_gone_everywhere():
    registry.register(registry.Measure.on_layers("toy", "distance", ("offset",), toy_grid, ""))
    registry.unregister("toy")
    x = np.random.default_rng(1).standard_normal((20, 3))
    for call in (
        lambda: similarity(x, x, measure="toy"),
        lambda: ResampledMeasure("toy"),
        lambda: registry.unregister("toy"),
    ):
        with pytest.raises(CKAProbeError, match="measure must be one of cka, cca, .*, got 'toy'"):
            call()


def test_a_registered_measure_reaches_the_resampling_statistics(toy):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((25, 3)), rng.standard_normal((25, 5))
    stats = ResampledMeasure("toy", offset=0.0)
    assert stats.estimator == "toy" and stats.kernel == "-"
    a, b = stats.layers({"x": x}, source="a/"), stats.layers({"y": y}, source="b/")
    boots = [rng.integers(0, 25, 25) for _ in range(30)]
    perms = [rng.permutation(25) for _ in range(19)]
    draws, null = stats.bootstrap(a, b, boots), stats.permuted(a, b, perms)
    np.testing.assert_allclose(draws[:, 0, 0], [row_sum_distance(x[i], y[i]) for i in boots], atol=1e-12)
    np.testing.assert_allclose(null[:, 0, 0], [row_sum_distance(x, y[p]) for p in perms], atol=1e-12)
    observed = stats.point_estimate(a, b)
    assert observed[0, 0] == pytest.approx(row_sum_distance(x, y), abs=1e-12)
    low, high = stats.interval(draws, observed)
    assert (low[0, 0], high[0, 0]) == pytest.approx(tuple(np.percentile(draws[:, 0, 0], [2.5, 97.5])))
    # a distance: a null value counts against the observed one where it is as small or smaller
    assert (
        stats.permutation_pvalue(observed, null)[0, 0] == (1 + (null[:, 0, 0] <= observed[0, 0]).sum()) / 20
    )
    with pytest.raises(CKAProbeError, match=r"takes the options \['offset'\], not \['ridge'\]"):
        ResampledMeasure("toy", ridge=1.0)


def test_a_registered_measure_fills_the_cross_task_table(toy):
    rng = np.random.default_rng(3)
    reps = representations(rng, 30)
    reps["do"]["encoder"] = {name: 2 * x for name, x in reps["sso"]["encoder"].items()}
    table = pooled(
        cross_task_arrays(reps, language="en", n_boot=10, n_perm=19, progress=False, measure="toy").table
    )
    assert (table.measure == "toy").all() and (table.estimator == "toy").all() and (table.kernel == "-").all()
    for comp in COMPARISONS:
        xs, ys = reps[comp.role_a][comp.stream_a], reps[comp.role_b][comp.stream_b]
        rows = table[(table.part == comp.part) & (table.comparison == comp.name)]
        for r in rows.itertuples():
            assert r.value == pytest.approx(row_sum_distance(xs[r.layer_a], ys[r.layer_b]), abs=1e-12)
    same = diagonal(table[(table.part == "encoder") & (table.comparison == "DO-SSO")])
    np.testing.assert_allclose(same.value, 0.0, atol=1e-12)
    assert (same.p == 1 / 20).all()  # nothing shuffled is as close as distance 0


def test_linear_cka_statistics_keep_the_estimator_choice():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 6))
    y = x @ rng.standard_normal((6, 6)) + rng.standard_normal((40, 6))
    draws = rng.standard_normal((200, 1, 1)) * 0.05 + 0.6
    estimate = np.array([[0.5]])
    for debiased in (True, False):
        stats = ResampledMeasure("cka", debiased=debiased)
        assert stats.estimator == ("debiased" if debiased else "biased") and stats.kernel == "linear"
        a, b = stats.layers({"x": x}), stats.layers({"y": y})
        assert stats.point_estimate(a, b)[0, 0] == pytest.approx(
            similarity(x, y, debiased=debiased), abs=1e-12
        )
        q_low, q_high = np.percentile(draws[:, 0, 0], [2.5, 97.5])
        low, high = stats.interval(draws, estimate)
        # debiased: percentile; biased: basic, [2θ̂ − q_hi, 2θ̂ − q_lo] (Davison & Hinkley 1997, Eq. 5.6)
        expected = (q_low, q_high) if debiased else (1.0 - q_high, 1.0 - q_low)
        assert (low[0, 0], high[0, 0]) == pytest.approx(expected)
    assert ResampledMeasure("cca").estimator == "cca"
    with pytest.raises(
        CKAProbeError, match=r"measure 'cka' takes the options \['debiased'\], not \['kernel'\]"
    ):
        ResampledMeasure("cka", kernel="rbf")


def test_the_cross_task_table_carries_measure_and_value_and_reads_back(tmp_path):
    table = cross_task_arrays(
        representations(np.random.default_rng(5), 15), language="en", n_boot=5, n_perm=5, progress=False
    ).table
    assert VALUE == "value" and "cka" not in table.columns
    assert list(table.columns[table.columns.get_indexer(["measure", VALUE])]) == ["measure", "value"]
    assert list(table.columns) == list(COLUMNS) and (table.measure == "cka").all()
    table.to_csv(tmp_path / "cross_task.csv", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "cross_task.csv"), table)


def test_an_old_table_with_a_cka_column_reads_back_with_value(tmp_path):
    old = pd.DataFrame({"comparison": ["DO-SSO", "DO-SSO"], "seed": ["0", "all"], "cka": [0.25, 0.5]})
    old.to_csv(tmp_path / "old.csv", index=False)
    table = read_table(tmp_path / "old.csv")
    assert list(table.columns) == ["comparison", "seed", "value"]
    assert table.value.tolist() == [0.25, 0.5] and table.seed.tolist() == ["0", "all"]


def test_rsa_names_both_euclidean_conventions():
    """cka-probe's euclidean RDM is ‖x_i − x_j‖, rsatoolbox's ‖x_i − x_j‖² / d (its calc_rdm_euclidean):
    the same Spearman RSA, a different Pearson one."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    x[:, 0] += 3 * y[:, 0]
    plain = lambda a: pdist(a, "euclidean")
    squared_per_channel = lambda a: pdist(a, "sqeuclidean") / a.shape[1]
    spearman = similarity(x, y, measure="rsa", rdm="euclidean", compare="spearman")
    assert spearman == pytest.approx(spearmanr(squared_per_channel(x), squared_per_channel(y))[0], abs=1e-12)
    pearson = similarity(x, y, measure="rsa", rdm="euclidean", compare="pearson")
    assert pearson == pytest.approx(pearsonr(plain(x), plain(y))[0], abs=1e-12)
    assert abs(pearson - pearsonr(squared_per_channel(x), squared_per_channel(y))[0]) > 1e-3
    assert "rsatoolbox" in registry.lookup("rsa").about and "rsatoolbox" in registry.__doc__
