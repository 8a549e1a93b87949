"""Cross-validation folds grouped by utterance and by sentence.

Words of one utterance share a speaker and a context, and a corpus may say
one sentence in several utterances (template sentences, several speakers
reading one prompt): a word of one sentence in a training fold and the same
word of the same sentence in a held-out fold would leak its answer. So a
word's group is the connected component of its utterance in the bipartite
graph utterance — sentence (an edge per utterance to its sentence key):
two utterances of one sentence, and every utterance sharing a sentence with
either, fall in one group; with every sentence said once the groups are the
utterances. Folds are scikit-learn's ``GroupKFold`` over these groups, so
no utterance and no sentence is ever in two folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupKFold

from cka_probe.errors import CKAProbeError

Split = tuple[np.ndarray, np.ndarray]
"""``(train rows, test rows)`` of one fold."""


def cv_groups(utterances: Sequence[str], sentences: Sequence[str]) -> np.ndarray:
    """``(W,)`` integer group of each word: the component of its utterance in the utterance–sentence graph.

    ``utterances (W,)`` and ``sentences (W,)`` name each word's utterance and sentence key.
    """
    if len(utterances) != len(sentences):
        raise CKAProbeError(f"{len(utterances)} utterance labels for {len(sentences)} sentence labels")
    utt, u = np.unique(np.asarray(utterances, dtype=str), return_inverse=True)
    sent, s = np.unique(np.asarray(sentences, dtype=str), return_inverse=True)
    edges = np.ones(len(u))
    graph = coo_matrix((edges, (u, len(utt) + s)), shape=(len(utt) + len(sent),) * 2)
    _, component = connected_components(graph, directed=False)
    return component[u]


def grouped_folds(groups: np.ndarray, n_splits: int, seed: int) -> list[Split]:
    """``GroupKFold`` splits (shuffled by ``seed``) of rows with ``groups (n,)``; each group in one fold."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise CKAProbeError(f"grouped cross-validation needs at least 2 groups, got {n_groups}")
    folds = GroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    return list(folds.split(np.zeros((len(groups), 1)), groups=groups))


def inner_splitter(groups: np.ndarray, n_splits: int) -> GroupKFold:
    """The inner ``GroupKFold`` that chooses a regulariser within a training fold with ``groups (n,)``."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise CKAProbeError(f"a training fold holds {n_groups} group(s); nested cross-validation needs 2")
    return GroupKFold(n_splits=min(n_splits, n_groups))
