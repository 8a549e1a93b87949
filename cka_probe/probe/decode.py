"""Decodability of the surface and of the meaning word, with control tasks.

A linear classifier (scikit-learn ``RidgeClassifier`` after
``StandardScaler``: one least-squares map from the representation to the
±1 codes of the word types, the type of the largest output predicted; its
penalty alpha chosen by the inner grouped cross-validation,
:mod:`cka_probe.probe.nested`) predicts a word's type from its layer
representation. Ridge rather than multinomial logistic regression because
its fit is one linear solve for every type at once: with 60 types, 256
dimensions and 400 words a nested logistic fit took about 2 s and a layer's
four decodings (task and control, surface and meaning) minutes, which a
study of several models and layers cannot afford; its accuracy on held-out folds is the task accuracy, for the
surface word (what was said) and for the meaning word (what was meant).

A word type seen in one group only is in one fold only, so it cannot be
decoded on held-out words: the task keeps the words whose type occurs in at
least ``min_groups`` distinct cross-validation groups (default 3) and says
how many it kept.

Control task (Hewitt & Liang 2019, "Designing and interpreting probes with
control tasks"): the same probe, on the same words and folds, fitted to
control labels that keep the task's label distribution but carry no
information about the representation: the task's labels permuted over the
words (seeded). Hewitt & Liang give each word *type* a random label; here the
label is the type itself, so a random label per type would be a renaming of
the classes, which a linear classifier decodes exactly as well, so the
labels are shuffled over the word tokens instead. The control accuracy is
what the probe reaches from the label distribution and its own capacity
alone, and the selectivity

    selectivity = task accuracy − control accuracy

is the part of the accuracy the representation accounts for (≈ 0 for a
representation that knows nothing of the words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import RidgeClassifier

from cka_probe.probe.groups import Split
from cka_probe.probe.nested import chosen, nested_fit

ALPHAS = [1e-1, 1.0, 10.0, 100.0, 1e3, 1e4]
"""The ridge penalties the inner cross-validation chooses from (on standardised features)."""

MIN_GROUPS = 3
"""A type is decoded only if it occurs in at least this many cross-validation groups."""


@dataclass(frozen=True)
class Decoded:
    """Held-out correctness ``(n,)`` (1.0 or 0.0) of every word, in row order, and each fold's alpha."""

    correct: np.ndarray
    alphas: list[float]


def decodable(labels: Sequence[str | None], groups: np.ndarray, min_groups: int = MIN_GROUPS) -> np.ndarray:
    """``(W,)`` mask of the words whose label (not None) occurs in at least ``min_groups`` groups."""
    seen: dict[str, set] = {}
    for label, group in zip(labels, groups):
        if label is not None:
            seen.setdefault(label, set()).add(group)
    return np.array([label is not None and len(seen[label]) >= min_groups for label in labels], dtype=bool)


def control_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """The labels ``(n,)`` permuted over the words: the same label distribution, no link to the words."""
    return np.random.default_rng(seed).permutation(labels)


def held_out_accuracy(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: list[Split]) -> Decoded:
    """Whether the probe fitted on each fold's training rows decodes ``labels (n,)`` of its held-out rows
    from ``x (n, D)``."""
    correct = np.empty(len(labels))
    alphas = []
    for train, test in folds:
        search = nested_fit(
            RidgeClassifier(), {"alpha": ALPHAS}, x[train], labels[train], groups[train], "accuracy"
        )
        correct[test] = search.predict(x[test]) == labels[test]
        alphas.append(chosen(search, "alpha"))
    return Decoded(correct, alphas)
