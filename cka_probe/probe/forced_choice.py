"""The forced-choice said-versus-meant probe: is a word representation closer to its surface or meaning form?

A linear map from a layer's word representation h_w (standardised in the
fold) to the word's form f(v) (:mod:`cka_probe.probe.forms`) is fitted by
ridge regression on the *identical* words of the training folds, where the
surface word is the meaning word and the target is unambiguous; its penalty
α is chosen by the inner grouped cross-validation (:mod:`cka_probe.probe.nested`).
On each held-out *substituted* word (a surface word paired with a different
meaning word; inserted words have no meaning form and are left out) the
prediction f̂_w is compared with the two candidate forms by cosine, within
the space the map can reach:

    c_w = 1 if cos(P(f̂_w − ȳ), P(f(surface_w) − ȳ)) > cos(P(f̂_w − ȳ), P(f(meaning_w) − ȳ)),
          0 if <,  ½ if equal (or if the two candidates coincide in that space)

with ȳ the mean of the fold's training targets and P the projection on the
span of their centred rows. A ridge prediction lies in ȳ + that span (it is
a combination of the training targets), which holds the meaning words of
identical words but not the n-grams of a mispronounced surface word never
said correctly: compared in the full form space, the surface candidate would
lose the norm of its unreachable part and every layer would lean toward
meaning. In simulation (``cka_probe.probe.simulate``) a representation of the
surface form alone still scores below 1 where surface words are out of that
vocabulary (0.89 on average; ``docs/probes.md``): the unreachable part of
its representation is mapped to noise.

and the layer's surface preference is the mean of c_w over the held-out
words, in [0, 1]: 1 when the layer encodes what was said, 0 when it encodes
what was meant. Cosine rather than Euclidean distance: ridge shrinks f̂
toward the forms' mean (0 after standardisation), and under a shrunk
prediction the Euclidean choice favours whichever candidate has the smaller
norm (the shorter, more common n-grams) whatever the layer encodes; the
cosine choice does not depend on the prediction's scale. The design follows
the probing-classifier recipe (a simple, regularised probe on held-out data;
Belinkov 2022, "Probing classifiers: promises, shortcomings, and advances")
with a forced choice between two given answers instead of an open decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import Ridge

from cka_probe.errors import CKAProbeError
from cka_probe.probe.groups import Split
from cka_probe.probe.nested import chosen, nested_fit

ALPHAS = [1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5]
"""The ridge penalties the inner cross-validation chooses from."""

RANK_TOL = 1e-9
"""Singular values below this fraction of the largest do not span the reachable space."""

MIN_FIT_WORDS = 10
"""The fewest identical words a training fold must hold to fit the map."""


@dataclass(frozen=True)
class ForcedChoice:
    """Held-out choices ``(n,)`` (1 surface, 0 meaning, ½ tie) of words ``rows (n,)``; each fold's α."""

    rows: np.ndarray
    choices: np.ndarray
    alphas: list[float]


def reachable(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (K,), basis (K, r))``: the training targets' mean and an orthonormal basis of their centred
    rows ``targets (n, K)``, the affine space every ridge prediction lies in."""
    mean = targets.mean(axis=0)
    _, s, vt = np.linalg.svd(targets - mean, full_matrices=False)
    return mean, vt[s > s[0] * RANK_TOL].T


def _coordinates(forms: np.ndarray, space: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(n, r)`` coordinates of ``forms (n, K)`` in the reachable ``space`` (mean, basis)."""
    mean, basis = space
    return (forms - mean) @ basis


def surface_choice(
    predicted: np.ndarray, surface: np.ndarray, meaning: np.ndarray, space: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``(n,)`` c_w of predicted forms and the two candidates, all ``(n, K)``, compared within ``space``
    (:func:`reachable`): 1, 0 or ½ (see the module)."""
    pred, cand_s, cand_m = (_coordinates(f, space) for f in (predicted, surface, meaning))
    norm = np.linalg.norm(pred, axis=1)
    cos_s = np.einsum("nr,nr->n", pred, cand_s) / (norm * np.linalg.norm(cand_s, axis=1))
    cos_m = np.einsum("nr,nr->n", pred, cand_m) / (norm * np.linalg.norm(cand_m, axis=1))
    apart = np.linalg.norm(cand_s - cand_m, axis=1) > RANK_TOL * np.linalg.norm(surface - meaning, axis=1)
    return np.where(apart & (cos_s > cos_m), 1.0, np.where(apart & (cos_s < cos_m), 0.0, 0.5))


def forced_choice(
    x: np.ndarray,
    surface: np.ndarray,
    meaning: np.ndarray,
    identical: np.ndarray,
    substituted: np.ndarray,
    groups: np.ndarray,
    folds: list[Split],
) -> ForcedChoice:
    """The forced choice of every substituted word, held out in ``folds``.

    ``x (W, D)`` word representations, ``surface`` and ``meaning (W, K)`` the forms of each word's surface
    and meaning word, ``identical`` and ``substituted (W,)`` boolean masks, ``groups (W,)`` the CV groups.
    """
    rows, choices, alphas = [], [], []
    for train, test in folds:
        fit, scored = train[identical[train]], test[substituted[test]]
        if not len(scored):
            continue
        if len(fit) < MIN_FIT_WORDS:
            raise CKAProbeError(
                f"a training fold holds {len(fit)} identical word(s); the forced-choice map needs at least "
                f"{MIN_FIT_WORDS}: too few identical words"
            )
        search = nested_fit(
            Ridge(), {"alpha": ALPHAS}, x[fit], surface[fit], groups[fit], "neg_mean_squared_error"
        )
        rows.append(scored)
        space = reachable(surface[fit])
        choices.append(surface_choice(search.predict(x[scored]), surface[scored], meaning[scored], space))
        alphas.append(chosen(search, "alpha"))
    order = np.argsort(np.concatenate(rows))
    return ForcedChoice(np.concatenate(rows)[order], np.concatenate(choices)[order], alphas)
