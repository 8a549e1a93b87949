"""SO vs DO character error rates, and the DO−SO gap per surface–meaning edit-distance bin.

Inputs are the per-utterance CSVs of ``cka-probe evaluate`` (one row per
utterance and task; columns in docs/interfaces.md). A CSV with rows of both
tasks comes from a dual-output (DO) model, one with a single task from a
single-output (SO) model. SO and DO are paired by (language, task, utterance id).

Corpus CER = 100 · Σ errors / Σ reference length. The gap DO − SO (in CER
points; positive = multi-task learning made that task worse) gets a paired
percentile bootstrap interval over utterances (Efron & Tibshirani 1993,
§13.3; the same resampled utterances for both models) and a two-sided
bootstrap p-value. The oracle CER scores one reference transcript against
the other (Σ surface–meaning edit distance / Σ reference length): the error a
model would make by writing the other task's transcript.

Bins are the paper's (0, 1–3, 4–10, >10 characters between the surface and
the meaning transcript). Korean rows are scored in characters (syllables) and,
as ``unit = jamo``, in jamo.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.cka.resample import bootstrap_pvalue, percentile_interval
from cka_probe.asr.cer import ED_BINS
from cka_probe.errors import CKAProbeError

REQUIRED = ("id", "language", "task", "errors", "ref_len", "surface_meaning_ed", "ed_bin")
UNITS = {"char": ("errors", "ref_len"), "jamo": ("jamo_errors", "jamo_ref_len")}
GAP_COLUMNS = ("language", "task", "unit", "n", "so_cer", "do_cer", "gap", "ci_low", "ci_high", "p", "oracle_cer")


def _read(path: Path) -> pd.DataFrame:
    """One evaluate CSV with its model kind (``SO``/``DO``) and source file."""
    frame = pd.read_csv(path, dtype={"id": str, "ed_bin": str}, keep_default_na=False, na_values=[""])
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise CKAProbeError(f"{path}: not an evaluate CSV (missing columns {missing})")
    if frame.empty:
        raise CKAProbeError(f"{path}: no rows")
    return frame.assign(model="DO" if frame["task"].nunique() > 1 else "SO", source=str(path))


def read_cer_csvs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """All rows of the evaluate CSVs; one SO and one DO file per (language, task)."""
    frame = pd.concat([_read(Path(p)) for p in paths], ignore_index=True)
    sources = frame.drop_duplicates(["language", "task", "model", "source"])
    twice = sources[sources.duplicated(["language", "task", "model"], keep=False)]
    if not twice.empty:
        row = twice.iloc[0]
        raise CKAProbeError(f"two {row.model} results for {row.language}/{row.task}: {sorted(twice.source.unique())}")
    return frame


def paired(frame: pd.DataFrame, language: str, task: str) -> pd.DataFrame:
    """SO and DO rows of one language and task joined by utterance id (suffixes ``_so``, ``_do``)."""
    rows = frame[(frame["language"] == language) & (frame["task"] == task)]
    so, do = rows[rows["model"] == "SO"], rows[rows["model"] == "DO"]
    if so.empty or do.empty:
        raise CKAProbeError(f"{language}/{task}: need both an SO and a DO result, have {sorted(rows.model.unique())}")
    both = so.merge(do, on="id", suffixes=("_so", "_do"))
    if both.empty:
        raise CKAProbeError(f"{language}/{task}: the SO and DO results share no utterance ids")
    return both


def _gap_row(both: pd.DataFrame, unit: str, rng: np.random.Generator, n_boot: int, level: float) -> dict:
    """Corpus CERs, the DO−SO gap with its paired bootstrap interval and p, and the oracle CER."""
    errors, ref_len = UNITS[unit]
    e_so, e_do = both[f"{errors}_so"].to_numpy(float), both[f"{errors}_do"].to_numpy(float)
    length = both[f"{ref_len}_so"].to_numpy(float)
    so, do = 100 * e_so.sum() / length.sum(), 100 * e_do.sum() / length.sum()
    idx = rng.integers(0, len(both), (n_boot, len(both)))
    draws = 100 * (e_do[idx].sum(1) - e_so[idx].sum(1)) / length[idx].sum(1)
    low, high = percentile_interval(draws, level) if n_boot else (np.nan, np.nan)
    oracle = 100 * both["surface_meaning_ed_so"].sum() / both["ref_len_so"].sum()
    return {"unit": unit, "n": len(both), "so_cer": so, "do_cer": do, "gap": do - so, "ci_low": low,
            "ci_high": high, "p": bootstrap_pvalue(draws) if n_boot else np.nan, "oracle_cer": oracle}  # fmt: skip


def _rng(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the row's key, independent of which other rows exist."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in key)])


def _units(both: pd.DataFrame) -> list[str]:
    """``char``, and ``jamo`` where the rows carry jamo counts (Korean)."""
    has_jamo = "jamo_errors_so" in both and both["jamo_errors_so"].notna().all()
    return ["char", "jamo"] if has_jamo else ["char"]


def _table(frame: pd.DataFrame, by_bin: bool, n_boot: int, level: float, seed: int) -> pd.DataFrame:
    rows = []
    for language, task in frame[["language", "task"]].drop_duplicates().itertuples(index=False):
        both = paired(frame, language, task)
        groups = [(b, both[both["ed_bin_so"] == b]) for b in ED_BINS] if by_bin else [("all", both)]
        for bin_name, group in groups:
            for unit in _units(both) if len(group) else []:
                rng = _rng(seed, language, task, bin_name, unit)
                rows.append({"language": language, "task": task, "ed_bin": bin_name,
                             **_gap_row(group, unit, rng, n_boot, level)})  # fmt: skip
    columns = list(GAP_COLUMNS[:3]) + ["ed_bin"] * by_bin + list(GAP_COLUMNS[3:])
    return pd.DataFrame(rows)[columns].sort_values(["language", "task", "unit"], kind="stable", ignore_index=True)


def cer_table(cer_csvs: Sequence[str | Path], *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """SO vs DO corpus CER per language and task: columns :data:`GAP_COLUMNS`."""
    return _table(read_cer_csvs(cer_csvs), False, n_boot, level, seed)


def cer_gaps(cer_csvs: Sequence[str | Path], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The DO−SO CER gap per language, task and edit-distance bin (bins without utterances are left out)."""
    return _table(read_cer_csvs(cer_csvs), True, n_boot, level, seed)


def cer_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of SO vs DO CER per language, task and unit, with the gap's interval and the oracle."""
    lines = ["| language | task | unit | n | SO CER % | DO CER % | DO − SO [95% CI] | p | oracle CER % |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in table.itertuples(index=False):
        gap = f"{r.gap:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        lines.append(f"| {r.language} | {r.task} | {r.unit} | {r.n} | {r.so_cer:.2f} | {r.do_cer:.2f} | {gap} | "
                     f"{r.p:.3f} | {r.oracle_cer:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"
