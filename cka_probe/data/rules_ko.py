"""Korean learner-error rules: particle errors, then arithmetic on Hangul syllables.

A precomposed Hangul syllable is ``0xAC00 + (L·21 + V)·28 + T`` with initial
consonant L (0–18), vowel V (0–20) and final consonant T (0–27, 0 = none)
(The Unicode Standard, ch. 3.12, "Conjoining Jamo Behavior"). The rules rewrite
L, V or T and recompose the syllable; the audio is spoken by espeak-ng's
Korean voice from the rewritten Hangul, so it is faithful to the surface
transcript by construction.

Rules (errors typical of learners whose first language lacks Korean's
lax/tense/aspirated contrast, its vowel distinctions and its particles; the rate
varies per utterance):

- word errors: subject 이/가 ↔ topic 은/는, object particle 을/를 omitted,
  locative 에서 → 에, the wrong allomorph (사과를 → 사과을), past tense replaced
  by the present (먹었어요 → 먹어요);
- tense initials → lax (ㄲㄸㅃㅆㅉ → ㄱㄷㅂㅅㅈ), aspirated initials → lax
  (ㅊㅋㅌㅍ → ㅈㄱㄷㅂ), initial ㅎ dropped (할머니 → 알머니);
- vowel merges: ㅓ→ㅗ (ㅕ→ㅛ), ㅐ→ㅔ (ㅒ→ㅖ), ㅡ→ㅜ, diphthongs simplified
  (ㅘ→ㅏ, ㅝ→ㅓ, ㅚ/ㅙ/ㅞ→ㅔ, ㅟ/ㅢ→ㅣ);
- final consonants: a double final simplified to one before a vowel, where
  standard Korean pronounces both (닭이 → 닥이), a stop final ㄱ/ㄷ/ㅂ dropped
  before a consonant inside a word (학교 → 하교).

Each active rule applies wherever its environment occurs in the utterance.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from cka_probe.data.sentences import HANGUL_BASE, HANGUL_LAST, KoWord, particle

NO_INITIAL = 11  # ㅇ: a syllable that begins with a vowel sound


def decompose(char: str) -> tuple[int, int, int]:
    """(initial, vowel, final) jamo indices of a precomposed Hangul syllable."""
    code = ord(char) - HANGUL_BASE
    if not 0 <= code <= HANGUL_LAST - HANGUL_BASE:
        raise ValueError(f"not a Hangul syllable: {char!r}")
    return code // (21 * 28), code // 28 % 21, code % 28


def compose(initial: int, vowel: int, final: int) -> str:
    """The syllable ``0xAC00 + (initial·21 + vowel)·28 + final``."""
    return chr(HANGUL_BASE + (initial * 21 + vowel) * 28 + final)


# rule name -> (jamo slot, {old index: new index}, example)
JAMO_RULES: dict[str, tuple[str, dict[int, int], str]] = {
    "tense_lax": ("initial", {1: 0, 4: 3, 8: 7, 10: 9, 13: 12}, "딸기 → 달기 (ㄸ→ㄷ)"),
    "aspirated_lax": ("initial", {14: 12, 15: 0, 16: 3, 17: 7}, "커피 → 거비 (ㅋ→ㄱ, ㅍ→ㅂ)"),
    "h_drop": ("initial", {18: 11}, "할머니 → 알머니 (ㅎ dropped)"),
    "eo_o": ("vowel", {4: 8, 6: 12}, "어머니 → 오모니 (ㅓ→ㅗ)"),
    "ae_e": ("vowel", {1: 5, 3: 7}, "백화점 → 벡화점 (ㅐ→ㅔ)"),
    "eu_u": ("vowel", {18: 13}, "그리다 → 구리다 (ㅡ→ㅜ)"),
    "diphthong": (
        "vowel",
        {9: 0, 14: 4, 10: 5, 11: 5, 15: 5, 16: 20, 19: 20},
        "봐요 → 바요, 쉬어요 → 시어요",
    ),
}
STOP_FINALS = frozenset({1, 7, 17})  # ㄱ ㄷ ㅂ
# double final -> its first consonant; not ㄶ/ㅀ, whose ㅎ is silent before a vowel anyway
SIMPLE_FINALS = {3: 1, 5: 4, 9: 1, 10: 16, 11: 8, 12: 8, 13: 8, 14: 17, 18: 17}

WORD_RULES: dict[str, str] = {
    "topic_subject": "subject and topic particles swapped: 철수가 → 철수는",
    "object_drop": "object particle omitted: 사과를 먹어요 → 사과 먹어요",
    "locative_goal": "locative 에서 replaced by 에: 공원에서 놀아요 → 공원에 놀아요",
    "particle_form": "wrong allomorph: 사과를 → 사과을, 책을 → 책를",
    "past_drop": "past tense replaced by the present: 먹었어요 → 먹어요",
}

RULES: dict[str, str] = {
    **WORD_RULES,
    **{name: example for name, (_, _, example) in JAMO_RULES.items()},
    "coda_simplify": (
        "double final simplified before a vowel, where both are heard: 닭이 → 닥이, 없어요 → 업어요"
    ),
    "coda_drop": "stop final ㄱ/ㄷ/ㅂ dropped before a consonant in a word: 학교 → 하교",
}
EXCLUSIVE: tuple[frozenset[str], ...] = ()

_SWAP_ROLE = {"subject": "topic", "topic": "subject"}


def apply_word_rules(word: KoWord, active: frozenset[str]) -> KoWord:
    """``word`` with its verb tense and particle rewritten by the active word-level rules."""
    if "past_drop" in active and word.base:
        return replace(word, stem=word.base, base="")
    role = word.role
    if not role:
        return word
    if "object_drop" in active and role == "object":
        return replace(word, particle="", role="")
    if "topic_subject" in active and role in _SWAP_ROLE:
        role = _SWAP_ROLE[role]
    if "locative_goal" in active and role == "locative":
        role = "goal"
    wrong = "particle_form" in active and role in ("subject", "topic", "object", "comitative")
    return replace(word, particle=particle(role, word.stem, wrong_form=wrong), role=role)


@lru_cache(maxsize=4096)
def _jamo_tables(active: frozenset[str]) -> dict[str, list[int]]:
    """Old → new index tables for initials and vowels, the active rules composed in order."""
    tables = {"initial": list(range(19)), "vowel": list(range(21))}
    for name, (slot, mapping, _) in JAMO_RULES.items():
        if name in active:
            tables[slot] = [mapping.get(j, j) for j in tables[slot]]
    return tables


def apply_jamo_rules(word: str, active: frozenset[str]) -> str:
    """``word`` (pure Hangul) after the active syllable rules."""
    tables = _jamo_tables(active)
    syllables = [decompose(c) for c in word]
    out = []
    for i, (initial, vowel, final) in enumerate(syllables):
        following = syllables[i + 1][0] if i + 1 < len(syllables) else None
        out.append(
            compose(tables["initial"][initial], tables["vowel"][vowel], _final(final, following, active))
        )
    return "".join(out)


def _final(final: int, following: int | None, active: frozenset[str]) -> int:
    """The final consonant after the context rules; ``following`` is the next syllable's initial, if any."""
    if "coda_simplify" in active and following == NO_INITIAL:
        final = SIMPLE_FINALS.get(final, final)
    if "coda_drop" in active and following not in (None, NO_INITIAL) and final in STOP_FINALS:
        final = 0
    return final


def word_forms(words: list[KoWord], active: frozenset[str]) -> list[str]:
    """Per meaning word, its surface form under ``active`` rules (Korean rules rewrite words in place)."""
    return [apply_jamo_rules(apply_word_rules(w, active).text, active) for w in words]


def surface(words: list[KoWord], active: frozenset[str]) -> tuple[str, str]:
    """The surface transcript and the text espeak-ng speaks (the same Hangul) under ``active`` rules."""
    text = " ".join(word_forms(words, active))
    return text, text


def changed_words(words: list[KoWord], active: frozenset[str]) -> list[int]:
    """Indices of the meaning words that ``active`` rules rewrite."""
    return [i for i, (w, form) in enumerate(zip(words, word_forms(words, active))) if form != w.text]
