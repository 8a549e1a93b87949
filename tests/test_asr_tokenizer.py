"""Character tokenizers: round trips (English, Korean syllables, Korean jamo), id layout, serialisation."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_probe.asr.tokenizer import CharTokenizer, unit_for
from cka_probe.errors import CKAProbeError

HANGUL = st.integers(0xAC00, 0xD7A3).map(chr)  # the 11,172 precomposed syllables
korean_text = st.lists(st.one_of(HANGUL, st.just(" ")), min_size=1, max_size=30).map("".join)
english_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz '", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(english_text)
def test_english_round_trip(text):
    tok = CharTokenizer.build([text], language="en")
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(korean_text)
def test_korean_syllable_round_trip(text):
    tok = CharTokenizer.build([text], language="ko", unit="syllable")
    assert len(tok.encode(text)) == len(text)
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=60, deadline=None)
@given(korean_text)
def test_korean_jamo_round_trip_via_nfd_and_nfc(text):
    tok = CharTokenizer.build([text], language="ko", unit="jamo")
    ids = tok.encode(text)
    # Each syllable is 2 or 3 conjoining jamo (U+1100..U+11FF): (index // 28) and (index % 28 != 0).
    expected = sum(1 if c == " " else 2 + ((ord(c) - 0xAC00) % 28 != 0) for c in text)
    assert len(ids) == expected
    assert all(
        0x1100 <= ord(tok.symbols[i]) <= 0x11FF
        for i, c in zip(ids, unicodedata.normalize("NFD", text))
        if c != " "
    )
    assert tok.decode(ids) == text


def test_jamo_vocabulary_is_smaller_than_syllables():
    texts = ["학교에 갑니다", "한국어 공부", "밥을 먹었어요"]
    syllables = CharTokenizer.build(texts, language="ko", unit="syllable")
    jamo = CharTokenizer.build(texts, language="ko", unit="jamo")
    assert "학" in syllables.symbols and "학" not in jamo.symbols
    assert "\u1112" in jamo.symbols  # ㅎ as an initial conjoining jamo
    assert jamo.decode(jamo.encode("학교")) == "학교"


def test_id_layout_blank_unk_sos_eos():
    tok = CharTokenizer.build(["ba", "ab c"], language="en")
    assert tok.symbols == ["<blank>", "<unk>", " ", "a", "b", "c", "<sos/eos>"]
    assert (tok.blank, tok.unk, tok.sos_eos, tok.ignore_id, tok.vocab_size) == (0, 1, 6, -1, 7)
    assert tok.encode("abz") == [3, 4, 1]
    assert tok.decode([0, 3, 0, 4, 1, 6]) == "ab\ufffd"


def test_to_dict_from_dict_round_trip():
    tok = CharTokenizer.build(["학교", "갑니다"], language="ko", unit="jamo")
    again = CharTokenizer.from_dict(tok.to_dict())
    assert (again.symbols, again.language, again.unit) == (tok.symbols, "ko", "jamo")
    assert again.encode("학교") == tok.encode("학교")


def test_bad_units_and_symbol_tables_are_refused():
    with pytest.raises(CKAProbeError, match="phoneme"):
        CharTokenizer.build(["a"], language="en", unit="phoneme")
    with pytest.raises(CKAProbeError, match="symbols"):
        CharTokenizer.from_dict({"symbols": ["a", "<unk>", "<sos/eos>"], "language": "en", "unit": "char"})


def test_unit_for_language():
    assert unit_for("ko", "jamo") == "jamo" and unit_for("en", "jamo") == "char"
