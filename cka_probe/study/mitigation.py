"""Mitigation: whether a structured DO variant keeps the tasks apart and closes the surface gap.

Two tables per variant V (:mod:`cka_probe.asr.variants.spec`) and language:

* :func:`mitigation_cer`: V's corpus CER per task against the SO model of
  that task (V − SO) and against plain DO (V − DO), with the paired bootstrap
  interval over utterances of :mod:`cka_probe.study.cer` (the same resamples
  as DO − SO, basic interval, BH over the rows of one seed), per seed and pooled.
* :func:`mitigation_lean`: for each task t, how much more the encoder path
  that t's decoder reads resembles t's own SO encoder than the other task's,
  at the top layers (the representation the decoder reads):

      own_t(M) = CKA(M_t, SO_t) − CKA(M_t, SO_other)

  with M_t the top layer of V's task stream ``encoder/<kind>/t`` (or of the
  shared encoder for plain DO, where both tasks read the same layer), and
  the change own_t(V) − own_t(DO): positive = V's task path is less pulled
  toward the other task than DO's shared encoder (reduced entanglement).
  All four CKA values share the utterance resamples of the comparison set
  (:mod:`cka_probe.study.cross_task`), so the difference of the draws is
  the bootstrap distribution of the change; the interval is that of the
  measure and estimator (:func:`cka_probe.study.summary.interval_of`).

The report (:func:`cka_probe.study.report.mitigation_section`) turns the pooled
rows into a verdict with the rules of the rest of the analysis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.inference.effects import effect_rows
from cka_probe.study.cer import gap_table, read_cer_csvs
from cka_probe.study.cross_task import CrossTaskResult
from cka_probe.study.schema import EFFECT_COLUMNS
from cka_probe.study.summary import interval_of

VARIANT_FILE = re.compile(r"(split-\d+|shared-private|sparse-shared)(-s\d+)?")
"""The stem of a variant's evaluate CSV in a run (``cer/<lang>/split-2-s1.csv``)."""

CER_COLUMNS = (
    "language",
    "variant",
    "task",
    "unit",
    "reference",
    "seed",
    "seeds",
    "n",
    "reference_cer",
    "variant_cer",
    "gap",
    *EFFECT_COLUMNS,
)
LEAN_COLUMNS = (
    "language",
    "variant",
    "task",
    "stream",
    "seed",
    "seeds",
    "own_variant",
    "own_do",
    "change",
    *EFFECT_COLUMNS,
    "n",
)
OTHER = {"surface": ("SSO", "MSO"), "meaning": ("MSO", "SSO")}
"""task -> (its own SO encoder, the other task's)."""


def split_variant_csvs(paths: Sequence[str | Path]) -> tuple[list[Path], dict[str, list[Path]]]:
    """The evaluate CSVs of SO and plain DO models, and those of each variant (by file name)."""
    plain, variants = [], {}
    for path in map(Path, paths):
        match = VARIANT_FILE.fullmatch(path.stem)
        (variants.setdefault(match.group(1), []) if match else plain).append(path)
    return plain, variants


def mitigation_cer(
    plain: Sequence[str | Path],
    variants: Mapping[str, Sequence[str | Path]],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per variant, language and task: V − SO and V − DO corpus CER (columns :data:`CER_COLUMNS`)."""
    frame, frames = read_cer_csvs(plain), []
    for variant, paths in variants.items():
        mine = read_cer_csvs(paths)
        for reference, rows in (
            ("SO", frame[frame.model == "SO"]),
            ("DO", frame[frame.model == "DO"].assign(model="SO")),
        ):
            table = gap_table(pd.concat([rows, mine], ignore_index=True), False, n_boot, level, seed)
            frames.append(
                table.rename(columns={"so_cer": "reference_cer", "do_cer": "variant_cer"}).assign(
                    variant=variant, reference=reference
                )
            )
    return (
        pd.concat(frames, ignore_index=True)[list(CER_COLUMNS)]
        if frames
        else pd.DataFrame(columns=CER_COLUMNS)
    )


def task_paths(result: CrossTaskResult) -> dict[tuple[str, str], str]:
    """``{(variant, task): label}`` of each variant's task streams in the comparison set
    (``split-2/branch/surface``)."""
    paths = {}
    for part, name in result.seed_estimates:
        label = name.removesuffix("-SSO")
        if part == "encoder" and label != name and "/" in label:
            paths[label.split("/")[0], label.split("/")[-1]] = label
    return paths


def _top(result: CrossTaskResult, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed estimates (k,) and draws (k, R) of a comparison's top layer pair."""
    return result.seed_estimates["encoder", name][:k, -1, -1], result.seed_draws["encoder", name][
        :k, :, -1, -1
    ]


def _own(result: CrossTaskResult, label: str, task: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """own_t = CKA(label, own SO) − CKA(label, other SO) at the top layers: estimates (k,), draws (k, R)."""
    own, other = (_top(result, f"{label}-{so}", k) for so in OTHER[task])
    return own[0] - other[0], own[1] - other[1]


def mitigation_lean(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language, variant and task: own_t(V), own_t(DO) and their change (columns :data:`LEAN_COLUMNS`)."""
    frames = []
    for language, result in results.items():
        for (variant, task), label in task_paths(result).items():
            k = min(
                len(result.seed_estimates["encoder", f"{label}-SSO"]),
                len(result.seed_estimates["encoder", "DO-SSO"]),
            )
            (mine, mine_draws), (do, do_draws) = _own(result, label, task, k), _own(result, "DO", task, k)
            rows = effect_rows(
                (mine - do)[:, None],
                (mine_draws - do_draws)[:, :, None],
                interval=interval_of(result, level),
                key=f"{language}/mitigation/{label}",
            )
            rows["own_variant"] = np.append(mine, mine.mean())
            rows["own_do"] = np.append(do, do.mean())
            frames.append(
                rows.rename(columns={"estimate": "change"}).assign(
                    language=language,
                    variant=variant,
                    task=task,
                    stream="encoder" + label.removeprefix(variant),
                    n=int(result.table["n"].iloc[0]),
                )
            )
    return (
        pd.concat(frames, ignore_index=True)[list(LEAN_COLUMNS)]
        if frames
        else pd.DataFrame(columns=LEAN_COLUMNS)
    )
