"""Word representations with a planted surface preference, for the tests and the coverage figures.

A vocabulary of random letter strings (the meaning words) and one
mispronounced surface variant per type (one letter changed, or another type
of the vocabulary with ``in_vocabulary``); sentences of ``n_words`` meaning
words, each said ``repeats`` times (the same sentence in several utterances,
as read speech repeats its prompts); each word of each utterance diverges
(its surface variant is said) with probability ``diverge``. A word's
representation is a noisy linear function of one form:

    h_w = f(z_w ? surface_w : meaning_w) A + σ ε_w,   z_w ~ Bernoulli(preference),   ε_w ~ N(0, I)

with A ``(K, D)`` Gaussian, so the planted surface preference is
``preference``, and a random representation (``preference=None``) is N(0, I).
"""

from __future__ import annotations

import numpy as np

from cka_probe.probe.forms import WordForms
from cka_probe.probe.word_table import WordTable

LETTERS = "abcdefgh"


def _vocabulary(rng: np.random.Generator, n: int) -> list[str]:
    found: set[str] = set()
    while len(found) < n:
        found.add("".join(rng.choice(list(LETTERS), int(rng.integers(3, 7)))))
    return sorted(found)


def _variant(rng: np.random.Generator, word: str, types: list[str], in_vocabulary: bool) -> str:
    """A surface variant of ``word``: one letter changed (not a type), or the nearest other type."""
    if in_vocabulary:
        others = [t for t in types if t != word]
        return others[
            int(np.argmin([sum(a != b for a, b in zip(t, word)) - len(set(t) & set(word)) for t in others]))
        ]
    while True:
        k = int(rng.integers(len(word)))
        changed = word[:k] + str(rng.choice([c for c in LETTERS if c != word[k]])) + word[k + 1 :]
        if changed not in types:
            return changed


def planted_words(
    seed: int,
    preference: float | None,
    *,
    n_types: int = 40,
    n_sentences: int = 30,
    repeats: int = 2,
    n_words: int = 6,
    diverge: float = 0.3,
    dim: int = 128,
    noise: float = 0.1,
    in_vocabulary: bool = False,
) -> tuple[WordTable, np.ndarray]:
    """``(words, x (W, D))``: a word table (no spans) and representations with the planted ``preference``."""
    rng = np.random.default_rng(seed)
    types = _vocabulary(rng, n_types)
    said = {t: _variant(rng, t, types, in_vocabulary) for t in types}
    sentences = [rng.choice(types, n_words) for _ in range(n_sentences)]
    rows = []
    for u in range(n_sentences * repeats):
        for k, meant in enumerate(sentences[u % n_sentences]):
            diverges = rng.random() < diverge
            rows.append((f"u{u}", k, said[meant] if diverges else meant, meant, u % n_sentences, diverges))
    utterance, index, surface, meaning, sentence, diverges = (np.array(c, dtype=object) for c in zip(*rows))
    table = WordTable(
        spans=[],
        utterance=utterance,
        index=index.astype(np.int64),
        surface=surface,
        meaning=meaning,
        op=np.where(diverges.astype(bool), "substituted", "identical").astype(object),
        sentence=np.array([f"s{s}" for s in sentence], dtype=object),
    )
    if preference is None:
        return table, rng.standard_normal((len(rows), dim))
    forms = WordForms([*surface, *meaning])
    encoded = np.where(
        (rng.random(len(rows)) < preference)[:, None], forms.forms(surface), forms.forms(meaning)
    )
    mixing = rng.standard_normal((forms.width, dim)) / np.sqrt(forms.width)
    return table, encoded @ mixing + noise * rng.standard_normal((len(rows), dim))
