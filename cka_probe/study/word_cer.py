"""The DO − SO CER gap on divergent vs identical words.

Each character error of an utterance (character Levenshtein alignment of the
hypothesis to the reference, :func:`word_errors`) is charged to one reference
word: a substitution or deletion to the word of its reference character, an
insertion to the word it falls in (after a space or at the start: the word
that follows), and the space after a word counts as that word's, so the
words' errors and lengths sum to the utterance's. A reference word is divergent when the word-level alignment
of the two transcripts (:mod:`cka_probe.text.word_alignment`) pairs it with
no identical word of the other transcript. Per word set, the CER is
Σ errors / Σ length over its words, and DO − SO gets the paired bootstrap over
utterances of :mod:`cka_probe.study.cer` (Student-t intervals per seed and pooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.inference.adjust import benjamini_hochberg
from cka_probe.inference.resampling import keyed_rng
from cka_probe.study.cer import SEED_GAP_COLUMNS, _gap, _gap_rows, paired_seeds, read_cer_csvs
from cka_probe.text.word_alignment import align_words

COLUMNS = ("language", "task", "words", *SEED_GAP_COLUMNS)


def word_owner(ref: str) -> np.ndarray:
    """(len(ref),) the index of the word each reference character belongs to (a space: the word before it)."""
    return np.cumsum([0] + [c == " " for c in ref[:-1]]) if ref else np.zeros(0, dtype=int)


def word_errors(ref: str, hyp: str) -> np.ndarray:
    """(W,) character errors charged to each word of ``ref`` (they sum to the Levenshtein distance)."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=int)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j] + 1, cost[i, j - 1] + 1, cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1])
            )
    owner, errors = word_owner(ref), np.zeros(len(ref.split(" ")) if ref else 0, dtype=int)
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            errors[owner[i - 1]] += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:  # deletion of ref[i - 1]
            errors[owner[i - 1]] += 1
            i -= 1
        else:  # insertion of hyp[j - 1] between ref[i - 1] and ref[i]
            if len(errors):
                errors[_inserted_into(owner, ref, i)] += 1
            j -= 1
    return errors


def _inserted_into(owner: np.ndarray, ref: str, i: int) -> int:
    """The word of an insertion before ``ref[i]``: the word that follows a space (or the start), else the
    current one."""
    return int(owner[i] if i < len(ref) and (i == 0 or ref[i - 1] == " ") else owner[i - 1])


def divergent_words(ref: str, other: str, task: str) -> np.ndarray:
    """(W,) whether each word of ``ref`` (the ``task`` transcript) has no identical word in ``other``."""
    surface, meaning = (ref, other) if task == "surface" else (other, ref)
    side = "surface" if task == "surface" else "meaning"
    return np.array(
        [p.op != "identical" for p in align_words(surface, meaning) if getattr(p, side) is not None]
    )


def _word_sets(both: pd.DataFrame, others: dict[str, str], task: str) -> dict[str, pd.DataFrame]:
    """Per word set, one row per utterance with its errors and length over that set's words."""
    sums = {words: [] for words in ("divergent", "identical")}
    for r in both.itertuples(index=False):
        divergent = divergent_words(r.ref_so, others.get(r.id, r.ref_so), task)
        length = np.bincount(word_owner(r.ref_so), minlength=len(divergent))
        e_so, e_do = word_errors(r.ref_so, r.hyp_so), word_errors(r.ref_so, r.hyp_do)
        for words, keep in (("divergent", divergent), ("identical", ~divergent)):
            sums[words].append(
                {
                    "errors_so": e_so[keep].sum(),
                    "errors_do": e_do[keep].sum(),
                    "ref_len_so": length[keep].sum(),
                    "surface_meaning_ed_so": 0,
                }
            )
    return {words: pd.DataFrame(rows) for words, rows in sums.items()}


def word_cer_gaps(
    cer_csvs: Sequence[str | Path], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """DO − SO CER per language, task and word set (columns :data:`COLUMNS`); a set with no characters is left
    out."""
    frame, rows = read_cer_csvs(cer_csvs), []
    for language, task in frame[["language", "task"]].drop_duplicates().itertuples(index=False):
        other = "meaning" if task == "surface" else "surface"
        do = frame[(frame.model == "DO") & (frame.language == language) & (frame.task == other)]
        others = dict(zip(do["id"], do["ref"]))
        by_seed = [_word_sets(both, others, task) for both in paired_seeds(frame, language, task)]
        for words in ("divergent", "identical"):
            groups = [sets[words] for sets in by_seed]
            if not all(g["ref_len_so"].sum() for g in groups):
                continue
            seeds = [_gap(g, "char", keyed_rng(seed, language, task, words), n_boot) for g in groups]
            rows += [
                {"language": language, "task": task, "words": words, **row} for row in _gap_rows(seeds, level)
            ]
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_adj"])
    table["p_adj"] = table.groupby(["seed"], sort=False)["p"].transform(benjamini_hochberg)
    return table[list(COLUMNS)]
