"""All analysis tables of a run, written as CSV (and the CER table as Markdown) into one folder.

* ``cross_task.csv``: every layer pair of every comparison and language
  (:data:`~cka_probe.study.schema.COLUMNS`)
* ``cross_lang.csv``: per-layer differences between languages (with two or more languages)
* ``encoder_entanglement.csv``, ``decoder_departure.csv``: the entanglement summary
* ``reference_gaps.csv``: comparisons against the seed-to-seed ceiling and the random-initialisation floor
* ``cer.csv``, ``cer.md``, ``cer_gaps.csv``: SO vs DO CER, and the gap per edit-distance bin
* ``mitigation_cer.csv``, ``mitigation_lean.csv``: structured variants: CER against SO and DO, task-path
  lean against DO's (:mod:`~cka_probe.study.mitigation`)
* ``defences.csv``: the headline encoder cells' CKA without each side's top principal directions, the
  share of CKA those directions carry, and the angular Procrustes check of the lean
  (:mod:`~cka_probe.study.defences`)
* ``word_cross_task.csv``, ``word_lean.csv``, ``word_cer.csv``: with ``word_level``, encoder CKA on
  divergent vs identical words, the lean per word set, the CER gap per word set
  (:mod:`~cka_probe.study.word_cross_task`)
* ``word_probes.csv``, ``word_probe_differences.csv``: with ``word_level``, the said-versus-meant probes
  of every model's encoder layers and their differences (:mod:`~cka_probe.study.word_probes`)
* ``manifests.json``: with ``allow_different_manifests``, each store's manifest and its sha256, the record
  that stores of different manifests were compared by utterance id

No table may replace an input (a store or an evaluate CSV): that is refused before anything is computed.
Each file is written to a temporary name and renamed, so a table that exists is complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cka_probe.atomic import atomic_write_text
from cka_probe.compare.provenance import manifest_record
from cka_probe.paths import refuse_input_as_output
from cka_probe.ranks import world
from cka_probe.store import ActivationStore
from cka_probe.study.cer import cer_gaps, cer_markdown, cer_table
from cka_probe.study.cross_lang import language_differences
from cka_probe.study.cross_task import cross_task_by_language
from cka_probe.study.defences import defence_table
from cka_probe.study.load import store_paths
from cka_probe.study.mitigation import mitigation_cer, mitigation_lean, split_variant_csvs
from cka_probe.study.summary import decoder_departure, encoder_entanglement, reference_gaps

OUTPUTS = (
    "cross_task.csv",
    "cross_lang.csv",
    "encoder_entanglement.csv",
    "decoder_departure.csv",
    "reference_gaps.csv",
    "mitigation_lean.csv",
    "cer.csv",
    "cer.md",
    "cer_gaps.csv",
    "mitigation_cer.csv",
    "word_cross_task.csv",
    "word_lean.csv",
    "word_cer.csv",
    "word_probes.csv",
    "word_probe_differences.csv",
    "defences.csv",
    "manifests.json",
)
"""Every file :func:`write_tables` may write into its folder."""


def refuse_inputs_as_tables(out: Path, stores: Sequence[str | Path], cer_csvs: Sequence[str | Path]) -> None:
    """Raise if ``out`` or any file ``write_tables`` may write into it is one of its input stores or CSVs."""
    inputs = [*store_paths(stores), *cer_csvs]
    for target in (out, *(out / name for name in OUTPUTS)):
        refuse_input_as_output(target, inputs, option="--tables")


def manifests_json(stores: Sequence[str | Path]) -> str:
    """The record of a run that compared stores of different manifests: each store's manifest and sha256."""
    records = {}
    for path in store_paths(stores):
        with ActivationStore(path) as store:
            records[str(path)] = manifest_record(store)
    return json.dumps({"allow_different_manifests": True, "stores": records}, indent=2) + "\n"


def _write(text: str, path: Path) -> Path:
    return atomic_write_text(path, text, point="tables")


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """``table`` as CSV at ``path`` (temporary file + rename)."""
    return _write(table.to_csv(index=False), path)


def write_tables(
    stores: Sequence[str | Path],
    cer_csvs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    n_boot: int = 200,
    n_perm: int = 200,
    level: float = 0.95,
    debiased: bool = True,
    seed: int = 0,
    cross_lang: bool | None = None,
    progress: bool = True,
    word_level: bool = False,
    spans: Mapping[str, str | Path] | None = None,
    probes: bool = True,
    measure: str = "cka",
    allow_different_manifests: bool = False,
) -> dict[str, Path]:
    """Run the cross-task, cross-language, summary and CER analyses and write their tables.

    ``measure``: the similarity measure of the cross-task table (default linear CKA).
    ``cross_lang``: None writes the differences between languages when the
    stores hold two or more; True requires them; False leaves them out.
    Stores and evaluate CSVs of structured variants add the mitigation tables;
    ``word_level`` adds the word-level ones and the probes, on the word spans of ``spans`` (language ->
    a TextGrid folder, a CTM or a JSON Lines file) or else of the SSO store's sidecar; ``probes=False``
    leaves the probes out (they need the manifests the stores record, for the meaning words).
    ``allow_different_manifests`` compares stores whose provenance does not show that their shared ids
    name the same utterances (:mod:`cka_probe.compare.provenance`), and writes ``manifests.json``.
    Under ``torchrun`` the ranks split the cross-task resamples and rank 0 alone writes (the others return
    no paths).
    """
    out = Path(out_dir)
    refuse_inputs_as_tables(out, stores, cer_csvs)
    results = cross_task_by_language(
        stores,
        n_boot=n_boot,
        n_perm=n_perm,
        level=level,
        debiased=debiased,
        seed=seed,
        progress=progress,
        measure=measure,
        allow_different_manifests=allow_different_manifests,
    )
    tables = {
        "cross_task": pd.concat([r.table for r in results.values()], ignore_index=True),
        "encoder_entanglement": encoder_entanglement(results, level=level),
        "decoder_departure": decoder_departure(results, level=level),
        "reference_gaps": reference_gaps(results, level=level),
        "defences": defence_table(
            stores, debiased=debiased, allow_different_manifests=allow_different_manifests
        ),
    }
    if cross_lang or (cross_lang is None and len(results) > 1):
        tables["cross_lang"] = language_differences(results, level=level)
    lean = mitigation_lean(results, level=level)  # empty without variant stores
    tables |= {"mitigation_lean": lean} if len(lean) else {}
    cer_csvs, variant_csvs = split_variant_csvs(cer_csvs)
    if cer_csvs:
        tables["cer"] = cer_table(cer_csvs, level=level, seed=seed)
        tables["cer_gaps"] = cer_gaps(cer_csvs, level=level, seed=seed)
    if cer_csvs and variant_csvs:
        tables["mitigation_cer"] = mitigation_cer(cer_csvs, variant_csvs, level=level, seed=seed)
    if word_level:
        from cka_probe.study.word_cross_task import word_tables
        from cka_probe.study.word_probes import word_probe_tables

        tables |= word_tables(
            stores,
            cer_csvs,
            n_boot=n_boot,
            level=level,
            debiased=debiased,
            seed=seed,
            spans=spans,
            allow_different_manifests=allow_different_manifests,
        )
        if probes:
            tables |= word_probe_tables(stores, spans=spans, n_boot=n_boot, seed=seed, level=level)
    if world()[0] != 0:  # under torchrun, rank 0 alone writes
        return {}
    out.mkdir(parents=True, exist_ok=True)
    written = {name: write_csv(table, out / f"{name}.csv") for name, table in tables.items()}
    if "cer" in tables:
        written["cer_md"] = _write(cer_markdown(tables["cer"]), out / "cer.md")
    if allow_different_manifests:
        written["manifests"] = _write(manifests_json(stores), out / "manifests.json")
    return written
