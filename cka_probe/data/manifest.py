"""JSON Lines manifests: one utterance per line (docs/design.md, "Manifests").

A line looks like::

    {"id": "en-000017", "audio": "wav/en-000017.wav", "surface": "he go to de park",
     "meaning": "he goes to the park", "language": "en", "speaker": "en-s03"}

By default ``id``, ``audio``, ``surface``, ``meaning`` and ``language`` are
required non-empty strings (training and evaluation need them all); a stage
that needs less passes ``require`` (extracting an encoder needs only ``id`` and
``audio``; teacher forcing adds the transcripts of its tasks). ``speaker`` is
optional (``None`` when absent); optional ``start`` and ``end`` (seconds,
``0 <= start < end``) cut a segment of a long recording; any other field
(``duration``, ``rules``, ...) is kept as it is. A relative ``audio`` path
is relative to the folder that holds the manifest, so a corpus can be moved as
one folder. Every mistake is reported as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError

REQUIRED_FIELDS: tuple[str, ...] = ("id", "audio", "surface", "meaning", "language")
AUDIO_FIELDS: tuple[str, ...] = ("id", "audio")


def read_manifest(
    path: str | os.PathLike, *, check_audio: bool = True, require: Sequence[str] = REQUIRED_FIELDS
) -> list[dict[str, Any]]:
    """Read a manifest; ``audio`` of each row becomes an absolute path string.

    Blank lines are skipped. Raises :class:`CKAProbeError` naming ``FILE:LINE``
    for bytes that are not UTF-8, invalid JSON, a line that is not an object, a
    missing or non-string field of ``require`` (``id`` and ``audio`` always), a
    bad ``start``/``end``, a duplicate id, or (with ``check_audio``) a missing audio file.
    """
    path = Path(path)
    if path.is_dir():
        raise CKAProbeError(f"{path}: is a folder, not a manifest; give the manifest file (.jsonl)")
    if not path.is_file():
        raise CKAProbeError(f"{path}: manifest not found")
    rows, seen = [], {}
    required = tuple(dict.fromkeys((*AUDIO_FIELDS, *require)))
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if line.strip():
            where = f"{path}:{number}"
            row = _parse_row(_decode(line, where), where, required)
            _check_unique(row["id"], seen, number, where)
            row["audio"] = _resolve_audio(row["audio"], path.parent, where, check_audio)
            rows.append(row)
    if not rows:
        raise CKAProbeError(f"{path}: manifest has no utterances")
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as JSON Lines, atomically (temporary file, then rename).

    An absolute ``audio`` path inside the manifest's folder is written relative
    to it, so ``read_manifest(write_manifest(p, read_manifest(q)))`` reproduces
    the rows of ``q``. Non-ASCII text is written as UTF-8, not escaped.
    """
    path = Path(path)
    lines = [json.dumps(_relative_audio(row, path.parent), ensure_ascii=False) + "\n" for row in rows]
    return atomic_write_text(path, "".join(lines), point="manifest")


def _decode(line: bytes, where: str) -> str:
    """One line's bytes as text; anything but UTF-8 is an error naming the line."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CKAProbeError(
            f"{where}: not UTF-8 text (byte {line[err.start]:#04x} at column {err.start + 1}); "
            "save the manifest as UTF-8"
        ) from None


def _parse_row(line: str, where: str, required: Sequence[str]) -> dict[str, Any]:
    """One line as a dict with the ``required`` fields present and non-empty strings."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise CKAProbeError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise CKAProbeError(f"{where}: invalid JSON (nested too deeply)") from None
    if not isinstance(row, dict):
        raise CKAProbeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field in required:
        if field not in row:
            raise CKAProbeError(f"{where}: missing field {field!r}")
        if not isinstance(row[field], str) or not row[field].strip():
            raise CKAProbeError(f"{where}: field {field!r} must be a non-empty string")
    _check_segment(row, where)
    row.setdefault("speaker", None)
    return row


def _check_segment(row: Mapping[str, Any], where: str) -> None:
    """Optional ``start``/``end`` are finite numbers of seconds (not booleans) with ``0 <= start < end``."""
    bounds = {k: row[k] for k in ("start", "end") if row.get(k) is not None}
    for key, value in bounds.items():
        if not _is_seconds(value):
            raise CKAProbeError(
                f"{where}: field {key!r} must be a non-negative number of seconds, not {value!r}"
            )
    if len(bounds) == 2 and bounds["start"] >= bounds["end"]:
        raise CKAProbeError(
            f"{where}: segment start {bounds['start']} s is not before its end {bounds['end']} s"
        )


def _is_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number >= 0 (JSON's ``NaN`` and ``Infinity`` are not)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _check_unique(utt_id: str, seen: dict[str, int], number: int, where: str) -> None:
    """Record ``utt_id`` at line ``number``; raise if an earlier line used it."""
    if utt_id in seen:
        raise CKAProbeError(f"{where}: duplicate id {utt_id!r} (first on line {seen[utt_id]})")
    seen[utt_id] = number


def _resolve_audio(audio: str, folder: Path, where: str, check: bool) -> str:
    """``audio`` made absolute against the manifest's ``folder``; optionally checked to exist."""
    resolved = (folder / audio).resolve()
    if check and not resolved.is_file():
        raise CKAProbeError(f"{where}: audio file not found: {resolved}")
    return str(resolved)


def _relative_audio(row: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of ``row`` whose absolute audio path under ``folder`` is made relative."""
    out = dict(row)
    audio = Path(str(row["audio"]))
    if audio.is_absolute() and audio.is_relative_to(folder.resolve()):
        out["audio"] = audio.relative_to(folder.resolve()).as_posix()
    return out
