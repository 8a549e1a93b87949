"""Word spans from Praat TextGrids, as Montreal Forced Aligner writes them (McAuliffe et al. 2017).

A folder of ``*.TextGrid`` files (searched recursively, as MFA mirrors the
corpus's speaker folders), each named after a manifest ``id`` or an audio
file (:mod:`cka_probe.spans.timed` matches them and handles segments). The
``words`` tier is read through praatio; its intervals with an empty label are
silences, skipped. Errors name the file and, in the long text format (MFA's),
the line of the interval or value: a time that is not a number, overlapping
intervals, a word outside its utterance.
"""

from __future__ import annotations

import re
from pathlib import Path

from cka_probe.errors import CKAProbeError
from cka_probe.spans.timed import TimedWord

TIER = "words"
TIME = re.compile(r"^\s*(xmin|xmax)\s*=\s*(.*?)\s*$")
INTERVAL = re.compile(r"^\s*intervals\s*\[(\d+)\]\s*:?\s*$")
NAME = re.compile(r'^\s*name\s*=\s*"(.*)"\s*$')


def _text(path: Path) -> str:
    """The file's text (UTF-8, else UTF-16 as Praat may save), or an empty string."""
    raw = path.read_bytes()
    for encoding in ("utf-8", "utf-16"):
        try:
            return raw.decode(encoding)
        except UnicodeError:
            continue
    return ""


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def interval_lines(path: Path) -> dict[tuple[float, float], int]:
    """``{(xmin, xmax): line}`` of the ``words`` tier's intervals in a long-format TextGrid (empty for the
    short format); a time that is not a number is an error at its line."""
    lines, tier, at, found = _text(path).splitlines(), None, None, {}
    times: dict[str, float] = {}
    for number, line in enumerate(lines, 1):
        if m := TIME.match(line):
            value = _number(m[2])
            if value is None:
                raise CKAProbeError(f"{path}:{number}: {m[1]} must be a number of seconds, not {m[2]!r}")
            times[m[1]] = value
            if tier == TIER and at is not None and m[1] == "xmax":
                found[(round(times["xmin"], 6), round(value, 6))] = at
        elif m := NAME.match(line):
            tier, at = m[1], None
        elif m := INTERVAL.match(line):
            at = number
    return found


def _open(path: Path):
    """The TextGrid at ``path`` through praatio, with its empty intervals; any failure is one line."""
    from praatio import textgrid

    try:
        return textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="silence")
    except Exception as err:  # praatio raises bare exceptions of several kinds for malformed files
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CKAProbeError(f"{path}: not a TextGrid praatio can read ({reason})") from None


def _overlap(path: Path, lines: dict[tuple[float, float], int]) -> None:
    """Raise at the line of the first interval starting before the previous one ends, if any."""
    spans = sorted(lines.items())
    for (prev, _), (span, line) in zip(spans, spans[1:]):
        if span[0] < prev[1]:
            raise CKAProbeError(
                f"{path}:{line}: interval [{span[0]}, {span[1]}) s overlaps [{prev[0]}, {prev[1]}) s"
            )


def textgrid_words(path: str | Path) -> list[TimedWord]:
    """The labelled intervals of the ``words`` tier of the TextGrid at ``path``, silences skipped."""
    path = Path(path)
    lines = interval_lines(path)
    try:
        grid = _open(path)
    except CKAProbeError:
        _overlap(path, lines)
        raise
    if TIER not in grid.tierNames:
        raise CKAProbeError(f"{path}: no {TIER!r} tier (tiers: {', '.join(grid.tierNames) or 'none'})")
    words = []
    for k, (start, end, label) in enumerate(grid.getTier(TIER).entries, 1):
        line = lines.get((round(start, 6), round(end, 6)))
        where = f"{path}:{line}" if line else f"{path}: interval {k} of tier {TIER}"
        if label.strip():
            words.append(TimedWord(label.strip(), float(start), float(end), where))
    return words


def textgrid_folder(folder: str | Path) -> tuple[dict[str, list[TimedWord]], dict[str, str]]:
    """``({file name without suffix: words}, {name: file})`` of every TextGrid under ``folder`` (or of the
    one file ``folder``); two files of one name are an error."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.TextGrid"))
    if not files:
        raise CKAProbeError(f"{folder}: no .TextGrid files")
    groups, origin = {}, {}
    for path in files:
        if path.stem in origin:
            raise CKAProbeError(f"{path}: a second TextGrid named {path.stem}, after {origin[path.stem]}")
        groups[path.stem], origin[path.stem] = textgrid_words(path), str(path)
    return groups, origin
