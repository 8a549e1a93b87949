"""Seeded resampling of groups (utterances): the draws behind every interval and test of the package.

Frames or words of one utterance share speaker, sentence and context, so they
are never resampled one by one: a bootstrap resample draws whole groups with
replacement (the cluster bootstrap; Davison & Hinkley 1997, §3.8) and
takes all their rows, a permutation reorders whole groups. A group draw is a
vector of group indices; :func:`grouped_rows` expands it to row indices,
:func:`bootstrap_counts` gives it as multiplicities.

Streams: a generator's group indices do not depend on how they are split
into calls (R calls of n give the numbers of one (R, n) call; the tests check
it), so every bootstrap draws with :func:`bootstrap_draws`. :func:`keyed_rng`
seeds a generator by a table row's key, so that row's draws do not depend on
which other rows exist.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from cka_probe.errors import CKAProbeError


def keyed_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """The generator seeded by ``[seed, *keys]``, each string key as its CRC-32 and each integer as it is."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys)])


def group_rows(groups: Sequence | None, n: int) -> list[np.ndarray]:
    """Row indices of each group, in order of first appearance; ``None`` makes every row a group.

    ``groups`` (n,) holds one label per row.
    """
    if groups is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise CKAProbeError(
            f"groups must hold one label per row: {labels.shape[0] if labels.ndim else 0} labels for {n} rows"
        )
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == g) for g in order]


def bootstrap_draws(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``(count, n)``: each row the indices of n groups drawn with replacement."""
    return rng.integers(0, n, (count, n))


def bootstrap_counts(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``(count, n)`` multiplicities of the n groups in each of :func:`bootstrap_draws`' resamples."""
    draws = bootstrap_draws(rng, n, count)
    return np.array([np.bincount(draw, minlength=n) for draw in draws], dtype=np.int64).reshape(count, n)


def permutations(rng: np.random.Generator, n: int, count: int) -> list[np.ndarray]:
    """``count`` permutations (n,) of ``range(n)``, one call each."""
    return [rng.permutation(n) for _ in range(count)]


def grouped_rows(groups: Sequence[np.ndarray], draw: np.ndarray) -> np.ndarray:
    """The rows of one group draw ``draw (G,)``: each drawn group's rows ``groups[g]``, in draw order."""
    return np.concatenate([groups[g] for g in draw])


def grouped_resamples(groups: Sequence[np.ndarray], draws: np.ndarray) -> list[np.ndarray]:
    """Row index vectors of group draws ``draws (R, G)``: each drawn group contributes all its rows.

    ``groups[g]`` (W_g,) are the rows of group g; the vectors' lengths vary with the draw.
    """
    return [grouped_rows(groups, draw) for draw in draws]


def leave_one_out(groups: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """The rows of all groups but g, for each group g in turn (the group jackknife)."""
    return (np.concatenate([*groups[:g], *groups[g + 1 :]]) for g in range(len(groups)))


def paired_rows(groups: Sequence[np.ndarray], order: np.ndarray, n: int) -> np.ndarray:
    """Rows (n,) of y to pair with x's rows when x's group g meets y's group ``order[g]``.

    Groups of other lengths are matched by relative position (row k of m takes
    row floor(k m' / m) of the m' rows), keeping each group's internal order.
    """
    rows_y = np.empty(n, dtype=np.int64)
    for target, source in zip(groups, (groups[g] for g in order)):
        rows_y[target] = source[np.arange(len(target)) * len(source) // len(target)]
    return rows_y
