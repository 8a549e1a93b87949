"""Character tokenizers, one per task.

English and other alphabetic text is split into characters (space included).
Korean is split into Hangul syllables (``unit="syllable"``) or into jamo
(``unit="jamo"``): the text's Unicode NFD decomposes each precomposed syllable
into its initial, medial and optional final conjoining jamo (Unicode 15, §3.12),
and decoding recomposes them with NFC. Id layout, as in WeNet:

- ``0``: ``<blank>`` (CTC blank),
- ``1``: ``<unk>`` (a character not seen when the vocabulary was built),
- ``2 .. V-2``: the characters, sorted by code point,
- ``V-1``: ``<sos/eos>`` (start and end of an attention-decoder sequence).

Padding of target tensors uses ``ignore_id = -1``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from cka_probe.errors import CKAProbeError

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
UNITS = ("char", "syllable", "jamo")
UNK_CHAR = "\N{REPLACEMENT CHARACTER}"


class CharTokenizer:
    """Maps text to ids and back for one language and unit."""

    ignore_id = -1
    blank = 0
    unk = 1

    def __init__(self, symbols: Sequence[str], *, language: str, unit: str) -> None:
        if unit not in UNITS:
            raise CKAProbeError(f"tokenizer unit '{unit}' is not one of {', '.join(UNITS)}")
        if list(symbols[:2]) != [BLANK, UNK] or symbols[-1] != SOS_EOS or len(set(symbols)) != len(symbols):
            raise CKAProbeError("tokenizer symbols must be <blank>, <unk>, distinct characters, <sos/eos>")
        self.symbols = list(symbols)
        self.language = language
        self.unit = unit
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, texts: Iterable[str], *, language: str, unit: str = "char") -> CharTokenizer:
        """Vocabulary of every character in ``texts`` (in the unit's normal form)."""
        probe = cls([BLANK, UNK, SOS_EOS], language=language, unit=unit)
        chars = sorted({c for text in texts for c in probe.normalize(text)})
        return cls([BLANK, UNK, *chars, SOS_EOS], language=language, unit=unit)

    @property
    def sos_eos(self) -> int:
        return len(self.symbols) - 1

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        """The character sequence that is tokenised: NFD for jamo, NFC otherwise."""
        return unicodedata.normalize("NFD" if self.unit == "jamo" else "NFC", text)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; unseen characters map to ``<unk>``."""
        return [self.index.get(c, self.unk) for c in self.normalize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, dropping blank and ``<sos/eos>``; ``<unk>`` becomes U+FFFD."""
        chars = [
            UNK_CHAR if i == self.unk else self.symbols[i] for i in ids if i not in (self.blank, self.sos_eos)
        ]
        return unicodedata.normalize("NFC", "".join(chars))

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "language": self.language, "unit": self.unit}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state["symbols"], language=state["language"], unit=state["unit"])


def unit_for(language: str, korean_unit: str) -> str:
    """The tokenizer unit of a language: ``korean_unit`` for ``ko``, else ``char``."""
    return korean_unit if language == "ko" else "char"
