"""Word spans of a manifest from a model's own CTC head, kept beside an activation store.

For each utterance the surface transcript is force-aligned over the CTC
log-posteriors (:mod:`cka_probe.asr.forced_align`), giving each surface word
its encoder frames ``[start, end)``, and paired with the meaning transcript
word by word (:mod:`cka_probe.text.word_alignment`). The bundled models
share one front end, so the frames of the spans are the rows of every
encoder stream of every bundled model extracted from the same manifest.

The sidecar ``<store>.words.jsonl`` holds one JSON object per utterance, in
manifest order::

    {"id": "en-000017", "n_frames": 41,
     "words": [{"index": 0, "word": "he", "start": 2, "end": 6, "op": "identical", "meaning_index": 0}, ...]}

``op`` is ``identical``, ``substituted`` or ``inserted`` (a surface word with
no meaning word; ``meaning_index`` null). When the manifest row records
``changed_words`` (the meaning words its rules changed, as the synthetic
corpus does), each word also gets ``corpus_changed``: whether its meaning
word is one of them (or it has none), the corpus's own account of the
divergence that ``op`` infers from the text. The file is written
atomically (:mod:`cka_probe.atomic`). Reading it (:func:`read_word_spans`)
checks every record: ``start`` and ``end`` JSON integers with
``0 <= start < end <= n_frames``, ``n_frames`` a positive integer, ``op``
one of :data:`SPAN_OPS`, ``word`` a string, and one record per utterance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cka_probe.asr.forced_align import word_spans
from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import normalize_text
from cka_probe.text.word_alignment import align_words


def sidecar_path(store: str | Path) -> Path:
    """``acts/do.h5`` -> ``acts/do.h5.words.jsonl``."""
    store = Path(store)
    return store.with_name(store.name + ".words.jsonl")


def utterance_words(log_probs: torch.Tensor, row: dict[str, Any], tokenizer) -> list[dict[str, Any]]:
    """The sidecar's ``words`` of manifest ``row``; ``log_probs (T, V)`` over its valid frames."""
    surface, meaning = normalize_text(row["surface"]), normalize_text(row["meaning"])
    pairs = {p.surface: p for p in align_words(surface, meaning) if p.surface is not None}
    words = [
        {
            "index": s.index,
            "word": s.word,
            "start": s.start,
            "end": s.end,
            "op": pairs[s.index].op,
            "meaning_index": pairs[s.index].meaning,
        }
        for s in word_spans(log_probs, surface, tokenizer, blank=tokenizer.blank)
    ]
    if "changed_words" in row:
        changed = set(row["changed_words"])
        for word in words:
            word["corpus_changed"] = word["meaning_index"] is None or word["meaning_index"] in changed
    return words


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
    batches = ManifestBatches(manifest, ckpt, batch_size, limit=limit)
    rows = iter(batches.rows)
    for batch in batches:
        enc, enc_lens = model.encode(batch["feats"].to(device), batch["feat_lens"].to(device))
        log_probs = model.ctc_log_probs(enc).cpu()
        for b, uid in enumerate(batch["ids"]):
            row, n = next(rows), int(enc_lens[b])
            try:
                words = utterance_words(log_probs[b, :n], row, ckpt["tokenizers"]["surface"])
            except CKAProbeError as err:
                raise CKAProbeError(f"{manifest}: utterance {uid}: {err}") from None
            yield {"id": uid, "n_frames": n, "words": words}


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


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    """One line (UTF-8 bytes) as a record with an id, a positive frame count and a list of words, else an
    error at ``where`` (FILE:LINE)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CKAProbeError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (ValueError, RecursionError) as err:  # bad JSON, an integer of too many digits, deep nesting
        raise CKAProbeError(f"{where}: not a word-span record ({err})") from None
    if not isinstance(record, dict):
        raise CKAProbeError(f"{where}: not a word-span record (a JSON object per line)")
    missing = [key for key in ("id", "n_frames", "words") if key not in record]
    if missing:
        raise CKAProbeError(f"{where}: not a word-span record (no {missing[0]!r})")
    uid, n_frames = record["id"], record["n_frames"]
    if not isinstance(uid, str) or not uid:
        raise CKAProbeError(f"{where}: id must be a non-empty string, not {uid!r}")
    if not _is_index(n_frames) or n_frames < 1:
        raise CKAProbeError(
            f"{where}: utterance {uid}: n_frames must be a positive whole number, not {n_frames!r}"
        )
    if not isinstance(record["words"], list):
        raise CKAProbeError(f"{where}: utterance {uid}: words must be a list, not {record['words']!r}")
    return record


def _check_word(word: Any, k: int, record: dict[str, Any], where: str) -> None:
    """Raise unless word ``k`` of ``record`` spans whole frames ``0 <= start < end <= n_frames`` and has
    string text fields; the error names ``where`` (FILE:LINE), the utterance and the word."""
    at = f"{where}: utterance {record['id']}, word {k}"
    if not isinstance(word, dict):
        raise CKAProbeError(f"{at}: must be a JSON object, not {word!r}")
    for key in ("start", "end"):
        if not _is_index(word.get(key)):
            raise CKAProbeError(f"{at}: {key} must be a whole frame index, not {word.get(key)!r}")
    start, end, n_frames = word["start"], word["end"], record["n_frames"]
    if not 0 <= start < end <= n_frames:
        raise CKAProbeError(
            f"{where}: a word span lies outside the utterance's frames: utterance {record['id']}, word {k} "
            f"covers [{start}, {end}) of {n_frames}"
        )
    if word.get("op") not in SPAN_OPS:
        raise CKAProbeError(f"{at}: op must be one of {', '.join(SPAN_OPS)}, not {word.get('op')!r}")
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
            uid = record["id"]
            if uid in lines:
                raise CKAProbeError(f"{where}: utterance {uid} again, first on line {lines[uid]}")
            records[uid], lines[uid] = record, line_no
    return records
