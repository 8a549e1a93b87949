"""TextGrid, CTM and timed JSON Lines word spans (:mod:`cka_probe.spans`) on hand-written files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile

from cka_probe.compare.span_sources import read_spans
from cka_probe.errors import CKAProbeError
from cka_probe.extract.word_spans import read_word_spans

HEADER = 14
"""Lines of a one-tier long-format TextGrid before its first interval (see :func:`textgrid`)."""


def textgrid(xmax: float, intervals: list[tuple[str, str, str]], tier: str = "words") -> str:
    """A long-format TextGrid (as Montreal Forced Aligner writes) of one interval tier; interval ``k``
    (from 1) starts on line ``HEADER + 4 (k - 1) + 1``, its xmin, xmax and text on the next three."""
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {xmax}",
        "tiers? <exists>",
        "size = 1",
        "item []:",
        "    item [1]:",
        '        class = "IntervalTier"',
        f'        name = "{tier}"',
        "        xmin = 0",
        f"        xmax = {xmax}",
        f"        intervals: size = {len(intervals)}",
    ]
    assert len(lines) == HEADER
    for k, (start, end, text) in enumerate(intervals, 1):
        lines += [f"        intervals [{k}]:", f"            xmin = {start}", f"            xmax = {end}"]
        lines.append(f'            text = "{text}"')
    return "\n".join(lines) + "\n"


def wav(path, seconds: float) -> str:
    rng = np.random.default_rng(0)
    soundfile.write(path, (rng.normal(size=round(seconds * 16000)) * 3000).astype(np.int16), 16000)
    return path.name


@pytest.fixture
def corpus(tmp_path):
    """A manifest of utterances a1 (1.0 s), a3 (0.5 s, no meaning transcript) and the two halves s1, s2 of a
    3-second file long.wav; an empty TextGrid folder beside it."""
    rows = [
        {
            "id": "a1",
            "audio": wav(tmp_path / "a1.wav", 1.0),
            "surface": "he go park",
            "meaning": "he goes park",
        },
        {"id": "a3", "audio": wav(tmp_path / "a3.wav", 0.5), "surface": "yes"},
        {
            "id": "s1",
            "audio": wav(tmp_path / "long.wav", 3.0),
            "start": 0.0,
            "end": 1.5,
            "surface": "i am",
            "meaning": "i am",
        },
        {"id": "s2", "audio": "long.wav", "start": 1.5, "end": 3.0, "surface": "here", "meaning": "there"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tg").mkdir()
    return tmp_path, manifest


A1 = [
    ("0", "0.1", ""),
    ("0.1", "0.3", "he"),
    ("0.3", "0.5", "go"),
    ("0.5", "0.6", ""),
    ("0.6", "0.9", "park"),
    ("0.9", "1", ""),
]
LONG = [
    ("0", "0.2", ""),
    ("0.2", "0.4", "i"),
    ("0.4", "0.5", ""),
    ("0.5", "0.8", "am"),
    ("0.8", "1.7", ""),
    ("1.7", "2.0", "here"),
    ("2.0", "3", ""),
]


def words(record):
    return [(w["word"], w["start_s"], w["end_s"], w["op"], w["meaning_index"]) for w in record["words"]]


def test_textgrids_by_id_and_by_audio_file_with_segments(corpus):
    root, manifest = corpus
    (root / "tg" / "a1.TextGrid").write_text(textgrid(1, A1))
    (root / "tg" / "spk").mkdir()
    (root / "tg" / "spk" / "long.TextGrid").write_text(textgrid(3, LONG))  # MFA's speaker folders
    records = read_spans(root / "tg", manifest)
    assert sorted(records) == ["a1", "s1", "s2"]
    # silences skipped; "he go park" against "he goes park": go ~ goes
    assert words(records["a1"]) == [
        ("he", 0.1, 0.3, "identical", 0),
        ("go", 0.3, 0.5, "substituted", 1),
        ("park", 0.6, 0.9, "identical", 2),
    ]
    assert records["a1"]["duration_s"] == 1.0
    # the file's times, each segment its own words shifted to its start
    assert words(records["s1"]) == [("i", 0.2, 0.4, "identical", 0), ("am", 0.5, 0.8, "identical", 1)]
    assert [(w, round(a, 9), round(b, 9), op) for w, a, b, op, _ in words(records["s2"])] == [
        ("here", 0.2, 0.5, "substituted")
    ]


def test_ctm_by_id_and_by_audio_file_and_words_without_a_meaning_transcript(corpus):
    root, manifest = corpus
    ctm = root / "a.ctm"
    ctm.write_text(
        ";; a comment\n"
        "a1 1 0.60 0.30 park 0.98\n"  # out of order: sorted by time
        "a1 1 0.10 0.20 he\n"
        "a1 1 0.30 0.20 go 1.0\n"
        "\n"
        "a3 1 0.05 0.30 yes\n"
        "long A 0.20 0.20 i\n"
        "long A 1.70 0.30 here\n"
    )
    records = read_spans(ctm, manifest)
    assert [(w, a, op) for w, a, _, op, _ in words(records["a1"])] == [
        ("he", 0.1, "identical"),
        ("go", 0.3, "substituted"),
        ("park", 0.6, "identical"),
    ]
    assert words(records["a3"]) == [("yes", 0.05, 0.35, None, None)]
    assert [w["word"] for w in records["s1"]["words"]] == ["i"] and len(records["s2"]["words"]) == 1


@pytest.mark.parametrize(
    "lines, message",
    [
        ("a1 1 0.1 he\n", r"a\.ctm:1: a CTM line has 5 or 6 fields .* not 4"),
        (
            "a1 1 0.1 0.2 he\na1 1 x 0.2 go\n",
            r"a\.ctm:2: start must be a finite number of seconds >= 0, not 'x'",
        ),
        ("a1 1 -0.1 0.2 he\n", r"a\.ctm:1: start must be .* not '-0.1'"),
        ("a1 1 0.1 nan he\n", r"a\.ctm:1: duration must be .* not 'nan'"),
        ("a1 1 0.1 0 he\n", r"a\.ctm:1: word 'he' has duration 0"),
        ("a1 1 0.1 0.2 he high\n", r"a\.ctm:1: confidence must be .* not 'high'"),
        (
            "a1 1 0.1 0.2 he\nzz 1 0.1 0.2 go\n",
            r"a\.ctm:2: 'zz' is neither an utterance id nor an audio file",
        ),
        (
            "a1 1 0.1 0.2 he\na1 1 0.3 0.2 go\na1 1 0.45 0.2 park\n",
            r"a\.ctm:3: word 'park' .* overlaps 'go' of .*a\.ctm:2",
        ),
        ("a1 1 0.8 0.3 he\n", r"a\.ctm:1: word 'he' ends at 1\.1 s, after utterance a1 \(1\.000 s\)"),
        ("long 1 1.4 0.2 am\n", r"a\.ctm:1: word 'am' \[1\.4, 1\.6\) s crosses a boundary of utterance s1"),
    ],
)
def test_a_malformed_ctm_line_is_one_error_naming_file_and_line(corpus, lines, message):
    root, manifest = corpus
    (root / "a.ctm").write_text(lines)
    with pytest.raises(CKAProbeError) as err:
        read_spans(root / "a.ctm", manifest)
    assert re.search(message, str(err.value)) and "\n" not in str(err.value)


def test_a_ctm_line_that_is_not_utf8_is_named(corpus):
    root, manifest = corpus
    (root / "a.ctm").write_bytes(b"a1 1 0.1 0.2 he\na1 1 0.3 0.2 \xff\n")
    with pytest.raises(CKAProbeError, match=r"a\.ctm:2: not UTF-8 text"):
        read_spans(root / "a.ctm", manifest)


def interval_line(k: int, field: str = "") -> int:
    """The line of interval ``k``'s header (or its ``xmin``/``xmax``/``text``) in :func:`textgrid`."""
    return HEADER + 4 * (k - 1) + 1 + ("", "xmin", "xmax", "text").index(field)


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "a1",
            textgrid(1, [("0.1", "0.3", "he"), ("0.3", "abc", "go")]),
            rf"a1\.TextGrid:{interval_line(2, 'xmax')}: xmax must be a number of seconds, not 'abc'",
        ),
        (
            "a1",
            textgrid(1, [("0.1", "0.3", "he"), ("0.25", "0.5", "go")]),
            rf"a1\.TextGrid:{interval_line(2)}: interval \[0\.25, 0\.5\) s overlaps \[0\.1, 0\.3\) s",
        ),
        (
            "a1",
            textgrid(1.2, [("0.1", "0.3", "he"), ("0.3", "1.2", "go")]),
            rf"a1\.TextGrid:{interval_line(2)}: word 'go' ends at 1\.2 s, after utterance a1",
        ),
        (
            "a1",
            textgrid(1, [("0.1", "0.3", "hh")], tier="phones"),
            r"a1\.TextGrid: no 'words' tier \(tiers: phones\)",
        ),
        ("a1", "hello\n", r"a1\.TextGrid: not a TextGrid praatio can read \("),
        (
            "zz",
            textgrid(1, [("0.1", "0.3", "he")]),
            r"zz\.TextGrid: 'zz' is neither an utterance id nor an audio file",
        ),
        (
            "long",
            textgrid(3, [("1.4", "1.6", "am")]),
            rf"long\.TextGrid:{interval_line(1)}: word 'am' \[1\.4, 1\.6\) s crosses a boundary of "
            r"utterance s1",
        ),
    ],
)
def test_a_malformed_textgrid_is_one_error_naming_file_and_line(corpus, name, text, message):
    root, manifest = corpus
    (root / "tg" / f"{name}.TextGrid").write_text(text)
    with pytest.raises(CKAProbeError) as err:
        read_spans(root / "tg", manifest)
    assert re.search(message, str(err.value)) and "\n" not in str(err.value)


def test_two_textgrids_of_one_name_or_none_at_all_are_errors(corpus):
    root, manifest = corpus
    with pytest.raises(CKAProbeError, match=r"tg: no \.TextGrid files"):
        read_spans(root / "tg", manifest)
    for folder in ("x", "y"):
        (root / "tg" / folder).mkdir()
        (root / "tg" / folder / "a1.TextGrid").write_text(textgrid(1, A1))
    with pytest.raises(
        CKAProbeError, match=r"y/a1\.TextGrid: a second TextGrid named a1, after .*x/a1\.TextGrid"
    ):
        read_spans(root / "tg", manifest)
    with pytest.raises(CKAProbeError, match=r"a manifest is needed"):
        read_spans(root / "tg")


def timed_line(uid: str = "a1", duration_s=1.0, **word) -> str:
    base = {"index": 0, "word": "he", "start_s": 0.1, "end_s": 0.3, "op": None, "meaning_index": None}
    return json.dumps({"id": uid, "duration_s": duration_s, "words": [base | word]})


@pytest.mark.parametrize(
    "line, message",
    [
        (timed_line(end_s=1.2), r":2: word 'he' ends at 1\.2 s, after utterance a1 \(1\.000 s\)"),
        (timed_line(start_s=0.3, end_s=0.3), r":2: word 'he' has times \[0\.3, 0\.3\) s"),
        (
            timed_line(start_s="0.1"),
            r":2: utterance a1, word 0: start_s must be a number of seconds, not '0\.1'",
        ),
        (timed_line(duration_s=0), r":2: utterance a1: duration_s must be a positive number, not 0"),
        (json.dumps({"id": "a1", "words": []}), r":2: not a word-span record \(no 'n_frames'\)"),
        (
            timed_line(op="same"),
            r":2: utterance a1, word 0: op must be one of identical, substituted, inserted",
        ),
    ],
)
def test_a_timed_jsonl_record_is_checked_line_by_line(tmp_path, line, message):
    path = tmp_path / "spans.jsonl"
    path.write_text(timed_line("a0") + "\n" + line + "\n")
    with pytest.raises(CKAProbeError, match=message):
        read_spans(path)


def test_a_timed_jsonl_file_reads_back_its_times(tmp_path):
    path = tmp_path / "spans.jsonl"
    path.write_text(timed_line("a0") + "\n")
    assert read_word_spans(path)["a0"]["words"][0]["start_s"] == 0.1
    assert read_spans(path) == read_word_spans(path)


SHORT = """File type = "ooTextFile"
Object class = "TextGrid"

0
{xmax}
<exists>
1
"IntervalTier"
"words"
0
{xmax}
3
0
0.1
""
0.1
0.3
"he"
0.3
{xmax}
"go"
"""
"""A short-format TextGrid (Praat's "save as short text file"): he [0.1, 0.3), go [0.3, xmax)."""


def test_a_short_format_textgrid_reads_and_its_errors_name_the_interval(corpus):
    root, manifest = corpus
    (root / "tg" / "a1.TextGrid").write_text(SHORT.format(xmax=1))
    assert words(read_spans(root / "tg", manifest)["a1"]) == [
        ("he", 0.1, 0.3, "identical", 0),
        ("go", 0.3, 1.0, "substituted", 1),
    ]
    (root / "tg" / "a1.TextGrid").write_text(SHORT.format(xmax=1.2))
    with pytest.raises(
        CKAProbeError, match=r"a1\.TextGrid: interval 3 of tier words: word 'go' ends at 1\.2 s"
    ):
        read_spans(root / "tg", manifest)
