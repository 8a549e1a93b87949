"""Character error rate (CER) and the surface–meaning edit-distance bins.

CER = (S + D + I) / N, the Levenshtein distance between the reference and the
hypothesis characters over the reference length (Levenshtein 1966; the usual
ASR definition). Texts are compared as written, after Unicode NFC and folding
runs of white space to one space, so a space is a character like any other.

For Korean, a second score counts jamo: both texts are decomposed with Unicode
NFD, which turns each precomposed Hangul syllable into its two or three
conjoining jamo, so a wrong final consonant costs one jamo rather than a whole
syllable.

The edit-distance bins of the paper (0, 1–3, 4–10, >10) group utterances by the
character Levenshtein distance between their surface and meaning transcripts.
Distances come from rapidfuzz (C++), not a hand-written dynamic programme.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from rapidfuzz.distance import Levenshtein

from cka_probe.errors import CKAProbeError

ED_BINS: tuple[str, ...] = ("0", "1-3", "4-10", ">10")


def normalize_text(text: str) -> str:
    """NFC-composed text with runs of white space folded to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def jamo(text: str) -> str:
    """Text with every Hangul syllable decomposed into conjoining jamo (NFD)."""
    return unicodedata.normalize("NFD", normalize_text(text))


def char_errors(ref: str, hyp: str) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp`` (characters)."""
    return Levenshtein.distance(normalize_text(ref), normalize_text(hyp))


def jamo_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance between the NFD (jamo) forms of ``ref`` and ``hyp``."""
    return Levenshtein.distance(jamo(ref), jamo(hyp))


def cer(ref: str, hyp: str) -> float:
    """Character error rate of one utterance, in percent (100 · errors / len(ref))."""
    return percent(char_errors(ref, hyp), len(normalize_text(ref)))


def percent(errors: int | float, ref_len: int | float) -> float:
    """100 · errors / ref_len; an empty reference scores 0 if nothing was hypothesised, else 100."""
    if ref_len == 0:
        return 0.0 if errors == 0 else 100.0
    return 100.0 * errors / ref_len


def corpus_cer(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus CER in percent: errors summed over utterances / reference characters summed."""
    errors = ref_len = 0
    for ref, hyp in pairs:
        errors += char_errors(ref, hyp)
        ref_len += len(normalize_text(ref))
    return percent(errors, ref_len)


def ed_bin(distance: int) -> str:
    """The paper's surface–meaning edit-distance bin: ``0``, ``1-3``, ``4-10`` or ``>10``."""
    if distance < 0:
        raise CKAProbeError(f"edit distance must be >= 0, got {distance}")
    if distance == 0:
        return "0"
    if distance <= 3:
        return "1-3"
    if distance <= 10:
        return "4-10"
    return ">10"
