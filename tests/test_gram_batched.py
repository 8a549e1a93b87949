"""The batched resampled CKA of :mod:`cka_probe.measures.gram_resample` against a per-resample gather.

The reference below gathers each resample's n × n Grams, leaves out its tie pairs (and, debiased, the
diagonal) and applies the estimators as written (Song et al. 2012, Eq. 5; Kornblith et al. 2019, Eq. 3),
one resample and one layer pair at a time.
"""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import replicated

from cka_probe.inference.resampling import bootstrap_counts, bootstrap_draws
from cka_probe.measures import gram_resample
from cka_probe.study.cross_task import cross_task_arrays


def centred_gram(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    return c @ c.T


def resample_hsic(k: np.ndarray, l: np.ndarray, index_k, index_l, debiased: bool) -> float:
    """HSIC of the Grams k, l gathered at index_k, index_l; pairs of positions holding one row left out."""
    m = len(index_k)
    kk, ll = k[np.ix_(index_k, index_k)], l[np.ix_(index_l, index_l)]
    eye = np.eye(m, dtype=bool)
    keep_k = (index_k[:, None] != index_k[None, :]) | eye
    keep_l = (index_l[:, None] != index_l[None, :]) | eye
    if debiased:
        kt, lt = kk * (keep_k & ~eye), ll * (keep_l & ~eye)
        ones = kt.sum() * lt.sum() / ((m - 1) * (m - 2))
        cross = 2 / (m - 2) * kt.sum(1) @ lt.sum(1)
        return (np.sum(kt * lt) + ones - cross) / (m * (m - 3))
    h = np.eye(m) - 1 / m
    return np.sum((h @ kk @ h) * keep_k * (h @ ll @ h) * keep_l) / (m - 1) ** 2


def reference_grid(ks, ls, index_x, index_y, debiased: bool) -> np.ndarray:
    """(L_a, L_b) CKA of one resample: rows index_x of every Gram k (n, n), index_y of every l."""
    own = lambda g, i: resample_hsic(g, g, i, i, debiased)
    return np.array(
        [
            [
                resample_hsic(k, l, index_x, index_y, debiased) / np.sqrt(own(k, index_x) * own(l, index_y))
                for l in ls
            ]
            for k in ks
        ]
    )


def reference_bootstrap(ks, ls, indices, debiased: bool) -> np.ndarray:
    return np.stack([reference_grid(ks, ls, i, i, debiased) for i in indices])


def reference_permuted(ks, ls, perms, debiased: bool) -> np.ndarray:
    identity = np.arange(len(ks[0]))
    return np.stack([reference_grid(ks, ls, identity, p, debiased) for p in perms])


def grams(xs: list[np.ndarray]) -> list[np.ndarray]:
    return [centred_gram(x) for x in xs]


def sides(rng, n: int, depths: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Random layers per side, related across sides (a shared signal), with large mean offsets."""
    signal = rng.standard_normal((n, 3))
    return [
        [
            np.hstack([signal * rng.uniform(0.2, 2), rng.standard_normal((n, 2 + i))]) + rng.normal(0, 20)
            for i in range(depth)
        ]
        for depth in depths
    ]


def gram_set(xs: list[np.ndarray]) -> gram_resample.GramSet:
    return gram_resample.GramSet({f"l{i}": x for i, x in enumerate(xs)})


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize("seed, depths", [(0, (1, 1)), (1, (3, 2)), (2, (2, 4))])
def test_bootstrap_with_ties_matches_the_gather(debiased, seed, depths):
    rng = np.random.default_rng(seed)
    n = 12  # small: every resample holds many tie pairs
    xs, ys = sides(rng, n, depths)
    indices = list(bootstrap_draws(rng, n, 9))
    got = gram_resample.bootstrap(gram_set(xs), gram_set(ys), indices, debiased=debiased)
    np.testing.assert_allclose(
        got, reference_bootstrap(grams(xs), grams(ys), indices, debiased), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize("seed, depths", [(3, (1, 1)), (4, (3, 2)), (5, (2, 4))])
def test_permutations_match_the_gather(debiased, seed, depths):
    rng = np.random.default_rng(seed)
    n = 15
    xs, ys = sides(rng, n, depths)
    perms = [rng.permutation(n) for _ in range(7)]
    got = gram_resample.permuted(gram_set(xs), gram_set(ys), perms, debiased=debiased)
    np.testing.assert_allclose(
        got, reference_permuted(grams(xs), grams(ys), perms, debiased), rtol=0, atol=1e-10
    )


def test_resamples_of_other_lengths_and_all_copies_of_one_row():
    rng = np.random.default_rng(6)
    xs, ys = sides(rng, 10, (2, 2))
    indices = [rng.integers(0, 10, 14), rng.integers(0, 10, 7)]
    got = gram_resample.bootstrap(gram_set(xs), gram_set(ys), indices, debiased=True)
    np.testing.assert_allclose(
        got, reference_bootstrap(grams(xs), grams(ys), indices, True), rtol=0, atol=1e-10
    )
    assert np.isnan(gram_resample.bootstrap(gram_set(xs), gram_set(ys), [np.zeros(10, int)])).all()


def test_count_weights_are_the_multiplicities_of_the_index_vectors():
    draws = bootstrap_draws(np.random.default_rng(7), 20, 5)
    counts = bootstrap_counts(np.random.default_rng(7), 20, 5)
    np.testing.assert_array_equal(counts, [np.bincount(d, minlength=20) for d in draws])


@pytest.mark.parametrize("debiased", [True, False])
def test_shared_sides_and_tiles_give_every_pair_its_own_grids(debiased):
    rng = np.random.default_rng(8)
    n = 16
    xs = sides(rng, n, (2, 3, 1))
    sets = [gram_set(x) for x in xs]
    pairs = [(0, 1), (2, 1), (0, 2), (1, 0)]
    indices, perms = list(bootstrap_draws(rng, n, 7)), [rng.permutation(n) for _ in range(5)]
    boots = gram_resample.bootstrap_grids(
        [(sets[i], sets[j]) for i, j in pairs], indices, debiased=debiased, tile=3, max_bytes=1
    )
    nulls = gram_resample.permuted_grids(
        [(sets[i], sets[j]) for i, j in pairs], perms, debiased=debiased, tile=2, max_bytes=1
    )
    for (i, j), boot, null in zip(pairs, boots, nulls):
        np.testing.assert_allclose(
            boot, reference_bootstrap(grams(xs[i]), grams(xs[j]), indices, debiased), atol=1e-10
        )
        np.testing.assert_allclose(
            null, reference_permuted(grams(xs[i]), grams(xs[j]), perms, debiased), atol=1e-10
        )


def test_pairs_stacked_on_a_shared_second_side_equal_each_pair_alone():
    rng = np.random.default_rng(10)
    sets = [gram_set(x) for x in sides(rng, 20, (3, 2, 4))]
    pairs = [(sets[0], sets[2]), (sets[1], sets[2]), (sets[2], sets[2])]
    perms = [rng.permutation(20) for _ in range(6)]
    stacked = gram_resample.permuted_grids(pairs, perms, debiased=True)
    for pair, grid in zip(pairs, stacked):
        np.testing.assert_allclose(
            grid, gram_resample.permuted(*pair, perms, debiased=True), rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("debiased", [True, False])
def test_float32_products_stay_within_1e_6_of_float64(debiased):
    rng = np.random.default_rng(11)
    n = 300
    sets = [gram_set([x * 100 for x in xs]) for xs in sides(rng, n, (3, 2))]
    pairs = [(sets[0], sets[1]), (sets[1], sets[0])]
    indices, perms = list(bootstrap_draws(rng, n, 6)), [rng.permutation(n) for _ in range(6)]
    for grids in (gram_resample.bootstrap_grids, gram_resample.permuted_grids):
        resamples = indices if grids is gram_resample.bootstrap_grids else perms
        exact = grids(pairs, resamples, debiased=debiased)
        single = grids(pairs, resamples, debiased=debiased, dtype=torch.float32)
        for x, y in zip(single, exact):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def per_pair_reference(reference):
    """A stand-in for ``bootstrap_grids``/``permuted_grids``: the gather on each pair's stored Grams."""

    def grids(pairs, resamples, *, debiased, **precision):  # dtype, held: float64 Grams here
        return [reference(list(a.grams), list(b.grams), resamples, debiased) for a, b in pairs]

    return grids


@pytest.mark.parametrize("debiased", [True, False])
def test_cross_task_table_equals_the_per_pair_gather(monkeypatch, debiased):
    reps = replicated(np.random.default_rng(9), 40, 2)
    options = dict(
        language="en", n_boot=12, n_perm=15, debiased=debiased, progress=False, dtype=torch.float64
    )
    got = cross_task_arrays(reps, **options)
    monkeypatch.setattr(gram_resample, "bootstrap_grids", per_pair_reference(reference_bootstrap))
    monkeypatch.setattr(gram_resample, "permuted_grids", per_pair_reference(reference_permuted))
    expected = cross_task_arrays(reps, **options)
    numeric = got.table.select_dtypes("number").columns
    pd.testing.assert_frame_equal(got.table.drop(columns=numeric), expected.table.drop(columns=numeric))
    np.testing.assert_allclose(got.table[numeric], expected.table[numeric], rtol=0, atol=1e-10)
    for key, draws in expected.draws.items():
        np.testing.assert_allclose(got.draws[key], draws, rtol=0, atol=1e-10)


def study(rng, n: int, seeds: int, depth: int, width: int) -> dict:
    """Every role's streams for ``seeds`` replicates: layers sharing a signal of rank 8 plus their own noise
    (decoders more of it), so that the cells range from near the floor to near 1."""
    signal = rng.standard_normal((n, 8))
    streams = {"sso": ("encoder", "decoder/surface"), "mso": ("encoder", "decoder/meaning")}
    streams["do"] = ("encoder", "decoder/surface", "decoder/meaning")
    return {
        role: [
            {
                stream: {
                    f"l{i}": signal @ rng.standard_normal((8, width))
                    + (1 + i + 3 * stream.startswith("decoder")) * rng.standard_normal((n, width))
                    for i in range(depth)
                }
                for stream in names
            }
            for _ in range(seeds)
        ]
        for role, names in streams.items()
    }


@pytest.mark.parametrize("debiased", [True, False])
def test_float32_tables_stay_within_1e_6_of_float64(debiased):
    """The tables' default from 500 utterances (float32 Grams and products, float64 sums and accumulation)
    against float64: every value, interval end, p-value and chance level of a two-seed study at n = 400,
    d = 96."""
    reps = study(np.random.default_rng(12), 400, 2, 3, 96)
    options = dict(language="en", n_boot=40, n_perm=40, debiased=debiased, progress=False)
    single = cross_task_arrays(reps, **options, dtype=torch.float32).table
    exact = cross_task_arrays(reps, **options, dtype=torch.float64).table
    assert single["ci_low"].notna().all() and single["p"].notna().all()
    numeric = ["value", "ci_low", "ci_high", "p", "p_adj", "null_mean"]
    np.testing.assert_allclose(single[numeric], exact[numeric], rtol=0, atol=1e-6)


PEAK = """
import resource, sys
import numpy as np
from cka_probe.measures import gram_resample
n, count = 600, int(sys.argv[1])
rng = np.random.default_rng(0)
sets = [gram_resample.GramSet({f"l{i}": rng.standard_normal((n, 32)) for i in range(6)}) for _ in range(2)]
draws = list(rng.integers(0, n, (count, n)))
perms = [rng.permutation(n) for _ in range(count // 8)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
gram_resample.bootstrap_grids([tuple(sets)], draws, tile=32, max_bytes=2**20)
gram_resample.permuted_grids([tuple(sets)], perms, tile=32, max_bytes=2**20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def peak_bytes(count: int) -> int:
    """Growth of the peak resident memory of a fresh process over the two batched calls at R = count."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(count)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_the_number_of_resamples():
    small, large = peak_bytes(64), peak_bytes(1024)
    # untiled, the sums alone at R = 1,024 would be 2 sides · 8·R·L·n = 59 MB; the outputs are 0.6 MB
    assert large - small < 12 * 2**20, (small, large)
