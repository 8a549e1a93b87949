"""Word-to-word correspondence between the surface and the meaning transcript of an utterance.

A word-level Levenshtein alignment (Levenshtein 1966) whose substitution cost
is the normalised character distance of the two words,

    c(a, b) = d_char(a, b) / max(|a|, |b|)  ∈ [0, 1],     c(a, a) = 0,     insertion = deletion = 1,

so that among alignments with the same number of word edits the one pairing
similar words wins ("the three cats" / "sree cat": *three*–*sree* and
*cats*–*cat* are paired and *the* is dropped, rather than *the*–*sree*).
Ties are broken toward pairing (diagonal), then toward a meaning word missing
from the surface. Each pair is ``identical``, ``substituted``, ``deleted`` (a
meaning word with no surface word) or ``inserted`` (a surface word with no
meaning word); a surface word is *divergent* unless it is ``identical``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


@dataclass(frozen=True)
class WordPair:
    """Aligned words: indices in the surface / meaning word lists (``None`` when absent) and the operation."""

    surface: int | None
    meaning: int | None
    op: str  # identical | substituted | deleted | inserted


def substitution_cost(a: str, b: str) -> float:
    """``d_char(a, b) / max(|a|, |b|)``: 0 for equal words, at most 1."""
    return Levenshtein.normalized_distance(a, b)


def align_word_lists(surface: list[str], meaning: list[str]) -> list[WordPair]:
    """The minimum-cost alignment of two word lists, in order (module docstring)."""
    n, m = len(surface), len(meaning)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = float(i)
    for j in range(1, m + 1):
        cost[0][j] = float(j)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(
                cost[i - 1][j - 1] + substitution_cost(surface[i - 1], meaning[j - 1]),
                cost[i][j - 1] + 1,
                cost[i - 1][j] + 1,
            )
    return _backtrace(cost, surface, meaning)


def _backtrace(cost: list[list[float]], surface: list[str], meaning: list[str]) -> list[WordPair]:
    pairs, i, j = [], len(surface), len(meaning)
    while i or j:
        if (
            i
            and j
            and _close(cost[i][j], cost[i - 1][j - 1] + substitution_cost(surface[i - 1], meaning[j - 1]))
        ):
            op = "identical" if surface[i - 1] == meaning[j - 1] else "substituted"
            pairs.append(WordPair(i - 1, j - 1, op))
            i, j = i - 1, j - 1
        elif j and _close(cost[i][j], cost[i][j - 1] + 1):
            pairs.append(WordPair(None, j - 1, "deleted"))
            j -= 1
        else:
            pairs.append(WordPair(i - 1, None, "inserted"))
            i -= 1
    return pairs[::-1]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def align_words(surface: str, meaning: str) -> list[WordPair]:
    """:func:`align_word_lists` of two transcripts split at white space."""
    return align_word_lists(surface.split(), meaning.split())


def divergent_surface_words(surface: str, meaning: str) -> list[bool]:
    """Per surface word: True unless it is aligned to an identical meaning word."""
    pairs = align_words(surface, meaning)
    return [pair.op != "identical" for pair in pairs if pair.surface is not None]
