"""Word spans in seconds, from any aligner, as word-span records of the manifest's utterances.

An aligner's words (:class:`TimedWord`: the word, ``[start_s, end_s)`` and
where it was read, FILE:LINE) come grouped by a key: a manifest ``id`` (times
relative to that utterance's audio, its ``start`` when it is a segment) or the
name of an audio file without its suffix, as Montreal Forced Aligner names its
TextGrids and a file-level CTM names its recordings (times relative to the
file; each manifest row of that file takes the words inside its
``start``/``end``, shifted to its own start, and a word across a segment
boundary is an error). The id wins when a key is both.

Each utterance becomes a record as the CTC sidecar writes them
(:mod:`cka_probe.extract.word_spans`), the words in time order with
``start_s``/``end_s`` instead of frames, and paired with the row's meaning
transcript by the word-level Levenshtein alignment
(:mod:`cka_probe.text.word_alignment`: ``op``, ``meaning_index``; both null
when the row has no ``meaning``). Times must satisfy
``0 <= start_s < end_s <= duration + TOLERANCE_S`` with no two words
overlapping; a violation is one line naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import normalize_text
from cka_probe.text.word_alignment import align_word_lists

TOLERANCE_S = 0.005
"""How far a word may end past its utterance's audio (aligners round times, e.g. to milliseconds)."""


@dataclass(frozen=True)
class TimedWord:
    """A word of an aligner's output: ``[start_s, end_s)`` in seconds, read at ``where`` (FILE:LINE)."""

    word: str
    start_s: float
    end_s: float
    where: str


def paired(words: Sequence[str], row: dict[str, Any]) -> list[dict[str, Any]]:
    """Per surface word (normalised): ``op`` and ``meaning_index`` against ``row["meaning"]``, and
    ``corpus_changed`` when the row records ``changed_words`` (:mod:`cka_probe.extract.word_spans`)."""
    if "meaning" not in row:
        return [{"op": None, "meaning_index": None} for _ in words]
    meaning = normalize_text(row["meaning"]).split()
    pairs = {p.surface: p for p in align_word_lists(list(words), meaning) if p.surface is not None}
    out = [{"op": pairs[i].op, "meaning_index": pairs[i].meaning} for i in range(len(words))]
    if "changed_words" in row:
        changed = set(row["changed_words"])
        for word in out:
            word["corpus_changed"] = word["meaning_index"] is None or word["meaning_index"] in changed
    return out


def checked(words: list[TimedWord], duration_s: float, uid: str) -> list[TimedWord]:
    """``words`` in time order, each inside ``[0, duration_s]`` and none overlapping, else an error at the
    word's FILE:LINE."""
    words = sorted(words, key=lambda w: w.start_s)
    for k, w in enumerate(words):
        if not 0 <= w.start_s < w.end_s:
            raise CKAProbeError(f"{w.where}: word {w.word!r} has times [{w.start_s:g}, {w.end_s:g}) s")
        if w.end_s > duration_s + TOLERANCE_S:
            raise CKAProbeError(
                f"{w.where}: word {w.word!r} ends at {w.end_s:g} s, "
                f"after utterance {uid} ({duration_s:.3f} s)"
            )
        if k and w.start_s < words[k - 1].end_s:
            raise CKAProbeError(
                f"{w.where}: word {w.word!r} [{w.start_s:g}, {w.end_s:g}) s overlaps {words[k - 1].word!r} "
                f"of {words[k - 1].where}"
            )
    return words


def record(row: dict[str, Any], words: list[TimedWord], duration_s: float) -> dict[str, Any]:
    """The word-span record of manifest ``row`` (its audio ``duration_s`` seconds) from its ``words`` (times
    relative to the utterance)."""
    words = checked(words, duration_s, row["id"])
    texts = [normalize_text(w.word) for w in words]
    return {
        "id": row["id"],
        "duration_s": duration_s,
        "words": [
            {"index": k, "word": text, "start_s": w.start_s, "end_s": w.end_s, **pair}
            for k, (w, text, pair) in enumerate(zip(words, texts, paired(texts, row)))
        ],
    }


def in_segment(words: list[TimedWord], row: dict[str, Any]) -> list[TimedWord]:
    """The words of a file-level alignment inside ``row``'s ``start``/``end``, shifted to its start."""
    start, end = row.get("start") or 0.0, row.get("end")
    inside = []
    for w in words:
        if w.end_s <= start or (end is not None and w.start_s >= end):
            continue
        if w.start_s < start or (end is not None and w.end_s > end + TOLERANCE_S):
            raise CKAProbeError(
                f"{w.where}: word {w.word!r} [{w.start_s:g}, {w.end_s:g}) s crosses a boundary of utterance "
                f"{row['id']} [{start:g}, {end if end is None else format(end, 'g')}) s"
            )
        inside.append(TimedWord(w.word, w.start_s - start, w.end_s - start, w.where))
    return inside


def duration(row: dict[str, Any]) -> float:
    """Seconds of ``row``'s audio (its segment), from the file's header."""
    from cka_probe.data.audio import audio_length

    rate = 16000
    return audio_length(row["audio"], rate, row.get("start"), row.get("end")) / rate


def records(groups: dict[str, list[TimedWord]], rows: Sequence[dict[str, Any]], origin: dict[str, str]):
    """``{utterance id: record}`` of the rows that ``groups`` (key -> words) align, keys matched by id, else
    by audio file name (module docstring); ``origin`` names where each key was read, for a key that
    matches neither."""
    by_id = {row["id"]: row for row in rows}
    by_file: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_file.setdefault(Path(row["audio"]).stem, []).append(row)
    out = {}
    for key, words in groups.items():
        if key in by_id:
            out[key] = record(by_id[key], words, duration(by_id[key]))
        elif key in by_file:
            for row in by_file[key]:
                out[row["id"]] = record(row, in_segment(words, row), duration(row))
        else:
            raise CKAProbeError(
                f"{origin[key]}: {key!r} is neither an utterance id nor an audio file of the manifest"
            )
    return out
