"""Transcripts as text: character error rate, surface–meaning edit-distance bins,
normalisation, and the word-level Levenshtein alignment of two transcripts.

The lowest layer of the package: ``data``, ``asr``, ``extract`` and ``study``
read it, it imports nothing of theirs.
"""

from cka_probe.text.cer import cer, char_errors, corpus_cer, ed_bin, jamo, normalize_text
from cka_probe.text.word_alignment import align_words

__all__ = ["align_words", "cer", "char_errors", "corpus_cer", "ed_bin", "jamo", "normalize_text"]
