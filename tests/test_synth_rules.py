"""Learner-error rules: the documented edits, paired spelling/phoneme rewrites, Hangul arithmetic, bins."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from cka_probe.data import espeak, rules_en, rules_ko, sentences, synth
from cka_probe.data.sentences import EnWord, KoWord
from cka_probe.text.cer import ED_BINS, char_errors, ed_bin

DOCS = Path(__file__).resolve().parents[1] / "docs" / "corpus.md"


@pytest.fixture(scope="module")
def english_lexicon() -> dict[str, list[str]]:
    return espeak.phonemize(sentences.english_words(), "en-us")


# ---------------------------------------------------------------- English


@pytest.mark.parametrize("rule", rules_en.PHONEME_RULES, ids=lambda r: r.name)
def test_english_rule_makes_its_documented_edit(rule: rules_en.PhonemeRule) -> None:
    before, after = re.match(r"(\w+) → (\w+)", rule.example).groups()
    phonemes = espeak.phonemize([before], "en-us")[before]
    assert rules_en.apply_phoneme_rules(before, phonemes, frozenset({rule.name}))[0] == after


@pytest.mark.parametrize(
    ("word", "phonemes", "rule", "spelled", "spoken"),
    [
        ("three", ["T", "r", "'i:"], "th_s", "sree", ["s", "r", "'i:"]),
        ("brother", ["b", "r", "'V", "D", "3"], "th_d", "broder", ["b", "r", "'V", "d", "3"]),
        ("brother", ["b", "r", "'V", "D", "3"], "r_l", "blother", ["b", "l", "'V", "D", "3"]),
        (
            "visit",
            ["v", "'I", "z", "I", "t"],
            "ih_ee",
            "veeseet",
            ["v", "'i:", "z", "i:", "t"],
        ),  # stress kept
        ("went", ["w", "'E", "n", "t"], "final_td_drop", "wen", ["w", "'E", "n"]),
        ("book", ["b", "'U", "k"], "epenthesis", "booku", ["b", "'U", "k", "U"]),
        ("have", ["h", "a", "v"], "ae_e", "heve", ["h", "E", "v"]),
    ],
)
def test_english_rule_rewrites_spelling_and_phonemes_together(word, phonemes, rule, spelled, spoken) -> None:
    assert rules_en.apply_phoneme_rules(word, phonemes, frozenset({rule})) == (spelled, spoken)


@pytest.mark.parametrize(
    ("word", "phonemes", "rule"),
    [
        ("mother", ["m", "'V", "D", "3"], "th_s"),  # spelled th but spoken ð: no θ→s
        ("drive", ["d", "r", "'aI", "v"], "ih_ee"),  # spelled i but spoken aɪ
        ("cake", ["k", "'eI", "k"], "epenthesis"),  # final stop spoken, but spelling ends in e
        ("carry", ["k", "'a", "r", "i"], "final_td_drop"),
    ],
)
def test_english_rule_skips_words_where_spelling_and_sound_disagree(word, phonemes, rule) -> None:
    assert rules_en.apply_phoneme_rules(word, phonemes, frozenset({rule})) == (word, phonemes)


EN_WORDS = [
    EnWord("the", "DET"),
    EnWord("dogs", "NPL", "dog"),
    EnWord("were", "COP"),
    EnWord("happy"),
    EnWord("and"),
    EnWord("he"),
    EnWord("goes"),
    EnWord("went", "VPAST", "go"),
    EnWord("likes", "V3SG", "like"),
]
EN_GRAMMAR_CASES = {
    "article_drop": "dogs were happy and he goes went likes",
    "copula_drop": "the dogs happy and he goes went likes",
    "plural_drop": "the dog were happy and he goes went likes",
    "past_drop": "the dogs were happy and he goes go likes",
    "third_person_drop": "the dogs were happy and he goes went like",
}
KO_WORDS = [
    KoWord("철수", "가", "subject"),
    KoWord("책", "을", "object"),
    KoWord("공원", "에서", "locative"),
    KoWord("읽었어요", base="읽어요"),
]
KO_WORD_CASES = {
    "topic_subject": "철수는 책을 공원에서 읽었어요",
    "object_drop": "철수가 책 공원에서 읽었어요",
    "locative_goal": "철수가 책을 공원에 읽었어요",
    "particle_form": "철수이 책를 공원에서 읽었어요",
    "past_drop": "철수가 책을 공원에서 읽어요",
}


def test_word_rule_cases_cover_every_word_rule() -> None:
    assert set(EN_GRAMMAR_CASES) == set(rules_en.GRAMMAR_RULES)
    assert set(KO_WORD_CASES) == set(rules_ko.WORD_RULES)


@pytest.mark.parametrize(("rule", "expected"), EN_GRAMMAR_CASES.items())
def test_english_grammar_rule(rule: str, expected: str) -> None:
    assert " ".join(rules_en.apply_grammar(EN_WORDS, frozenset({rule}))) == expected


def test_english_rules_are_systematic_within_an_utterance(english_lexicon) -> None:
    words = [
        EnWord("the", "DET"),
        EnWord("three"),
        EnWord("birds"),
        EnWord("saw"),
        EnWord("the", "DET"),
        EnWord("three"),
        EnWord("frogs"),
    ]
    text, speech = rules_en.surface(words, frozenset({"th_s", "th_d"}), english_lexicon)
    assert text.split()[0] == text.split()[4] == "de" and text.split()[1] == text.split()[5] == "sree"
    assert speech.startswith("[[") and "T" not in speech and "D" not in speech


# ---------------------------------------------------------------- Korean


def test_hangul_decomposition_agrees_with_unicode_nfd() -> None:
    for code in range(sentences.HANGUL_BASE, sentences.HANGUL_LAST + 1):
        char = chr(code)
        jamo = unicodedata.normalize("NFD", char)
        expected = (
            ord(jamo[0]) - 0x1100,
            ord(jamo[1]) - 0x1161,
            ord(jamo[2]) - 0x11A7 if len(jamo) == 3 else 0,
        )
        assert rules_ko.decompose(char) == expected
        assert rules_ko.compose(*expected) == char
        assert sentences.has_final_consonant(char) == (len(jamo) == 3)


@pytest.mark.parametrize("name", sorted(rules_ko.JAMO_RULES))
def test_korean_jamo_rule_makes_its_documented_edits(name: str) -> None:
    pairs = re.findall(r"(\S+) → (\S+)", rules_ko.JAMO_RULES[name][2].split(" (")[0])
    assert pairs
    for before, after in pairs:
        assert rules_ko.apply_jamo_rules(before.rstrip(","), frozenset({name})) == after.rstrip(",")


@pytest.mark.parametrize(
    ("word", "rules", "expected"),
    [
        ("학교", {"coda_drop"}, "하교"),
        ("먹어요", {"coda_drop"}, "먹어요"),  # ㄱ before a vowel-initial syllable stays
        ("닭이", {"coda_simplify"}, "닥이"),
        ("없어요", {"coda_simplify"}, "업어요"),
        ("닭", {"coda_simplify"}, "닭"),  # word-final: pronounced [닥] already
        ("싫어해요", {"coda_simplify"}, "싫어해요"),  # ㅀ before a vowel: ㅎ silent, nothing to hear
        ("읽습니다", {"coda_simplify", "coda_drop"}, "읽스니다"),  # double final before a consonant stays
        ("까치", {"tense_lax", "aspirated_lax"}, "가지"),
        ("쉬었어요", {"diphthong", "eo_o"}, "시옸오요"),  # ㅟ→ㅣ, then every ㅓ→ㅗ
    ],
)
def test_korean_jamo_rules_by_hand(word: str, rules: set[str], expected: str) -> None:
    assert rules_ko.apply_jamo_rules(word, frozenset(rules)) == expected


def test_korean_particle_allomorphs() -> None:
    assert [sentences.particle("object", s) for s in ("사과", "책")] == ["를", "을"]
    assert [sentences.particle("comitative", s) for s in ("친구", "동생")] == ["와", "과"]
    assert sentences.particle("object", "사과", wrong_form=True) == "을"


@pytest.mark.parametrize(("rule", "expected"), KO_WORD_CASES.items())
def test_korean_word_rule(rule: str, expected: str) -> None:
    assert rules_ko.surface(KO_WORDS, frozenset({rule}))[0] == expected


# ---------------------------------------------------------------- corpus text


@lru_cache(maxsize=2)
def _drawn(lang: str) -> tuple[synth.Language, list[dict]]:
    """400 utterances' text (no audio) as the corpus draws them."""
    spec = synth.language(lang)
    seen: set[str] = set()
    return spec, [synth.draw_utterance(np.random.default_rng([3, i]), spec, seen) for i in range(400)]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_edit_distance_bin_is_populated_near_its_target_share(lang: str) -> None:
    _, utts = _drawn(lang)
    counts = Counter(ed_bin(char_errors(u["meaning"], u["surface"])) for u in utts)
    for b, weight in zip(ED_BINS, synth.BIN_WEIGHTS):
        assert abs(counts[b] / len(utts) - weight) < 0.08, (b, counts)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_sentences_are_unique_short_and_effective_rules_explain_the_edits(lang: str) -> None:
    spec, utts = _drawn(lang)
    assert len({u["meaning"] for u in utts}) == len(utts)
    assert all(3 <= len(u["meaning"].split()) <= 10 for u in utts)
    for u in utts:
        assert (u["surface"] == u["meaning"]) == (not u["rules"])
        assert set(u["rules"]) <= set(spec.rules)


def test_korean_text_is_pure_hangul() -> None:
    _, utts = _drawn("ko")
    for u in utts:
        for text in (u["meaning"], u["surface"], u["speech"]):
            assert all(c == " " or sentences.HANGUL_BASE <= ord(c) <= sentences.HANGUL_LAST for c in text), (
                text
            )


def test_every_rule_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in (*rules_en.RULES, *rules_ko.RULES):
        assert f"`{name}`" in text, name
