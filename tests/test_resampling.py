"""Grouped resampling: whole groups drawn, keyed streams, and the draws the analysis has always used."""

import zlib

import numpy as np
import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.inference import resampling
from cka_probe.study.cer import gap_draws
from cka_probe.study.cross_task import resamples
from cka_probe.study.word_cross_task import utterance_draws


def test_group_rows_follow_first_appearance_and_every_row_is_a_group_without_labels():
    parts = resampling.group_rows(["b", "a", "b", "c", "a"], 5)
    assert [p.tolist() for p in parts] == [[0, 2], [1, 4], [3]]
    assert [p.tolist() for p in resampling.group_rows(None, 3)] == [[0], [1], [2]]
    with pytest.raises(CKAProbeError, match="one label per row"):
        resampling.group_rows(["a", "b"], 3)


def test_a_group_draw_takes_every_row_of_each_drawn_group_and_nothing_else():
    groups = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5])]
    draws = resampling.bootstrap_draws(np.random.default_rng(0), len(groups), 50)
    owner = np.repeat(np.arange(3), [3, 1, 2])  # the group of each row
    for draw, rows in zip(draws, resampling.grouped_resamples(groups, draws)):
        # each row appears as often as its group was drawn: groups are never split
        assert np.bincount(rows, minlength=6).tolist() == np.bincount(draw, minlength=3)[owner].tolist()
        # and the rows come as the drawn groups, one whole group after another, in draw order
        ends = np.cumsum([len(groups[g]) for g in draw])
        assert [rows[e - len(groups[g]) : e].tolist() for e, g in zip(ends, draw)] == [
            groups[g].tolist() for g in draw
        ]


def test_counts_are_the_multiplicities_of_the_per_resample_draws():
    counts = resampling.bootstrap_counts(np.random.default_rng(4), 6, 30)
    draws = resampling.bootstrap_draws(np.random.default_rng(4), 6, 30)
    assert counts.shape == (30, 6)
    assert (counts.sum(axis=1) == 6).all()
    for row, draw in zip(counts, draws):
        assert row.tolist() == [int(np.sum(draw == g)) for g in range(6)]
    assert resampling.bootstrap_counts(np.random.default_rng(4), 6, 0).shape == (0, 6)


def test_permutations_are_permutations():
    for order in resampling.permutations(np.random.default_rng(1), 9, 20):
        assert sorted(order.tolist()) == list(range(9))


def test_leave_one_out_drops_exactly_one_group_each():
    groups = [np.array([0, 1]), np.array([2]), np.array([3, 4])]
    assert [rows.tolist() for rows in resampling.leave_one_out(groups)] == [
        [2, 3, 4],
        [0, 1, 3, 4],
        [0, 1, 2],
    ]


def test_paired_rows_keep_groups_whole_and_map_unequal_lengths_by_position():
    groups = [np.array([0, 1, 2, 3]), np.array([4, 5])]
    # group 0 (4 rows) meets group 1 (2 rows): rows 0, 1 -> 4 and 2, 3 -> 5; group 1 meets group 0: 0 and 2
    assert resampling.paired_rows(groups, np.array([1, 0]), 6).tolist() == [4, 4, 5, 5, 0, 2]


def test_a_keyed_stream_depends_on_its_own_key_only():
    a = resampling.keyed_rng(7, "en", "surface", 1).random(5)
    assert np.array_equal(a, resampling.keyed_rng(7, "en", "surface", 1).random(5))
    assert not np.array_equal(a, resampling.keyed_rng(7, "ko", "surface", 1).random(5))
    assert not np.array_equal(a, resampling.keyed_rng(8, "en", "surface", 1).random(5))
    # written out: the seed, then each string's CRC-32 and each integer as it is
    crc = [zlib.crc32(b"en"), zlib.crc32(b"surface")]
    assert np.array_equal(a, np.random.default_rng([7, *crc, 1]).random(5))


def test_draws_split_into_calls_are_the_numbers_of_one_call():
    # the callers drew (R, n) in one call (CER gaps, word level) or n at a time (CKA, cross-task)
    for n, count in ((7, 40), (2, 9), (1000, 3), (2**33 + 7, 4)):
        one_call = np.random.default_rng(3).integers(0, n, (count, n if n < 2000 else 5))
        rng = np.random.default_rng(3)
        each = np.stack([rng.integers(0, n, one_call.shape[1]) for _ in range(count)])
        np.testing.assert_array_equal(each, one_call)
    np.testing.assert_array_equal(
        resampling.bootstrap_draws(np.random.default_rng(3), 7, 40),
        np.random.default_rng(3).integers(0, 7, (40, 7)),
    )


def test_cross_task_resamples_are_the_language_keyed_streams():
    rng = np.random.default_rng([0, zlib.crc32(b"ko"), 1])
    boots = [rng.integers(0, 11, 11) for _ in range(4)]
    assert all(map(np.array_equal, resamples(11, 4, seed=0, language="ko", replace=True), boots))
    rng = np.random.default_rng([0, zlib.crc32(b"ko"), 0])
    perms = [rng.permutation(11) for _ in range(4)]
    assert all(map(np.array_equal, resamples(11, 4, seed=0, language="ko", replace=False), perms))


def test_cer_gap_draws_are_one_call_of_row_indices():
    e_so, e_do, length = np.arange(5.0), np.arange(5.0)[::-1], np.full(5, 10.0)
    idx = np.random.default_rng(2).integers(0, 5, (8, 5))
    expected = 100 * (e_do[idx].sum(1) - e_so[idx].sum(1)) / length[idx].sum(1)
    np.testing.assert_array_equal(gap_draws(e_so, e_do, length, np.random.default_rng(2), 8), expected)


def test_word_level_draws_are_one_call_when_every_resample_has_enough_rows():
    groups = [np.arange(3)] * 6
    expected = np.random.default_rng(5).integers(0, 6, (12, 6))
    np.testing.assert_array_equal(utterance_draws([groups], 12, np.random.default_rng(5)), expected)


def test_the_bootstrap_and_the_permutation_test_draw_the_per_resample_streams():
    from cka_probe.inference import bootstrap_ci, permutation_test
    from cka_probe.measures import linear_cka

    rng = np.random.default_rng(6)
    x = rng.standard_normal((12, 2))
    y = x + rng.standard_normal((12, 2))
    labels = np.repeat(np.arange(6), 2)
    parts = [np.flatnonzero(labels == g) for g in range(6)]
    seen = []
    bootstrap_ci(lambda a, b: seen.append(a) or 0.0, groups=labels, n_resamples=5, seed=9)
    draws = np.random.default_rng(9)
    for rows in seen[:5]:
        assert rows.tolist() == np.concatenate([parts[g] for g in draws.integers(0, 6, 6)]).tolist()
    null = permutation_test(x, y, groups=labels, n_permutations=5, seed=9).null
    orders = np.random.default_rng(9)
    expected = [linear_cka(x, y[np.concatenate([parts[g] for g in orders.permutation(6)])]) for _ in range(5)]
    np.testing.assert_allclose(null, expected, atol=1e-12)
