"""CER and edit-distance bins against an independent dynamic programme."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import (
    ED_BINS,
    cer,
    char_errors,
    corpus_cer,
    ed_bin,
    jamo,
    jamo_errors,
    normalize_text,
)


def wagner_fischer(a: str, b: str) -> int:
    """Textbook O(len(a)·len(b)) Levenshtein distance (Wagner & Fischer 1974)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


TEXT = st.text(alphabet="ab c가각나", max_size=12)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_char_errors_match_wagner_fischer(ref, hyp):
    assert char_errors(ref, hyp) == wagner_fischer(normalize_text(ref), normalize_text(hyp))


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT)
def test_jamo_errors_match_wagner_fischer_on_nfd(ref, hyp):
    expected = wagner_fischer(*(unicodedata.normalize("NFD", normalize_text(t)) for t in (ref, hyp)))
    assert jamo_errors(ref, hyp) == expected


def test_cer_is_percent_of_reference_length():
    assert cer("the cat", "the bat") == pytest.approx(100 / 7)
    assert cer("abc", "") == 100.0
    assert cer("ab", "abab") == 100.0  # insertions can exceed the reference
    assert cer("", "") == 0.0
    assert cer("", "x") == 100.0


def test_white_space_is_folded_and_counts_as_one_character():
    assert char_errors("a  b ", " a b") == 0
    assert char_errors("ab", "a b") == 1


def test_corpus_cer_sums_errors_before_dividing():
    pairs = [("abcd", "abcd"), ("ab", "xy")]  # 0/4 and 2/2: mean of rates 50, corpus 2/6
    assert corpus_cer(pairs) == pytest.approx(100 * 2 / 6)


def test_korean_final_consonant_costs_one_syllable_and_one_jamo():
    # 닭 (ㄷ ㅏ ㄺ) read as 닥 (ㄷ ㅏ ㄱ): one syllable wrong, one jamo of three wrong.
    assert char_errors("닭", "닥") == 1
    assert jamo_errors("닭", "닥") == 1
    assert len(jamo("닭")) == 3
    # 강 vs 가: a dropped final is one deletion in jamo too.
    assert jamo_errors("강", "가") == 1


def test_jamo_accepts_decomposed_input():
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert char_errors("한국어", decomposed) == 0
    assert jamo(decomposed) == jamo("한국어")


@pytest.mark.parametrize(
    "distance, expected",
    [(0, "0"), (1, "1-3"), (3, "1-3"), (4, "4-10"), (10, "4-10"), (11, ">10"), (250, ">10")],
)
def test_ed_bin_edges(distance, expected):
    assert ed_bin(distance) == expected
    assert expected in ED_BINS


def test_ed_bin_rejects_negative():
    with pytest.raises(CKAProbeError, match="-1"):
        ed_bin(-1)
