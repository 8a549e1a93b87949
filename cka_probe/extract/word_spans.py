"""Word spans of a manifest from a model's own CTC head, kept beside an activation store.

For each utterance the surface transcript is force-aligned over the CTC
log-posteriors (:mod:`cka_probe.asr.forced_align`), giving each surface word
its encoder frames ``[start, end)``, and paired with the meaning transcript
word by word (:mod:`cka_probe.text.word_alignment`). The bundled models
share one front end, so the frames of the spans are the rows of every
encoder stream of every bundled model extracted from the same manifest.
Each word also gets its times ``[start_s, end_s)`` in seconds of the
utterance (the frames' bounds by the model's frame arithmetic,
:meth:`cka_probe.spans.frames.FrameGrid.seconds`), so that the spans map to
the frames of any other model of the same audio (:mod:`cka_probe.spans`).

The sidecar ``<store>.words.jsonl`` holds one JSON object per utterance, in
manifest order::

    {"id": "en-000017", "n_frames": 41, "duration_s": 1.62,
     "words": [{"index": 0, "word": "he", "start": 2, "end": 6, "start_s": 0.1025, "end_s": 0.2625,
                "op": "identical", "meaning_index": 0}, ...]}

``op`` is ``identical``, ``substituted`` or ``inserted`` (a surface word with
no meaning word; ``meaning_index`` null). When the manifest row records
``changed_words`` (the meaning words its rules changed, as the synthetic
corpus does), each word also gets ``corpus_changed``: whether its meaning
word is one of them (or it has none), the corpus's own account of the
divergence that ``op`` infers from the text. The file is written
atomically (:mod:`cka_probe.atomic`).

The same format holds spans in seconds alone, from any aligner: a record
with ``duration_s`` and no ``n_frames`` whose words have ``start_s``/``end_s``
and no frames (``op`` and ``meaning_index`` null when the manifest row has no
meaning transcript). Sidecars written before the times were added (frames
only) read as before. Reading (:func:`read_word_spans`) checks every record:
``n_frames`` or ``duration_s`` (or both); with ``n_frames`` a positive
integer, every word's ``start`` and ``end`` JSON integers with
``0 <= start < end <= n_frames``; with ``duration_s`` a positive number, every
word's ``start_s`` and ``end_s`` numbers with ``0 <= start_s < end_s`` and
``end_s <= duration_s`` (give or take :data:`~cka_probe.spans.timed.TOLERANCE_S`),
no two words overlapping; ``op`` one of :data:`SPAN_OPS` or null, ``word`` a
string, and one record per utterance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cka_probe.asr.forced_align import word_spans
from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.spans.frames import FrameGrid, bundled_grid
from cka_probe.spans.timed import TimedWord, checked, duration, paired
from cka_probe.text.cer import normalize_text


def sidecar_path(store: str | Path) -> Path:
    """``acts/do.h5`` -> ``acts/do.h5.words.jsonl``."""
    store = Path(store)
    return store.with_name(store.name + ".words.jsonl")


def utterance_words(
    log_probs: torch.Tensor, row: dict[str, Any], tokenizer, grid: FrameGrid
) -> list[dict[str, Any]]:
    """The sidecar's ``words`` of manifest ``row``; ``log_probs (T, V)`` over its valid frames, ``grid`` the
    model's frame arithmetic (for the times)."""
    spans = word_spans(log_probs, normalize_text(row["surface"]), tokenizer, blank=tokenizer.blank)
    return [
        {
            "index": s.index,
            "word": s.word,
            "start": s.start,
            "end": s.end,
            **dict(zip(("start_s", "end_s"), grid.seconds(s.start, s.end))),
            **pair,
        }
        for s, pair in zip(spans, paired([s.word for s in spans], row))
    ]


@torch.no_grad()
def manifest_word_spans(
    model,
    ckpt: dict[str, Any],
    manifest: str | Path,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
) -> Iterator[dict[str, Any]]:
    """One sidecar record per manifest row (the first ``limit``), from ``model``'s CTC head on the surface
    task."""
    from cka_probe.asr.data import ManifestBatches

    if model.ctc_task != "surface":
        raise CKAProbeError(
            f"word spans align the surface transcript, but this model's CTC head is on "
            f"'{model.ctc_task}'; use an SSO or DO checkpoint"
        )
    batches, grid = ManifestBatches(manifest, ckpt, batch_size, limit=limit), bundled_grid(ckpt["config"])
    rows = iter(batches.rows)
    for batch in batches:
        enc, enc_lens = model.encode(batch["feats"].to(device), batch["feat_lens"].to(device))
        log_probs = model.ctc_log_probs(enc).cpu()
        for b, uid in enumerate(batch["ids"]):
            row, n = next(rows), int(enc_lens[b])
            try:
                words = utterance_words(log_probs[b, :n], row, ckpt["tokenizers"]["surface"], grid)
            except CKAProbeError as err:
                raise CKAProbeError(f"{manifest}: utterance {uid}: {err}") from None
            yield {"id": uid, "n_frames": n, "duration_s": duration(row), "words": words}


def write_word_spans(model, ckpt: dict[str, Any], manifest: str | Path, out: str | Path, **options) -> Path:
    """Write :func:`manifest_word_spans` to ``out`` (JSON Lines) atomically; returns ``out``."""
    records = manifest_word_spans(model, ckpt, manifest, **options)
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    return atomic_write_text(out, "".join(lines), point="word-spans")


SPAN_OPS = ("identical", "substituted", "inserted")
"""The ``op`` of a surface word in a sidecar."""


def _is_index(value: Any) -> bool:
    """Whether ``value`` is a JSON integer (a float such as 2.0 or a bool is not)."""
    return type(value) is int


def _is_seconds(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (a bool is not)."""
    return type(value) in (int, float) and math.isfinite(value)


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    """One line (UTF-8 bytes) as a record with an id, a positive frame count or duration and a list of
    words, else an error at ``where`` (FILE:LINE)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CKAProbeError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (ValueError, RecursionError) as err:  # bad JSON, an integer of too many digits, deep nesting
        raise CKAProbeError(f"{where}: not a word-span record ({err})") from None
    if not isinstance(record, dict):
        raise CKAProbeError(f"{where}: not a word-span record (a JSON object per line)")
    missing = [key for key in ("id", "n_frames", "words") if key not in record]
    if missing and not (missing == ["n_frames"] and "duration_s" in record):
        raise CKAProbeError(f"{where}: not a word-span record (no {missing[0]!r})")
    uid = record["id"]
    if not isinstance(uid, str) or not uid:
        raise CKAProbeError(f"{where}: id must be a non-empty string, not {uid!r}")
    if "n_frames" in record and (not _is_index(record["n_frames"]) or record["n_frames"] < 1):
        raise CKAProbeError(
            f"{where}: utterance {uid}: n_frames must be a positive whole number, not {record['n_frames']!r}"
        )
    if "duration_s" in record and not (_is_seconds(record["duration_s"]) and record["duration_s"] > 0):
        raise CKAProbeError(
            f"{where}: utterance {uid}: duration_s must be a positive number, not {record['duration_s']!r}"
        )
    if not isinstance(record["words"], list):
        raise CKAProbeError(f"{where}: utterance {uid}: words must be a list, not {record['words']!r}")
    return record


def _check_frames(word: dict[str, Any], k: int, record: dict[str, Any], where: str) -> None:
    """Raise unless word ``k`` of ``record`` spans whole frames ``0 <= start < end <= n_frames``."""
    at = f"{where}: utterance {record['id']}, word {k}"
    for key in ("start", "end"):
        if not _is_index(word.get(key)):
            raise CKAProbeError(f"{at}: {key} must be a whole frame index, not {word.get(key)!r}")
    start, end, n_frames = word["start"], word["end"], record["n_frames"]
    if not 0 <= start < end <= n_frames:
        raise CKAProbeError(
            f"{where}: a word span lies outside the utterance's frames: utterance {record['id']}, word {k} "
            f"covers [{start}, {end}) of {n_frames}"
        )


def _check_times(record: dict[str, Any], where: str) -> None:
    """Raise unless every word of ``record`` has ``start_s``/``end_s`` numbers inside its ``duration_s``
    and no two overlap (:func:`cka_probe.spans.timed.checked`)."""
    for k, word in enumerate(record["words"]):
        for key in ("start_s", "end_s"):
            if not _is_seconds(word.get(key)):
                raise CKAProbeError(
                    f"{where}: utterance {record['id']}, word {k}: {key} must be a number of seconds, "
                    f"not {word.get(key)!r}"
                )
    timed = [TimedWord(w.get("word", ""), w["start_s"], w["end_s"], where) for w in record["words"]]
    checked(timed, record["duration_s"], record["id"])


def _check_word(word: Any, k: int, record: dict[str, Any], where: str) -> None:
    """Raise unless word ``k`` of ``record`` is an object with frames (when the record has ``n_frames``), an
    ``op`` and string text; the error names ``where`` (FILE:LINE), the utterance and the word."""
    at = f"{where}: utterance {record['id']}, word {k}"
    if not isinstance(word, dict):
        raise CKAProbeError(f"{at}: must be a JSON object, not {word!r}")
    if "n_frames" in record:
        _check_frames(word, k, record, where)
    if "op" not in word or word["op"] not in (*SPAN_OPS, None):
        raise CKAProbeError(
            f"{at}: op must be one of {', '.join(SPAN_OPS)}, not {word.get('op')!r} "
            "(or null without a meaning transcript)"
        )
    if not isinstance(word.get("word", ""), str):
        raise CKAProbeError(f"{at}: word must be a string, not {word['word']!r}")


def read_word_spans(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{utterance id: record}`` of a sidecar, every record checked (blank lines skipped); a missing file,
    a bad record or a repeated utterance is a one-line error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise CKAProbeError(f"{path}: no word-span file (write one with `cka-probe extract --word-spans`)")
    records, lines = {}, {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            where = f"{path}:{line_no}"
            if not raw.strip():
                continue
            record = _parse(raw, where)
            for k, word in enumerate(record["words"]):
                _check_word(word, k, record, where)
            if "duration_s" in record:
                _check_times(record, where)
            uid = record["id"]
            if uid in lines:
                raise CKAProbeError(f"{where}: utterance {uid} again, first on line {lines[uid]}")
            records[uid], lines[uid] = record, line_no
    return records
