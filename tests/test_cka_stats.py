"""Group bootstrap and permutation test: seeded, group-aware, calibrated on simple cases."""

import numpy as np
import pytest
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.inference import bootstrap_ci, permutation_test
from cka_probe.inference.resampling import group_rows, paired_rows
from cka_probe.measures import linear_cka

torch.set_num_threads(1)


def grouped(seed, related=True, groups=15):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"utt{g}" for g in range(groups)], rng.integers(2, 6, groups))
    x = rng.standard_normal((len(labels), 3))
    y = (
        x @ rng.standard_normal((3, 4)) + rng.standard_normal((len(labels), 4))
        if related
        else rng.standard_normal((len(labels), 4))
    )
    return x, y, labels


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    x, y, labels = grouped(0)
    a = bootstrap_ci(x, y, groups=labels, n_resamples=60, seed=3)
    b = bootstrap_ci(x, y, groups=labels, n_resamples=60, seed=3)
    assert a == b and a.n_groups == 15
    assert a.low < a.estimate < a.high
    rows = bootstrap_ci(x, y, n_resamples=60, seed=3)  # one group per row: Song et al.'s estimator
    assert rows.estimate == pytest.approx(linear_cka(x, y, debiased=True)) and rows.n_groups == len(x)


def test_bootstrap_resamples_whole_groups():
    x, y, labels = grouped(1)
    seen = []

    def record(rows_x, rows_y):
        seen.append(rows_x.copy())
        assert rows_x is rows_y
        return 0.0

    bootstrap_ci(record, groups=labels, n_resamples=5)
    for rows in seen[:-1]:
        drawn = labels[rows]
        for label in np.unique(drawn):  # each group enters whole, possibly several times
            assert np.count_nonzero(drawn == label) % np.count_nonzero(labels == label) == 0


def test_paired_rows_keep_group_order_and_map_by_relative_position():
    labels = np.array(["a", "a", "b", "b", "b", "b", "a"])
    parts = group_rows(labels, 7)
    assert [p.tolist() for p in parts] == [[0, 1, 6], [2, 3, 4, 5]]
    assert paired_rows(parts, np.array([1, 0]), 7).tolist() == [2, 3, 0, 0, 1, 6, 4]


def test_permutation_test_detects_dependence_and_not_independence():
    x, y, labels = grouped(2)
    dependent = permutation_test(x, y, groups=labels, n_permutations=99, seed=0)
    assert dependent.p_value == pytest.approx(0.01)
    xi, yi, labels_i = grouped(3, related=False)
    independent = permutation_test(xi, yi, groups=labels_i, n_permutations=99, seed=0)
    assert independent.p_value > 0.05
    assert (
        permutation_test(xi, yi, groups=labels_i, n_permutations=99, seed=0).null.tolist()
        == independent.null.tolist()
    )


def test_stats_argument_errors():
    x, y, labels = grouped(4)
    with pytest.raises(CKAProbeError, match="one label per row"):
        bootstrap_ci(x, y, groups=labels[:-1])
    with pytest.raises(CKAProbeError, match="give groups"):
        permutation_test(lambda rx, ry: 0.0)
    with pytest.raises(CKAProbeError, match="at least 2 groups"):
        bootstrap_ci(x, y, groups=["same"] * len(x))
