"""SO vs DO character error rates, and the DO−SO gap per surface–meaning edit-distance bin.

Inputs are the per-utterance CSVs of ``cka-probe evaluate`` (one row per
utterance and task; columns in docs/interfaces.md). A CSV with rows of both
tasks comes from a dual-output (DO) model, one with a single task from a
single-output (SO) model. SO and DO are paired by (language, task, utterance id).

Corpus CER = 100 · Σ errors / Σ reference length. The gap DO − SO (in CER
points; positive = multi-task learning made that task worse) is a ratio of
sums over n utterances, near normal. Its interval is Student's t on the paired
bootstrap's standard error (the same resampled utterances for both models):
gap ± t_{n−1} · √(n/(n−1)) · sd*(gap*), with the matching two-sided t p-value,
BH-adjusted over the rows of one seed (``cer.csv``) or over the bins of one
language, task and unit (``cer_gaps.csv``). In ``benchmarks/bench_coverage.py``
(per-utterance errors as skewed as the ``tiny`` run's bins and beyond, n = 50–400)
it covered the population gap at 93.0–95.6 %, where the basic interval fell
to 91.6 % at n = 50.

Seed replicates: an evaluate CSV whose name ends in ``-s<k>`` (``sso-s1.csv``)
belongs to seed replicate k, others to replicate 0; SO and DO of one replicate
are paired, and each row is reported per seed and pooled over the seeds that
have both: the mean over seeds, with an interval from the seeds' spread
(K − 1 df) and the utterance variance they share (n − 1 df)
(:func:`cka_probe.inference.seeds.crossed_parts`; Banerjee's interval). The oracle CER scores one reference
transcript against
the other (Σ surface–meaning edit distance / Σ reference length): the error a
model would make by writing the other task's transcript.

Bins are the paper's (0, 1–3, 4–10, >10 characters between the surface and
the meaning transcript). Korean rows are scored in characters (syllables) and,
as ``unit = jamo``, in jamo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.inference.adjust import benjamini_hochberg
from cka_probe.inference.effects import student_rows
from cka_probe.inference.resampling import bootstrap_draws, keyed_rng
from cka_probe.study.schema import EFFECT_COLUMNS
from cka_probe.text.cer import ED_BINS

REQUIRED = ("id", "language", "task", "errors", "ref_len", "surface_meaning_ed", "ed_bin")
UNITS = {"char": ("errors", "ref_len"), "jamo": ("jamo_errors", "jamo_ref_len")}
SEED_GAP_COLUMNS = ("seed", "seeds", "n", "so_cer", "do_cer", "gap", *EFFECT_COLUMNS)
"""The columns after a group's keys (language, task, then unit or word set) of the :func:`_gap_rows` rows,
with their ``p_adj`` and without the oracle CER."""
GAP_COLUMNS = ("language", "task", "unit", *SEED_GAP_COLUMNS, "oracle_cer")


def _read(path: Path) -> pd.DataFrame:
    """One evaluate CSV with its model kind (``SO``/``DO``) and source file."""
    frame = pd.read_csv(path, dtype={"id": str, "ed_bin": str}, keep_default_na=False, na_values=[""])
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise CKAProbeError(f"{path}: not an evaluate CSV (missing columns {missing})")
    if frame.empty:
        raise CKAProbeError(f"{path}: no rows")
    replicate = re.search(r"-s(\d+)$", path.stem)
    return frame.assign(
        model="DO" if frame["task"].nunique() > 1 else "SO",
        source=str(path),
        replicate=int(replicate.group(1)) if replicate else 0,
    )


def read_cer_csvs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """All rows of the evaluate CSVs; one SO and one DO file per (language, task)."""
    frame = pd.concat([_read(Path(p)) for p in paths], ignore_index=True)
    sources = frame.drop_duplicates(["language", "task", "model", "replicate", "source"])
    twice = sources[sources.duplicated(["language", "task", "model", "replicate"], keep=False)]
    if not twice.empty:
        row = twice.iloc[0]
        raise CKAProbeError(
            f"two {row.model} results for {row.language}/{row.task}: {sorted(twice.source.unique())}"
        )
    return frame


def paired(frame: pd.DataFrame, language: str, task: str, replicate: int = 0) -> pd.DataFrame:
    """SO and DO rows of one language, task and seed replicate joined by utterance id (suffixes ``_so``,
    ``_do``)."""
    rows = frame[
        (frame["language"] == language) & (frame["task"] == task) & (frame["replicate"] == replicate)
    ]
    so, do = rows[rows["model"] == "SO"], rows[rows["model"] == "DO"]
    if so.empty or do.empty:
        raise CKAProbeError(
            f"{language}/{task}: need both an SO and a DO result, have {sorted(rows.model.unique())}"
        )
    both = so.merge(do, on="id", suffixes=("_so", "_do"))
    if both.empty:
        raise CKAProbeError(f"{language}/{task}: the SO and DO results share no utterance ids")
    return both


def paired_replicates(frame: pd.DataFrame, language: str, task: str) -> list[int]:
    """The seed replicates with both an SO and a DO result (e.g. not the ceiling's second SSO); all when none
    has."""
    rows = frame[(frame["language"] == language) & (frame["task"] == task)]
    so, do = (set(rows.loc[rows["model"] == m, "replicate"]) for m in ("SO", "DO"))
    return sorted(so & do) or sorted(so | do)


def paired_seeds(frame: pd.DataFrame, language: str, task: str) -> list[pd.DataFrame]:
    """:func:`paired` rows of every replicate in :func:`paired_replicates`, restricted to the utterances
    all of them have and sorted by id, so that one bootstrap index is the same utterance for every seed."""
    both = [paired(frame, language, task, k) for k in paired_replicates(frame, language, task)]
    common = set.intersection(*(set(b["id"]) for b in both))
    return [b[b["id"].isin(common)].sort_values("id", kind="stable", ignore_index=True) for b in both]


def gap_draws(
    e_so: np.ndarray, e_do: np.ndarray, length: np.ndarray, rng: np.random.Generator, n_boot: int
) -> np.ndarray:
    """Paired bootstrap draws (R,) of the gap 100 · Σ(e_DO − e_SO) / Σ length over utterances (n,)."""
    idx = bootstrap_draws(rng, len(length), n_boot)  # (R, n)
    return 100 * (e_do[idx].sum(1) - e_so[idx].sum(1)) / length[idx].sum(1)


def _gap(both: pd.DataFrame, unit: str, rng: np.random.Generator, n_boot: int) -> dict:
    """Corpus CERs, the DO−SO gap and its paired bootstrap draws (R,), and the oracle CER of one seed."""
    errors, ref_len = UNITS[unit]
    e_so, e_do = both[f"{errors}_so"].to_numpy(float), both[f"{errors}_do"].to_numpy(float)
    length = both[f"{ref_len}_so"].to_numpy(float)
    so, do = 100 * e_so.sum() / length.sum(), 100 * e_do.sum() / length.sum()
    oracle = 100 * both["surface_meaning_ed_so"].sum() / both["ref_len_so"].sum()
    return {
        "n": len(both),
        "so_cer": so,
        "do_cer": do,
        "gap": do - so,
        "draws": gap_draws(e_so, e_do, length, rng, n_boot),
        "oracle_cer": oracle,
    }


def _gap_rows(seeds: list[dict], level: float) -> list[dict]:
    """One row per seed and the pooled row (means over seeds; Student-t intervals, :func:`student_rows`)."""
    effects = student_rows(
        np.array([[s["gap"]] for s in seeds]),
        np.stack([s["draws"][:, None] for s in seeds]),
        n=min(s["n"] for s in seeds),
        level=level,
    )
    rows = []
    for (_, effect), values in zip(effects.iterrows(), [*seeds, None]):
        values = values or {
            k: np.mean([s[k] for s in seeds]) for k in ("n", "so_cer", "do_cer", "oracle_cer")
        }
        rows.append(
            {
                "seed": effect.seed,
                "seeds": effect.seeds,
                "n": int(values["n"]),
                "so_cer": values["so_cer"],
                "do_cer": values["do_cer"],
                "gap": effect.estimate,
                "ci_low": effect.ci_low,
                "ci_high": effect.ci_high,
                "p": effect.p,
                "seeds_agree": effect.seeds_agree,
                "oracle_cer": values["oracle_cer"],
            }
        )
    return rows


def _units(both: pd.DataFrame) -> list[str]:
    """``char``, and ``jamo`` where the rows carry jamo counts (Korean)."""
    has_jamo = "jamo_errors_so" in both and both["jamo_errors_so"].notna().all()
    return ["char", "jamo"] if has_jamo else ["char"]


def gap_table(frame: pd.DataFrame, by_bin: bool, n_boot: int, level: float, seed: int) -> pd.DataFrame:
    """The gap rows of evaluate rows ``frame`` (as :func:`read_cer_csvs` gives), per bin when ``by_bin``."""
    rows = []
    for language, task in frame[["language", "task"]].drop_duplicates().itertuples(index=False):
        both = paired_seeds(frame, language, task)
        for bin_name in ED_BINS if by_bin else ["all"]:
            groups = [b[b["ed_bin_so"] == bin_name] if by_bin else b for b in both]
            if not all(len(g) for g in groups):
                continue
            for unit in _units(groups[0]):
                seeds = [
                    _gap(g, unit, keyed_rng(seed, language, task, bin_name, unit), n_boot) for g in groups
                ]
                rows += [
                    {"language": language, "task": task, "ed_bin": bin_name, "unit": unit, **row}
                    for row in _gap_rows(seeds, level)
                ]
    columns = list(GAP_COLUMNS[:3]) + ["ed_bin"] * by_bin + list(GAP_COLUMNS[3:])
    table = pd.DataFrame(rows)
    family = ["language", "task", "unit", "seed"] if by_bin else ["seed"]
    table["p_adj"] = table.groupby(family, sort=False)["p"].transform(benjamini_hochberg)
    return table[columns].sort_values(["language", "task", "unit"], kind="stable", ignore_index=True)


def cer_table(
    cer_csvs: Sequence[str | Path], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """SO vs DO corpus CER per language and task: columns :data:`GAP_COLUMNS`."""
    return gap_table(read_cer_csvs(cer_csvs), False, n_boot, level, seed)


def cer_gaps(
    cer_csvs: Sequence[str | Path], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """The DO−SO CER gap per language, task and edit-distance bin (bins without utterances are left out)."""
    return gap_table(read_cer_csvs(cer_csvs), True, n_boot, level, seed)


def cer_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of SO vs DO CER per language, task and unit (pooled over seeds), with the gap's
    interval."""
    lines = [
        "| language | task | unit | seeds | n | SO CER % | DO CER % | DO − SO [95% CI] | p | p (BH) "
        "| oracle CER % |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table[table["seed"].astype(str) == "all"].itertuples(index=False):
        gap = f"{r.gap:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        lines.append(
            f"| {r.language} | {r.task} | {r.unit} | {r.seeds} | {r.n} | {r.so_cer:.2f} | {r.do_cer:.2f} | "
            f"{gap} | {r.p:.3f} | {r.p_adj:.3f} | {r.oracle_cer:.2f} |"
        )
    return "\n".join(lines) + "\n"
