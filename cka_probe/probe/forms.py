"""The description of a word's form: a standardised bag of character n-grams.

Each word type v of a vocabulary is the count vector c(v) of its character
1- to 3-grams with word boundaries (scikit-learn's ``CountVectorizer`` with
``analyzer="char_wb"``: " th", "the", "he ", ...), standardised per n-gram over
the vocabulary's types, each type counted once:

    f(v) = (c(v) − mean_types c) / sd_types c      (an n-gram constant over the types gets sd 1)

so that frequent words do not set the scale and every n-gram weighs alike.
The form space does not depend on any representation, so fitting it on
every type (surface and meaning words of every fold) leaks nothing a probe
is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import StandardScaler

from cka_probe.errors import CKAProbeError

NGRAMS = (1, 3)
"""Character n-gram lengths of a form."""


class WordForms:
    """Forms ``f(v)`` of a vocabulary's types; ``forms(words)`` gives ``(W, K)`` float64 rows."""

    def __init__(self, vocabulary: Sequence[str]):
        types = sorted(set(vocabulary))
        if len(types) < 2:
            raise CKAProbeError(f"word forms need at least 2 word types, got {len(types)}")
        self.vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=NGRAMS, lowercase=False)
        counts = self.vectorizer.fit_transform(types).toarray().astype(np.float64)
        self.scaler = StandardScaler().fit(counts)
        self.index = {v: i for i, v in enumerate(types)}
        self.table = self.scaler.transform(counts)  # (V, K)

    @property
    def width(self) -> int:
        """K, the number of n-grams."""
        return self.table.shape[1]

    def forms(self, words: Sequence[str]) -> np.ndarray:
        """``(W, K)`` forms of ``words``, each a type of the vocabulary."""
        missing = [w for w in words if w not in self.index]
        if missing:
            raise CKAProbeError(f"word {missing[0]!r} is not in the vocabulary of the word forms")
        return self.table[[self.index[w] for w in words]]
