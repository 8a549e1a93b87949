"""The words of an activation store: each surface word's span, text, meaning word and sentence.

From the word-span sidecar (:mod:`cka_probe.extract.word_spans`: each surface
word's frames, ``op`` and ``meaning_index``) and the manifest (the meaning
transcript, whose ``meaning_index``-th word, after
:func:`~cka_probe.text.cer.normalize_text`, is the meaning word). A word's
sentence key is the manifest row's ``sentence`` field where the corpus records
one, else its meaning transcript (the sentence the speaker meant; the
synthetic corpus draws each once, a read-speech corpus repeats its prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cka_probe.compare.words import selected_spans
from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import normalize_text


@dataclass(frozen=True)
class WordTable:
    """W words in sidecar order: ``spans`` ``(utterance position, start, end)`` for
    :func:`~cka_probe.compare.word_pooling.pool_words`; ``(W,)`` arrays of text and labels."""

    spans: list[tuple[int, int, int]]
    utterance: np.ndarray
    index: np.ndarray
    surface: np.ndarray
    meaning: np.ndarray
    op: np.ndarray
    sentence: np.ndarray

    @property
    def paired(self) -> np.ndarray:
        """``(W,)`` whether each word has a meaning word (inserted words have none)."""
        return np.array([m is not None for m in self.meaning], dtype=bool)

    @property
    def keys(self) -> np.ndarray:
        """``(W,)`` ``"UTTERANCE#INDEX"``: a word's name, the same in every store of one manifest."""
        return np.char.add(np.char.add(self.utterance.astype(str), "#"), self.index.astype(str))


def sentence_key(row: dict[str, Any]) -> str:
    """The manifest row's ``sentence`` if it has one, else its normalised meaning transcript."""
    return str(row["sentence"]) if row.get("sentence") is not None else normalize_text(row["meaning"])


def _meaning_word(row: dict[str, Any], word: dict[str, Any]) -> str | None:
    """The meaning word a sidecar word is paired with, None for an inserted word."""
    index = word["meaning_index"]
    if index is None:
        return None
    words = normalize_text(row["meaning"]).split()
    if not (type(index) is int and 0 <= index < len(words)):
        raise CKAProbeError(
            f"utterance {row['id']}: word {word['word']!r} pairs with meaning word {index!r}, but the "
            f"manifest's meaning transcript has {len(words)} words: the word spans do not fit the manifest"
        )
    if word["op"] == "identical" and words[index] != word["word"]:
        raise CKAProbeError(
            f"utterance {row['id']}: identical word {word['word']!r} pairs with meaning word "
            f"{words[index]!r}: the word spans do not fit the manifest"
        )
    return words[index]


def word_table(
    records: dict[str, dict[str, Any]], ids: list[str], rows: dict[str, dict[str, Any]]
) -> WordTable:
    """The words of utterances ``ids`` (store order) from sidecar ``records`` and manifest ``rows`` by id."""
    missing = [uid for uid in ids if uid not in rows]
    if missing:
        raise CKAProbeError(
            f"utterance {missing[0]} is not in the manifest ({len(missing)} of {len(ids)} missing)"
        )
    spans = selected_spans(records, ids, "all")
    words = [(uid, k, w) for uid in ids for k, w in enumerate(records[uid]["words"])]
    return WordTable(
        spans=spans,
        utterance=np.array([uid for uid, _, _ in words], dtype=object),
        index=np.array([w.get("index", k) for _, k, w in words], dtype=np.int64),
        surface=np.array([w["word"] for _, _, w in words], dtype=object),
        meaning=np.array([_meaning_word(rows[uid], w) for uid, _, w in words], dtype=object),
        op=np.array([w["op"] for _, _, w in words], dtype=object),
        sentence=np.array([sentence_key(rows[uid]) for uid, _, _ in words], dtype=object),
    )
