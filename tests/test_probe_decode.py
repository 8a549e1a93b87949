"""Decodability of the surface and meaning words: control tasks, selectivity, agreement with scikit-learn."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from cka_probe.probe.decode import ALPHAS, control_labels, decodable, held_out_accuracy
from cka_probe.probe.groups import grouped_folds
from cka_probe.probe.intervals import StoreProbe, summarise
from cka_probe.probe.run import plan_probes, probe_layer
from cka_probe.probe.simulate import planted_words


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):  # small fits on a shared machine: threads only contend
        yield


def probed(planted: float | None, seed: int = 0):
    """The summary row of every probe of planted words (decoded on all words, 8 types)."""
    table, x = planted_words(seed, planted, n_types=8, n_sentences=16, repeats=2, n_words=5, dim=16)
    plan = plan_probes(table, words="all", seed=seed, n_splits=3)
    probes, _ = probe_layer(x, plan)
    return summarise([StoreProbe("sim", "encoder", {"layer": probes})], n_boot=300, seed=seed).iloc[0]


def test_selectivity_is_about_zero_for_a_random_representation():
    row = probed(None)
    for task in ("surface", "meaning"):
        assert abs(row[f"{task}_selectivity"]) < 0.1
        assert row[f"{task}_selectivity_lo"] <= 0 <= row[f"{task}_selectivity_hi"]
        assert row[f"n_{task}_selectivity"] > 100


def test_a_representation_of_the_word_is_selective():
    row = probed(1.0)
    assert row["surface_accuracy"] > 0.8 and row["surface_selectivity_lo"] > 0.5
    # one variant per meaning word: what was meant is decodable from what was said (docs/probes.md)
    assert row["meaning_selectivity_lo"] > 0.5


def test_types_seen_in_too_few_groups_are_not_decoded():
    labels = ["a", "a", "a", "b", "b", None, "c", "c"]
    groups = np.array([0, 1, 2, 0, 0, 1, 1, 2])
    assert decodable(labels, groups, 3).tolist() == [True] * 3 + [False] * 5
    assert decodable(labels, groups, 2).tolist() == [True] * 3 + [False, False, False, True, True]


def test_control_labels_keep_the_label_distribution():
    labels = np.array(list("aaaabbbccd"))
    control = control_labels(labels, 0)
    assert Counter(control) == Counter(labels) and not np.array_equal(control, labels)


def test_the_fold_agrees_with_a_direct_scikit_learn_fit():
    table, x = planted_words(5, 0.0, n_types=8, n_sentences=24, dim=32)
    labels, groups = table.meaning.astype(str), np.arange(len(table.meaning)) // 6
    folds = grouped_folds(groups, 3, 5)
    decoded = held_out_accuracy(x, labels, groups, folds)
    train, test = folds[0]
    inner = list(GroupKFold(3).split(x[train], labels[train], groups[train]))
    probe = lambda alpha: make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha))  # noqa: E731
    scores = [cross_val_score(probe(a), x[train], labels[train], cv=inner).mean() for a in ALPHAS]
    c = ALPHAS[int(np.argmax(scores))]
    assert decoded.alphas[0] == c
    want = probe(c).fit(x[train], labels[train]).predict(x[test]) == labels[test]
    assert decoded.correct[test].tolist() == want.astype(float).tolist()
