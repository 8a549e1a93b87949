"""Evaluate a bundled checkpoint on a manifest: per-utterance CER and corpus CER per task.

:func:`write_evaluation` scores hypotheses of any origin into the same two files
(:mod:`cka_probe.extract.models.transcribe` uses it for models that are not bundled).

The per-utterance table is long format, one row per (utterance, task), with the
columns fixed in docs/interfaces.md:

    id, language, task, decoding, ref, hyp, errors, ref_len, cer,
    [jamo_errors, jamo_ref_len, jamo_cer,]   (when the corpus has Korean)
    surface_meaning_ed, ed_bin

``cer`` is in percent; ``surface_meaning_ed`` is the character Levenshtein
distance between the utterance's two reference transcripts and ``ed_bin`` its
bin (0, 1-3, 4-10, >10). The sidecar ``<out>.summary.json`` holds, per task, the corpus
CER (errors summed over utterances / reference characters summed), the same
per edit-distance bin, and for Korean the jamo CER. Both files are written to
a temporary name and renamed, so a failed run leaves no half-written output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from cka_probe.asr.decode import transcribe
from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.paths import refuse_input_as_output
from cka_probe.text.cer import ED_BINS, char_errors, ed_bin, jamo, jamo_errors, normalize_text, percent


def evaluate(
    ckpt_path: str | Path,
    manifest: str | Path,
    out_csv: str | Path,
    *,
    decoding: str = "attention",
    beam: int = 1,
    device: str = "cpu",
    batch_size: int = 16,
    limit: int | None = None,
) -> pd.DataFrame:
    """Decode ``manifest`` with the checkpoint, write the per-utterance CSV and its summary JSON.

    ``decoding="attention"`` scores every task of the model (greedy for
    ``beam=1``, beam search otherwise); ``"ctc"`` scores the task that the CTC
    head was trained on. Returns the per-utterance table.
    """
    from cka_probe.asr.checkpoint import load_checkpoint

    check_arguments(
        ckpt_path, manifest, out_csv, decoding=decoding, beam=beam, batch_size=batch_size, limit=limit
    )
    model, ckpt = load_checkpoint(ckpt_path, device=device)
    tasks = (model.ctc_task,) if decoding == "ctc" else tuple(model.tasks)
    references = read_references(manifest)
    hyps = decode_manifest(
        model,
        ckpt,
        manifest,
        tasks,
        decoding=decoding,
        beam=beam,
        device=device,
        batch_size=batch_size,
        limit=limit,
    )
    info = {"checkpoint": str(ckpt_path), "manifest": str(manifest), "decoding": decoding, "beam": beam}
    return write_evaluation(references, hyps, out_csv, decoding=decoding, info=info)


def write_evaluation(
    references: dict[str, dict[str, Any]],
    hyps: dict[str, dict[str, str]],
    out_csv: str | Path,
    *,
    decoding: str,
    info: dict[str, Any],
    normalise: Callable[[str], str] = normalize_text,
) -> pd.DataFrame:
    """Score ``hyps`` (task -> id -> text) against ``references``, write the CSV and its summary JSON.

    The summary is the corpus CER per task (:func:`summarize`), then ``info`` (how the
    hypotheses were made), then ``n_utterances``. Returns the per-utterance table.
    """
    table = score(references, hyps, decoding, normalise)
    summary = summarize(table) | info | {"n_utterances": table["id"].nunique()}
    write_results(table, summary, Path(out_csv))
    return table


def check_arguments(
    ckpt_path: str | Path,
    manifest: str | Path,
    out_csv: str | Path,
    *,
    decoding: str,
    beam: int,
    batch_size: int,
    limit: int | None,
) -> None:
    """Refuse a bad decoding, beam, batch size or limit, and an output (CSV or summary) that is an input."""
    from cka_probe.asr.checkpoint import check_count

    if decoding not in ("attention", "ctc"):
        raise CKAProbeError(f"decoding must be 'attention' or 'ctc', not {decoding!r}")
    check_count(beam, "beam")
    check_count(batch_size, "batch_size")
    check_count(limit, "limit", optional=True)
    refuse_outputs(out_csv, [ckpt_path, manifest])


def refuse_outputs(out_csv: str | Path, inputs: Sequence[str | Path]) -> None:
    """Refuse an ``out_csv`` or summary JSON that is one of ``inputs``."""
    for out in (out_csv, summary_path_for(out_csv)):
        refuse_input_as_output(out, inputs)


def read_references(manifest: str | Path) -> dict[str, dict[str, Any]]:
    """id -> manifest record (``read_manifest`` checks each has both transcripts)."""
    from cka_probe.data.manifest import read_manifest

    return {record["id"]: record for record in read_manifest(manifest)}


def decode_manifest(
    model,
    ckpt: dict,
    manifest,
    tasks: tuple[str, ...],
    *,
    decoding: str,
    beam: int,
    device: str,
    batch_size: int,
    limit: int | None,
) -> dict[str, dict[str, str]]:
    """task -> utterance id -> hypothesis text, batch by batch with a progress bar on a terminal."""
    from cka_probe.asr.data import ManifestBatches

    hyps: dict[str, dict[str, str]] = {task: {} for task in tasks}
    for batch in tqdm(
        ManifestBatches(manifest, ckpt, batch_size, limit=limit), desc="decoding", unit="batch", disable=None
    ):
        texts = transcribe(
            model,
            ckpt["tokenizers"],
            batch["feats"].to(device),
            batch["feat_lens"].to(device),
            tasks,
            decoding=decoding,
            beam=beam,
        )
        for task in tasks:
            hyps[task].update(zip(batch["ids"], texts[task]))
    return hyps


def score(
    references: dict[str, dict[str, Any]],
    hyps: dict[str, dict[str, str]],
    decoding: str,
    normalise: Callable[[str], str] = normalize_text,
) -> pd.DataFrame:
    """The long per-utterance table (columns in the module docstring); ``normalise`` is applied to every
    reference and hypothesis before they are compared and written."""
    korean = any(r.get("language") == "ko" for r in references.values())
    rows = [
        _row(references[uid], task, hyp, decoding, korean, normalise)
        for task, by_id in hyps.items()
        for uid, hyp in by_id.items()
    ]
    return pd.DataFrame(rows)


def _row(
    record: dict[str, Any], task: str, hyp: str, decoding: str, korean: bool, normalise: Callable[[str], str]
) -> dict[str, Any]:
    ref, hyp = normalise(record[task]), normalise(hyp)
    row = {
        "id": record["id"],
        "language": record.get("language", ""),
        "task": task,
        "decoding": decoding,
        "ref": ref,
        "hyp": hyp,
        "errors": char_errors(ref, hyp),
        "ref_len": len(ref),
    }
    row["cer"] = percent(row["errors"], row["ref_len"])
    if korean:
        row |= {"jamo_errors": jamo_errors(ref, hyp), "jamo_ref_len": len(jamo(ref))}
        row["jamo_cer"] = percent(row["jamo_errors"], row["jamo_ref_len"])
    return row | _surface_meaning_distance(record)


def _surface_meaning_distance(record: dict[str, Any]) -> dict[str, Any]:
    """``surface_meaning_ed`` (characters) and its ``ed_bin`` for one utterance."""
    distance = char_errors(record["surface"], record["meaning"])
    return {"surface_meaning_ed": distance, "ed_bin": ed_bin(distance)}


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Corpus CER per task: overall, per edit-distance bin, and in jamo for Korean."""
    tasks = {}
    for task, rows in table.groupby("task", sort=False):
        entry = _corpus(rows, "errors", "ref_len", "cer")
        if "jamo_errors" in rows:
            entry |= _corpus(rows, "jamo_errors", "jamo_ref_len", "jamo_cer")
        binned = rows.groupby("ed_bin", sort=False)
        entry["by_ed_bin"] = {
            b: _corpus(binned.get_group(b), "errors", "ref_len", "cer") for b in ED_BINS if b in binned.groups
        }
        tasks[task] = entry
    return {"tasks": tasks}


def _corpus(rows: pd.DataFrame, errors: str, ref_len: str, name: str) -> dict[str, float | int]:
    """Summed errors, summed reference length and their ratio in percent."""
    e, n = int(rows[errors].sum()), int(rows[ref_len].sum())
    return {errors: e, ref_len: n, name: percent(e, n), "n_utterances": len(rows)}


def format_summary(summary: dict[str, Any]) -> str:
    """One line per task: corpus CER, and jamo CER for Korean."""
    lines = []
    for task, entry in summary["tasks"].items():
        line = f"{task:<8} CER {entry['cer']:6.2f}%  ({entry['n_utterances']} utterances)"
        if "jamo_cer" in entry:
            line += f"   jamo CER {entry['jamo_cer']:6.2f}%"
        lines.append(line)
    return "\n".join(lines)


def write_results(table: pd.DataFrame, summary: dict[str, Any], out_csv: Path) -> None:
    """Write ``out_csv`` and ``<out_csv>.summary.json`` via temporary files and renames."""
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    summary_path = summary_path_for(out_csv)
    atomic_write_text(out_csv, table.to_csv(index=False), point="evaluate")
    atomic_write_text(
        summary_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n", point="evaluate"
    )


def summary_path_for(out_csv: str | Path) -> Path:
    """``cer.csv`` -> ``cer.csv.summary.json``."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.name + ".summary.json")
