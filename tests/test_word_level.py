"""Word-level building blocks: CTC forced alignment, surface–meaning word correspondence, word pooling."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import torch

from cka_probe.asr.forced_align import WordSpan, forced_align, token_spans, word_spans
from cka_probe.asr.tokenizer import CharTokenizer
from cka_probe.compare.word_pooling import pool_words
from cka_probe.data import rules_en, rules_ko, sentences, synth
from cka_probe.errors import CKAProbeError
from cka_probe.extract.word_spans import read_word_spans
from cka_probe.text.word_alignment import WordPair, align_words, divergent_surface_words


def posterior_of_path(labels: list[int], vocab: int, peak: float = 0.8) -> torch.Tensor:
    """``(T, V)`` log-posteriors with mass ``peak`` on ``labels[t]`` and the rest spread evenly."""
    p = torch.full((len(labels), vocab), (1 - peak) / (vocab - 1), dtype=torch.float64)
    p[torch.arange(len(labels)), torch.tensor(labels)] = peak
    return p.log()


def collapse(labels: list[int], blank: int = 0) -> list[int]:
    return [a for a, b in zip(labels, [None, *labels]) if a != b and a != blank]


def test_forced_alignment_recovers_the_spans_of_a_known_path():
    tokenizer = CharTokenizer.build(["ab ba"], language="en")
    ids = tokenizer.encode("aab ba")  # a repeated letter needs a blank between its copies
    a, b, space = ids[0], ids[2], ids[3]
    # frames:   0  1  2  3  4  5      6  7  8      9  10 11     12 13
    frames = [0, a, a, 0, a, b, b, 0, space, 0, b, b, a, 0]
    path = forced_align(posterior_of_path(frames, tokenizer.vocab_size), ids)
    assert token_spans(path, len(ids)) == [(1, 3), (4, 5), (5, 7), (8, 9), (10, 12), (12, 13)]
    spans = word_spans(posterior_of_path(frames, tokenizer.vocab_size), "aab  ba", tokenizer)
    assert spans == [WordSpan(0, "aab", 1, 7), WordSpan(1, "ba", 10, 13)]


def best_path_by_enumeration(log_probs: torch.Tensor, targets: list[int]) -> float:
    """The highest score of any frame labelling that collapses to ``targets`` (brute force)."""
    n_frames, vocab = log_probs.shape
    best = float("-inf")
    for labels in itertools.product(range(vocab), repeat=n_frames):
        if collapse(list(labels)) == targets:
            best = max(best, float(log_probs[torch.arange(n_frames), torch.tensor(labels)].sum()))
    return best


@pytest.mark.parametrize("targets", [[1], [1, 2], [2, 2], [1, 2, 1], [2, 1, 1]])
def test_forced_alignment_is_the_best_path_and_is_monotonic_and_complete(targets):
    generator = torch.Generator().manual_seed(len(targets) * 7 + targets[-1])
    for _ in range(3):
        log_probs = torch.randn(7, 3, generator=generator, dtype=torch.float64).log_softmax(-1)
        path = forced_align(log_probs, targets)
        z = [0, *itertools.chain.from_iterable((t, 0) for t in targets)]
        labels = [z[s] for s in path.tolist()]
        assert collapse(labels) == targets  # complete: every token, in order
        steps = torch.diff(path)
        assert (
            int(steps.min()) >= 0
            and int(steps.max()) <= 2
            and int(path[0]) <= 1
            and int(path[-1]) >= len(z) - 2
        )
        score = float(log_probs[torch.arange(7), torch.tensor(labels)].sum())
        assert score == pytest.approx(best_path_by_enumeration(log_probs, targets), abs=1e-12)
        spans = token_spans(path, len(targets))
        assert all(s < e <= s2 for (s, e), (s2, _) in zip(spans, spans[1:])) and spans[-1][1] <= 7


def test_forced_alignment_of_a_transcript_longer_than_the_frames_is_an_error():
    with pytest.raises(CKAProbeError, match="needs at least 4 frames"):
        forced_align(torch.zeros(3, 4).log_softmax(-1), [1, 1, 2])
    with pytest.raises(CKAProbeError, match="empty transcript"):
        word_spans(torch.zeros(3, 4), "  ", CharTokenizer.build(["a"], language="en"))


def ops(surface, meaning):
    return [(p.surface, p.meaning, p.op) for p in align_words(surface, meaning)]


def test_word_correspondence_on_hand_made_pairs():
    assert ops("de cat sat", "the cat sat") == [
        (0, 0, "substituted"),
        (1, 1, "identical"),
        (2, 2, "identical"),
    ]
    # the article is dropped; three/sree and cats/cat pair up by spelling
    assert ops("sree cat", "the three cats") == [
        (None, 0, "deleted"),
        (0, 1, "substituted"),
        (1, 2, "substituted"),
    ]
    assert ops("he go to park", "he goes to the park") == [
        (0, 0, "identical"),
        (1, 1, "substituted"),
        (2, 2, "identical"),
        (None, 3, "deleted"),
        (3, 4, "identical"),
    ]
    assert ops("i am a here", "i am here") == [
        (0, 0, "identical"),
        (1, 1, "identical"),
        (2, None, "inserted"),
        (3, 2, "identical"),
    ]
    assert ops("학교에 가요", "학교에 가요") == [(0, 0, "identical"), (1, 1, "identical")]
    assert ops("", "a b") == [(None, 0, "deleted"), (None, 1, "deleted")]
    assert divergent_surface_words("he go to park", "he goes to the park") == [False, True, False, False]
    assert align_words("x", "y") == [WordPair(0, 0, "substituted")]


def test_word_correspondence_agrees_with_the_korean_rules_word_by_word():
    """Korean rules rewrite words in place: the alignment must pair word i with word i and
    mark as divergent exactly the words whose rewrite changed them."""
    spec = synth.language("ko")
    rng = np.random.default_rng(3)
    changed_total = 0
    for _ in range(150):
        words = sentences.korean_sentence(rng)
        active = synth.draw_rules(rng, spec, str(rng.choice(["1-3", "4-10", ">10"])))
        rewritten = [
            rules_ko.apply_jamo_rules(rules_ko.apply_word_rules(w, active).text, active) for w in words
        ]
        surface, meaning = rules_ko.surface(words, active)[0], " ".join(w.text for w in words)
        assert surface == " ".join(rewritten)
        pairs = align_words(surface, meaning)
        assert [(p.surface, p.meaning) for p in pairs] == [(i, i) for i in range(len(words))]
        truth = [new != w.text for new, w in zip(rewritten, words)]
        assert divergent_surface_words(surface, meaning) == truth
        changed_total += sum(truth)
    assert changed_total > 100  # the check saw many changed words


def test_word_correspondence_agrees_with_the_english_grammar_rules():
    """Grammar rules drop determiners and copulas and uninflect words: dropped words are the
    deleted ones, uninflected words the substituted ones."""
    rng = np.random.default_rng(4)
    grammar = sorted(rules_en.GRAMMAR_RULES)
    seen = {"deleted": 0, "substituted": 0}
    for _ in range(150):
        words = sentences.english_sentence(rng)
        active = frozenset(g for g in grammar if rng.random() < 0.5)
        surface = " ".join(rules_en.apply_grammar(words, active))
        dropped = {tag for name, tag in rules_en._DROPS.items() if name in active}
        to_base = {tag for name, tag in rules_en._TO_BASE.items() if name in active}
        want = {
            i: "deleted"
            if w.tag in dropped
            else "substituted"
            if w.tag in to_base and w.base != w.text
            else "identical"
            for i, w in enumerate(words)
        }
        got = {p.meaning: p.op for p in align_words(surface, " ".join(w.text for w in words))}
        assert got == want, (surface, [w.text for w in words])
        for op in seen:
            seen[op] += sum(v == op for v in got.values())
    assert min(seen.values()) > 30


def test_word_pooling_against_a_hand_computation():
    frames = np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]], dtype=np.float32)
    offsets = np.array([0, 4, 6])  # utterance 0 = rows 0-3, utterance 1 = rows 4-5
    pooled = pool_words(frames, offsets, [(0, 0, 1), (0, 1, 4), (1, 0, 2), (1, 1, 2)])
    assert pooled.dtype == np.float64
    np.testing.assert_array_equal(pooled, [[1, 2], [(3 + 5 + 7) / 3, (4 + 6 + 8) / 3], [10, 11], [11, 12]])
    with pytest.raises(CKAProbeError, match=r"word 0: frames \[1, 3\) outside utterance 1's 2 frames"):
        pool_words(frames, offsets, [(1, 1, 3)])


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_word_correspondence_agrees_with_the_changed_words_the_corpus_records(lang):
    """The synthetic corpus's ``changed_words`` (meaning words its rules dropped or respelled) are
    exactly the meaning words that the alignment leaves without an identical surface word."""
    spec = synth.language(lang)
    rng = np.random.default_rng(11)
    seen, changed_total = set(), 0
    for _ in range(200):
        utt = synth.draw_utterance(rng, spec, seen)
        pairs = [p for p in align_words(utt["surface"], utt["meaning"]) if p.meaning is not None]
        assert [p.op != "identical" for p in pairs] == [
            i in utt["changed_words"] for i in range(len(utt["meaning"].split()))
        ], utt
        changed_total += len(utt["changed_words"])
    assert changed_total > 200


# -- the word-span sidecar as read back

OUTSIDE = "a word span lies outside the utterance's frames"
WORD = {"index": 0, "word": "he", "start": 0, "end": 2, "op": "identical", "meaning_index": 0}


def sidecar_lines(tmp_path, *lines: str):
    path = tmp_path / "a.h5.words.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def record(uid: str = "utt0000", n_frames=5, **word) -> str:
    return json.dumps({"id": uid, "n_frames": n_frames, "words": [WORD | word]})


@pytest.mark.parametrize(
    "line, message",
    [
        (record(start=0.5), "utterance utt0000, word 0: start must be a whole frame index, not 0.5"),
        (record(end=2.0), "utterance utt0000, word 0: end must be a whole frame index, not 2.0"),
        (record(start=False), "utterance utt0000, word 0: start must be a whole frame index, not False"),
        (record(end="2"), "utterance utt0000, word 0: end must be a whole frame index, not '2'"),
        (record(start=None), "utterance utt0000, word 0: start must be a whole frame index, not None"),
        (record(start=-1), f"{OUTSIDE}: utterance utt0000, word 0 covers [-1, 2) of 5"),
        (record(start=2, end=2), f"{OUTSIDE}: utterance utt0000, word 0 covers [2, 2) of 5"),
        (record(end=6), "utterance utt0000, word 0 covers [0, 6) of 5"),
        (record(n_frames=5.0), "utterance utt0000: n_frames must be a positive whole number, not 5.0"),
        (record(n_frames=True), "utterance utt0000: n_frames must be a positive whole number, not True"),
        (record(op=3), "word 0: op must be one of identical, substituted, inserted, not 3"),
        (record(op="same"), "op must be one of identical, substituted, inserted, not 'same'"),
        (record(word=["he"]), "utterance utt0000, word 0: word must be a string, not ['he']"),
        (json.dumps({"id": "utt0000", "n_frames": 5, "words": [7]}), "word 0: must be a JSON object, not 7"),
        (json.dumps({"id": "utt0000", "n_frames": 5, "words": {}}), "utt0000: words must be a list, not {}"),
        (json.dumps({"id": 7, "n_frames": 5, "words": []}), "id must be a non-empty string, not 7"),
        (json.dumps({"id": "utt0000", "words": []}), "not a word-span record (no 'n_frames')"),
        ("[1, 2]", "not a word-span record (a JSON object per line)"),
        ("[" * 100000, "not a word-span record (maximum recursion depth"),
        ('{"id": "u", "n_frames": ' + "9" * 5000 + ', "words": []}', "not a word-span record (Exceeds"),
    ],
)
def test_a_word_span_record_of_wrong_types_is_one_line_naming_file_and_line(tmp_path, line, message):
    path = sidecar_lines(tmp_path, record("utt0009"), line)
    with pytest.raises(CKAProbeError) as err:
        read_word_spans(path)
    text = str(err.value)
    assert text.startswith(f"{path}:2: ") and message in text and "\n" not in text


@pytest.mark.parametrize("n_frames", [0, -3, 2.5, None])
def test_n_frames_must_be_a_positive_integer_even_without_words(tmp_path, n_frames):
    path = sidecar_lines(tmp_path, json.dumps({"id": "utt0000", "n_frames": n_frames, "words": []}))
    with pytest.raises(CKAProbeError, match=r"^.*:1: utterance utt0000: n_frames must be a positive whole"):
        read_word_spans(path)


def test_a_repeated_utterance_in_word_spans_names_both_lines(tmp_path):
    path = sidecar_lines(tmp_path, record("utt0000"), record("utt0001"), record("utt0000", end=3))
    with pytest.raises(CKAProbeError) as err:
        read_word_spans(path)
    assert str(err.value) == f"{path}:3: utterance utt0000 again, first on line 1"


def test_word_spans_that_are_valid_read_back_whole_skipping_blank_lines(tmp_path):
    empty = json.dumps({"id": "utt0001", "n_frames": 3, "words": []})
    path = sidecar_lines(tmp_path, record("utt0000", end=5), "", empty)
    records = read_word_spans(path)
    assert list(records) == ["utt0000", "utt0001"] and records["utt0000"]["words"] == [WORD | {"end": 5}]


def test_word_spans_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "a.h5.words.jsonl"
    path.write_bytes(record().encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(CKAProbeError, match=rf"^{re.escape(str(path))}:2: not UTF-8 text"):
        read_word_spans(path)
