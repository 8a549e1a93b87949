"""English learner-error rules: word-level grammar errors, then paired spelling/phoneme rewrites.

The surface transcript and the audio are both derived from the meaning sentence:

1. Grammar rules rewrite or drop tagged words (``sentences.EnWord``): article
   omission, copula omission, third-person ``-s`` drop, past-tense drop, plural
   drop. They change words, so the audio (spoken from the new words' phonemes)
   is faithful to them by construction.
2. Phoneme rules are substitutions typical of Korean learners of English
   (Swan & Smith 2001, *Learner English*, the chapter on Korean speakers;
   Flege 1995 on why L2 substitutions are systematic): θ→s, ð→d, v→b, f→p, r→l
   or l→r, ɪ→iː, æ→ɛ, final t/d deletion after a consonant, and an epenthetic
   vowel after a final stop. Each rule pairs a spelling pattern with a set of
   espeak-ng phonemes and applies to a word only where both sides match the
   same number of times, rewriting both, so the surface spelling reflects what
   is spoken. An active rule applies to every word where it matches: the same
   environment always changes the same way within an utterance.

Phonemes are espeak-ng mnemonics (``espeak-ng -x``): ``T`` θ, ``D`` ð, ``I`` ɪ,
``i:`` iː, ``a`` æ, ``E`` ɛ, ``U`` ʊ; a leading ``'`` or ``,`` marks stress and
is kept on the rewritten phoneme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cka_probe.data.sentences import EnWord

CONSONANT_LETTERS = "bcdfghjklmnpqrstvwxz"
STRESS = "',"


@dataclass(frozen=True)
class PhonemeRule:
    """A paired rewrite: ``spelling_pattern`` → ``spelling`` and ``phonemes`` → ``sound``.

    ``sound`` lists replacement phonemes; ``"="`` stands for the matched phoneme
    (so ``("=", "U")`` appends a vowel). ``where`` restricts the phoneme side:
    ``any``, ``prevocalic`` (a vowel follows), ``final``, ``final_after_consonant``.
    """

    name: str
    example: str
    spelling_pattern: str
    spelling: str
    phonemes: frozenset[str]
    sound: tuple[str, ...]
    where: str = "any"


def _rule(
    name: str, example: str, pattern: str, spelling: str, phonemes: str, sound: str, where: str = "any"
) -> PhonemeRule:
    return PhonemeRule(
        name, example, pattern, spelling, frozenset(phonemes.split()), tuple(sound.split()), where
    )


_V = "aeiouy"
PHONEME_RULES: tuple[PhonemeRule, ...] = (
    _rule("th_s", "three → sree (θ→s)", "th", "s", "T", "s"),
    _rule("th_d", "mother → moder (ð→d)", "th", "d", "D", "d"),
    _rule("v_b", "very → bery (v→b)", "v", "b", "v", "b"),
    _rule("f_p", "five → pive (f→p)", "ph|ff|f", "p", "f", "p"),
    _rule("r_l", "brother → blother (r→l before a vowel)", f"r+(?=[{_V}])", "l", "r", "l", "prevocalic"),
    _rule("l_r", "village → virage (l→r before a vowel)", f"l+(?=[{_V}])", "r", "l", "r", "prevocalic"),
    _rule("ih_ee", "big → beeg (ɪ→iː)", f"(?<![{_V}])i(?![{_V}])", "ee", "I", "i:"),
    _rule("ae_e", "cat → cet (æ→ɛ)", f"(?<![{_V}])a(?![{_V}w])", "e", "a", "E"),
    _rule(
        "final_td_drop",
        "old → ol (final t/d after a consonant)",
        f"(?<=[{CONSONANT_LETTERS}])[td]$",
        "",
        "t d",
        "",
        "final_after_consonant",
    ),
    _rule(
        "epenthesis",
        "book → booku (vowel after a final stop)",
        "([bdgkpt])$",
        r"\1u",
        "b d g k p t",
        "= U",
        "final",
    ),
)

GRAMMAR_RULES: dict[str, str] = {
    "article_drop": "the/a/an omitted: he saw the dog → he saw dog",
    "copula_drop": "is/are/was/were omitted: she is happy → she happy",
    "third_person_drop": "third-person -s dropped: he goes → he go",
    "past_drop": "past tense replaced by the base form: we went → we go",
    "plural_drop": "plural noun made singular: three dogs → three dog",
}

RULES: dict[str, str] = {**GRAMMAR_RULES, **{r.name: r.example for r in PHONEME_RULES}}
EXCLUSIVE: tuple[frozenset[str], ...] = (frozenset({"r_l", "l_r"}),)


_DROPS = {"article_drop": "DET", "copula_drop": "COP"}
_TO_BASE = {"third_person_drop": "V3SG", "past_drop": "VPAST", "plural_drop": "NPL"}


def apply_grammar(words: list[EnWord], active: frozenset[str]) -> list[str]:
    """The words left after the active grammar rules (``active`` may hold other rule names)."""
    dropped = {tag for name, tag in _DROPS.items() if name in active}
    to_base = {tag for name, tag in _TO_BASE.items() if name in active}
    return [w.base if w.tag in to_base else w.text for w in words if w.tag not in dropped]


def apply_phoneme_rules(word: str, phonemes: list[str], active: frozenset[str]) -> tuple[str, list[str]]:
    """``word`` and its phoneme tokens after each active rule, in :data:`PHONEME_RULES` order."""
    for rule in PHONEME_RULES:
        if rule.name in active:
            word, phonemes = _apply_rule(rule, word, phonemes)
    return word, phonemes


def _apply_rule(rule: PhonemeRule, word: str, phonemes: list[str]) -> tuple[str, list[str]]:
    """One paired rewrite; unchanged unless spelling and phoneme matches are equally many (> 0)."""
    hits = [i for i in range(len(phonemes)) if _matches(rule, phonemes, i)]
    if not hits or len(re.findall(rule.spelling_pattern, word)) != len(hits):
        return word, phonemes
    out: list[str] = []
    for i, token in enumerate(phonemes):
        out.extend(_rewrite(rule.sound, token) if i in hits else [token])
    return re.sub(rule.spelling_pattern, rule.spelling, word), out


def _rewrite(sound: tuple[str, ...], token: str) -> list[str]:
    """Replacement phonemes for ``token``, its stress mark moved onto the first of them."""
    stress = token[: len(token) - len(token.lstrip(STRESS))]
    new = [token.lstrip(STRESS) if s == "=" else s for s in sound]
    return [stress + new[0], *new[1:]] if new else []


def is_vowel(token: str) -> bool:
    """Whether an espeak-ng English phoneme token is a vowel (``a``, ``I``, ``@``, ``3:``, ``oU`` ...)."""
    return token.lstrip(STRESS)[:1] in "aAeEiIoOuUV@03"


def _matches(rule: PhonemeRule, phonemes: list[str], i: int) -> bool:
    """Whether ``phonemes[i]`` is one of the rule's phonemes in its environment."""
    if phonemes[i].lstrip(STRESS) not in rule.phonemes:
        return False
    last = i == len(phonemes) - 1
    return {
        "any": True,
        "prevocalic": not last and is_vowel(phonemes[i + 1]),
        "final": last,
        "final_after_consonant": last and i > 0 and not is_vowel(phonemes[i - 1]),
    }[rule.where]


def word_forms(
    words: list[EnWord], active: frozenset[str], lexicon: dict[str, list[str]]
) -> list[tuple[str, list[str]] | None]:
    """Per meaning word, its surface spelling and phonemes under ``active`` rules, or None when dropped."""
    kept = iter(apply_grammar(words, active))
    dropped = {tag for name, tag in _DROPS.items() if name in active}
    forms: list[tuple[str, list[str]] | None] = []
    for w in words:
        word = None if w.tag in dropped else next(kept)
        forms.append(None if word is None else apply_phoneme_rules(word, lexicon[word], active))
    return forms


def surface(words: list[EnWord], active: frozenset[str], lexicon: dict[str, list[str]]) -> tuple[str, str]:
    """The surface transcript and its phonemes (``[[...]]`` input for espeak-ng) under ``active`` rules.

    ``lexicon`` maps every word form to its espeak-ng phoneme tokens (``espeak.phonemize``).
    """
    forms = [f for f in word_forms(words, active, lexicon) if f is not None]
    return " ".join(text for text, _ in forms), "[[" + " ".join("".join(ph) for _, ph in forms) + "]]"


def changed_words(words: list[EnWord], active: frozenset[str], lexicon: dict[str, list[str]]) -> list[int]:
    """Indices of the meaning words that ``active`` rules drop or respell."""
    return [
        i
        for i, (w, f) in enumerate(zip(words, word_forms(words, active, lexicon)))
        if f is None or f[0] != w.text
    ]
