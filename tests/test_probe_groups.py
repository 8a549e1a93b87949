"""Cross-validation groups of the probes: no utterance and no sentence in two folds."""

from __future__ import annotations

import numpy as np
import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.probe.groups import cv_groups, grouped_folds
from cka_probe.probe.simulate import planted_words
from cka_probe.probe.word_table import sentence_key


def test_utterances_sharing_a_sentence_are_one_group_and_chains_merge():
    utterances = ["a", "a", "b", "c", "d", "e", "e"]
    sentences = ["s1", "s1", "s1", "s2", "s3", "s3", "s4"]  # a-b share s1; d-e share s3, e also says s4
    groups = cv_groups(utterances, sentences)
    assert groups[0] == groups[1] == groups[2]
    assert groups[4] == groups[5] == groups[6]
    assert len({groups[0], groups[3], groups[4]}) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_folds_never_share_an_utterance_or_a_sentence(seed):
    table, _ = planted_words(seed, 0.5, n_sentences=20, repeats=3)
    rng = np.random.default_rng(seed)
    sentence = table.sentence.copy()
    # some utterances say a second sentence's key too (a chain across sentences)
    sentence[rng.random(len(sentence)) < 0.05] = "s0"
    groups = cv_groups(table.utterance, sentence)
    folds = grouped_folds(groups, 5, seed)
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out) == list(range(len(groups)))  # every word held out exactly once
    for train, test in folds:
        for labels in (table.utterance, sentence):
            assert not set(labels[train]) & set(labels[test])


def test_folds_need_two_groups():
    with pytest.raises(CKAProbeError, match="at least 2 groups"):
        grouped_folds(np.zeros(5, dtype=int), 5, 0)


def test_the_sentence_key_is_the_recorded_sentence_else_the_meaning_transcript():
    assert sentence_key({"meaning": " he  goes\u0301 ", "sentence": 7}) == "7"
    assert sentence_key({"meaning": "he  goes home "}) == "he goes home"
