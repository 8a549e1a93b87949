"""Word spans from a CTM file (NIST's time-marked conversation format, as Kaldi and MFA write it).

One word per line, ``KEY CHANNEL START DURATION WORD [CONFIDENCE]``, times in
seconds (a word's end, START + DURATION, to the microsecond); ``KEY`` is a
manifest ``id`` or an audio file's name without suffix
(:mod:`cka_probe.spans.timed` matches them and handles segments). Blank lines
and ``;;`` comments are skipped. A malformed line is one error naming FILE:LINE.
"""

from __future__ import annotations

from pathlib import Path

from cka_probe.errors import CKAProbeError
from cka_probe.spans.timed import TimedWord

DECIMALS = 6
"""A word's end, START + DURATION, is rounded to microseconds: 0.1 + 0.2 ends at 0.3, where the next word may
start."""


def _seconds(value: str, what: str, where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise CKAProbeError(f"{where}: {what} must be a finite number of seconds >= 0, not {value!r}")
    return seconds


def ctm_line(line: str, where: str) -> tuple[str, TimedWord]:
    """``(key, word)`` of one CTM line."""
    fields = line.split()
    if len(fields) not in (5, 6):
        raise CKAProbeError(
            f"{where}: a CTM line has 5 or 6 fields (KEY CHANNEL START DURATION WORD [CONFIDENCE]), "
            f"not {len(fields)}"
        )
    key, _, start, length, word = fields[:5]
    start_s, length_s = _seconds(start, "start", where), _seconds(length, "duration", where)
    if length_s == 0:
        raise CKAProbeError(f"{where}: word {word!r} has duration 0")
    if len(fields) == 6:
        _seconds(fields[5], "confidence", where)
    return key, TimedWord(word, start_s, round(start_s + length_s, DECIMALS), where)


def ctm_file(path: str | Path) -> tuple[dict[str, list[TimedWord]], dict[str, str]]:
    """``({key: words}, {key: FILE:LINE of its first word})`` of a CTM file."""
    path = Path(path)
    if not path.is_file():
        raise CKAProbeError(f"{path}: no CTM file")
    groups, origin = {}, {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CKAProbeError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if not line.strip() or line.lstrip().startswith(";;"):
            continue
        key, word = ctm_line(line, where)
        groups.setdefault(key, []).append(word)
        origin.setdefault(key, where)
    return groups, origin
