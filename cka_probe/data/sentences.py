"""Template grammars for the intended (meaning) sentences of the synthetic corpus.

Each language has a small vocabulary (``lexicon_en.json``, ``lexicon_ko.json``:
about 200 English word forms, about 200 Korean stems and verb forms) and a
handful of sentence templates, so that a small decoder can learn the language
from a few hundred utterances:

- English: subject–verb–object, copula + adjective, motion to a place,
  ``there is/are``, counted objects; present (with third-person ``-s``) or past
  tense with a time phrase; 3–9 words, lower case, no punctuation.
- Korean: subject–object–verb with particles (이/가, 은/는, 을/를, 에, 에서, 에게)
  and polite (-아요/-어요), past polite (-았어요/-었어요) or formal
  (-ㅂ니다/-습니다) verb endings; pure Hangul, no Latin letters or digits (which
  would switch espeak-ng's Korean voice to English).

Words carry the tags that the learner-error rules act on (``rules_en``,
``rules_ko``). All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib import resources
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

HANGUL_BASE, HANGUL_LAST = 0xAC00, 0xD7A3

# particle role -> (form after a final consonant, form after a vowel)
PARTICLES: dict[str, tuple[str, str]] = {
    "subject": ("이", "가"),
    "topic": ("은", "는"),
    "object": ("을", "를"),
    "goal": ("에", "에"),
    "locative": ("에서", "에서"),
    "dative": ("에게", "에게"),
    "comitative": ("과", "와"),
}


@dataclass(frozen=True)
class EnWord:
    """An English word; ``tag`` is DET, COP, V3SG, VPAST, NPL or W; ``base`` the uninflected form."""

    text: str
    tag: str = "W"
    base: str = ""


@dataclass(frozen=True)
class KoWord:
    """A Korean word: ``stem`` plus a ``particle`` playing ``role`` (see :data:`PARTICLES`).

    A past-tense verb has ``base``, its present polite form (먹었어요 → 먹어요).
    """

    stem: str
    particle: str = ""
    role: str = ""
    base: str = ""

    @property
    def text(self) -> str:
        return self.stem + self.particle


@lru_cache(maxsize=2)
def lexicon(lang: str) -> dict[str, Any]:
    """The packaged vocabulary ``lexicon_<lang>.json``."""
    text = resources.files("cka_probe.data").joinpath(f"lexicon_{lang}.json").read_text(encoding="utf-8")
    return json.loads(text)


def english_words() -> list[str]:
    """Every word form the English grammar can produce, for one phonemisation pass."""
    lex = lexicon("en")
    words = {"the", "a", "an", "to", "in", "there", "is", "are", "was", "were"}
    for group in ("people", "animals", "things"):
        words |= set(lex[group]) | set(lex[group].values())
    for group in ("transitive", "motion"):
        for base, forms in lex[group].items():
            words |= {base, *forms}
    for group in ("places", "pronouns", "possessives", "modifiers", "states", "numbers"):
        words |= set(lex[group])
    for group in ("times_present", "times_past"):
        words |= {w for phrase in lex[group] for w in phrase}
    return sorted(words)


def pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One item of ``items``, uniformly."""
    return items[int(rng.integers(len(items)))]


# ---------------------------------------------------------------- English


def english_sentence(rng: np.random.Generator) -> list[EnWord]:
    """One meaning sentence from a random English template."""
    return pick(rng, _EN_TEMPLATES)(rng, lexicon("en"))


def _det(rng: np.random.Generator, plural: bool, next_word: str) -> EnWord:
    """``the``, a possessive, or (singular only) ``a``/``an`` before ``next_word``."""
    choice = pick(rng, ("the", "the", "poss") if plural else ("the", "a", "poss"))
    if choice == "poss":
        return EnWord(pick(rng, lexicon("en")["possessives"]))
    if choice == "a":
        return EnWord("an" if next_word[0] in "aeiou" else "a", "DET")
    return EnWord("the", "DET")


def _noun_phrase(rng: np.random.Generator, lex: dict, groups: Sequence[str], plural: bool) -> list[EnWord]:
    """Determiner, optional modifier and a (plural: ``NPL``-tagged) noun."""
    nouns = lex[pick(rng, groups)]
    noun = pick(rng, sorted(nouns))
    head = EnWord(nouns[noun], "NPL", noun) if plural else EnWord(noun)
    words = [EnWord(pick(rng, lex["modifiers"]))] if rng.random() < 0.3 else []
    words.append(head)
    return [_det(rng, plural, words[0].text), *words]


def _subject(rng: np.random.Generator, lex: dict) -> tuple[list[EnWord], bool]:
    """A pronoun or a noun phrase of people/animals, and whether it is plural."""
    if rng.random() < 0.35:
        pronoun = pick(rng, sorted(lex["pronouns"]))
        return [EnWord(pronoun)], lex["pronouns"][pronoun] == "pl"
    plural = bool(rng.random() < 0.4)
    return _noun_phrase(rng, lex, ("people", "animals"), plural), plural


def _verb(rng: np.random.Generator, lex: dict, group: str, plural: bool, past: bool) -> EnWord:
    """A verb of ``group`` in the past, third-person singular or plain present."""
    base = pick(rng, sorted(lex[group]))
    third, past_form = lex[group][base]
    if past:
        return EnWord(past_form, "VPAST", base)
    return EnWord(base) if plural else EnWord(third, "V3SG", base)


def _time(rng: np.random.Generator, lex: dict, past: bool, p: float = 0.6) -> list[EnWord]:
    """A time phrase (always for the past, with probability ``p`` for the present)."""
    if not past and rng.random() >= p:
        return []
    phrase = pick(rng, lex["times_past" if past else "times_present"])
    return [EnWord(w, "DET" if w == "the" else "W") for w in phrase]


def _copula(plural: bool, past: bool) -> EnWord:
    return EnWord(("were" if plural else "was") if past else ("are" if plural else "is"), "COP")


def _en_transitive(rng: np.random.Generator, lex: dict) -> list[EnWord]:
    subject, plural = _subject(rng, lex)
    past = bool(rng.random() < 0.4)
    obj = _noun_phrase(rng, lex, ("things", "animals"), bool(rng.random() < 0.4))
    return [*subject, _verb(rng, lex, "transitive", plural, past), *obj, *_time(rng, lex, past)]


def _en_state(rng: np.random.Generator, lex: dict) -> list[EnWord]:
    subject, plural = _subject(rng, lex)
    past = bool(rng.random() < 0.4)
    return [*subject, _copula(plural, past), EnWord(pick(rng, lex["states"])), *_time(rng, lex, past)]


def _en_motion(rng: np.random.Generator, lex: dict) -> list[EnWord]:
    subject, plural = _subject(rng, lex)
    past = bool(rng.random() < 0.4)
    place = [EnWord("to"), EnWord("the", "DET"), EnWord(pick(rng, lex["places"]))]
    return [*subject, _verb(rng, lex, "motion", plural, past), *place, *_time(rng, lex, past)]


def _en_there(rng: np.random.Generator, lex: dict) -> list[EnWord]:
    past = bool(rng.random() < 0.4)
    nouns = lex[pick(rng, ("animals", "things", "people"))]
    noun = pick(rng, sorted(nouns))
    where = [EnWord("in"), EnWord("the", "DET"), EnWord(pick(rng, lex["places"]))]
    return [
        EnWord("there"),
        _copula(True, past),
        EnWord(pick(rng, lex["numbers"])),
        EnWord(nouns[noun], "NPL", noun),
        *where,
    ]


def _en_count(rng: np.random.Generator, lex: dict) -> list[EnWord]:
    subject, plural = _subject(rng, lex)
    past = bool(rng.random() < 0.4)
    nouns = lex[pick(rng, ("things", "animals"))]
    noun = pick(rng, sorted(nouns))
    counted = [EnWord(pick(rng, lex["numbers"])), EnWord(nouns[noun], "NPL", noun)]
    return [*subject, _verb(rng, lex, "transitive", plural, past), *counted, *_time(rng, lex, past, p=0.3)]


_EN_TEMPLATES: tuple[Callable[[np.random.Generator, dict], list[EnWord]], ...] = (
    _en_transitive,
    _en_transitive,
    _en_state,
    _en_motion,
    _en_motion,
    _en_there,
    _en_count,
)


# ---------------------------------------------------------------- Korean


def has_final_consonant(syllable: str) -> bool:
    """Whether a Hangul syllable has a final consonant (받침): (code − 0xAC00) mod 28 ≠ 0."""
    code = ord(syllable)
    if not HANGUL_BASE <= code <= HANGUL_LAST:
        raise ValueError(f"not a Hangul syllable: {syllable!r}")
    return (code - HANGUL_BASE) % 28 != 0


def particle(role: str, stem: str, *, wrong_form: bool = False) -> str:
    """The particle of ``role`` after ``stem`` (이 after a final consonant, 가 after a vowel, ...).

    ``wrong_form`` gives the other allomorph (사과을 for 사과를), a learner error.
    """
    after_consonant, after_vowel = PARTICLES[role]
    return after_consonant if has_final_consonant(stem[-1]) != wrong_form else after_vowel


def korean_sentence(rng: np.random.Generator) -> list[KoWord]:
    """One meaning sentence from a random Korean template."""
    return pick(rng, _KO_TEMPLATES)(rng, lexicon("ko"))


def _ko_noun(rng: np.random.Generator, lex: dict, groups: Sequence[str], role: str) -> list[KoWord]:
    """An optional modifier and a noun of ``groups`` with the particle of ``role``."""
    stem = pick(rng, lex[pick(rng, groups)])
    words = [KoWord(pick(rng, lex["modifiers"]))] if rng.random() < 0.4 else []
    return [*words, KoWord(stem, particle(role, stem), role)]


def _ko_subject(
    rng: np.random.Generator, lex: dict, groups: Sequence[str] = ("people", "animals")
) -> list[KoWord]:
    return _ko_noun(rng, lex, groups, "subject" if rng.random() < 0.6 else "topic")


def _ko_time_and_verb(
    rng: np.random.Generator, lex: dict, group: str, p_time: float = 0.5
) -> tuple[list[KoWord], list[KoWord]]:
    """An optional time word, and a verb of ``group`` (after an optional adverb) in a tense agreeing with
    it."""
    past = rng.random() < 0.4
    time = (
        [KoWord(pick(rng, lex["times_past" if past else "times_present"]))] if rng.random() < p_time else []
    )
    present, past_form, formal = lex[group][pick(rng, sorted(lex[group]))]
    verb = KoWord(past_form, base=present) if past else KoWord(pick(rng, (present, present, formal)))
    manner = [KoWord(pick(rng, lex["manners"]))] if group != "states" and rng.random() < 0.4 else []
    return time, [*manner, verb]


def _ko_transitive(rng: np.random.Generator, lex: dict) -> list[KoWord]:
    time, verb = _ko_time_and_verb(rng, lex, "transitive")
    obj = _ko_noun(rng, lex, ("things", "animals"), "object")
    return [*_ko_subject(rng, lex, ("people",)), *time, *obj, *verb]


def _ko_intransitive(
    rng: np.random.Generator, lex: dict, verbs: str, role: str, subjects: tuple[str, ...]
) -> list[KoWord]:
    """Subject, time, a place with the particle of ``role`` (에 or 에서), verb: 철수가 공원에서 놀아요."""
    time, verb = _ko_time_and_verb(rng, lex, verbs)
    place = pick(rng, lex["places"])
    return [*_ko_subject(rng, lex, subjects), *time, KoWord(place, particle(role, place), role), *verb]


def _ko_ditransitive(rng: np.random.Generator, lex: dict, verbs: str, nouns: str, role: str) -> list[KoWord]:
    """Subject, time, a noun of ``nouns`` with the particle of ``role``, object, verb:
    영희가 친구에게 꽃을 줘요."""
    time, verb = _ko_time_and_verb(rng, lex, verbs)
    noun = pick(rng, lex[nouns])
    obj = _ko_noun(rng, lex, ("things",), "object")
    return [*_ko_subject(rng, lex, ("people",)), *time, KoWord(noun, particle(role, noun), role), *obj, *verb]


def _ko_state(rng: np.random.Generator, lex: dict) -> list[KoWord]:
    time, verb = _ko_time_and_verb(rng, lex, "states", p_time=0.3)
    degree = [KoWord(pick(rng, lex["intensifiers"]))]
    return [*_ko_subject(rng, lex, ("people", "animals", "things")), *time, *degree, *verb]


def _ko_together(rng: np.random.Generator, lex: dict) -> list[KoWord]:
    time, verb = _ko_time_and_verb(rng, lex, "transitive", p_time=0.7)
    place, person = pick(rng, lex["places"]), pick(rng, lex["people"])
    obj = _ko_noun(rng, lex, ("things",), "object")
    return [
        *_ko_subject(rng, lex, ("people",)),
        *time,
        KoWord(place, "에서", "locative"),
        KoWord(person, particle("comitative", person), "comitative"),
        *obj,
        *verb,
    ]


_KO_TEMPLATES: tuple[Callable[[np.random.Generator, dict], list[KoWord]], ...] = (
    _ko_transitive,
    _ko_transitive,
    partial(_ko_intransitive, verbs="motion", role="goal", subjects=("people", "animals")),
    partial(_ko_intransitive, verbs="activity", role="locative", subjects=("people",)),
    partial(_ko_ditransitive, verbs="transitive", nouns="places", role="locative"),
    partial(_ko_ditransitive, verbs="give", nouns="people", role="dative"),
    _ko_state,
    _ko_together,
)
