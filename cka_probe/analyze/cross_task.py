"""The paper's cross-task comparison set, with bootstrap intervals and permutation p-values.

For each language, three models (roles, :mod:`cka_probe.analyze.roles`) are
compared layer by layer with linear CKA (Kornblith et al. 2019):

* encoder: SSO–MSO, DO–SSO, DO–MSO
* decoder: SSO–MSO, SDO–MDO, SSO–SDO, MSO–MDO, MSO–SDO, SSO–MDO

Rows are utterances: each layer is represented by its per-utterance mean
(the paper's utterance-level comparison), so decoders that read different
token sequences (surface vs meaning targets) are still comparable. For every
comparison the full L_a × L_b matrix is reported; its diagonal (layer i vs
layer i) is :func:`diagonal`.

Uncertainty over utterances: a percentile bootstrap interval (Efron &
Tibshirani 1993) from resampling utterances with replacement (the same
resamples for every comparison of a language), and a one-sided permutation
p-value for "more similar than unrelated representations" from shuffling the
utterances of the second model (Phipson & Smyth 2010), with the mean CKA under
that shuffling (``null_mean``: the level that chance alone gives at this n and
width, ≈ d/(n+d) for the biased estimator). All of it is seeded.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cka_probe.cka import resample
from cka_probe.cka.resample_measure import MeasureStatistics
from cka_probe.analyze.load import load_representations
from cka_probe.analyze.roles import ROLE_STREAMS
from cka_probe.errors import CKAProbeError


@dataclass(frozen=True)
class Comparison:
    """One comparison of the set: layers of ``stream_a`` in model ``role_a`` against ``stream_b`` in ``role_b``."""

    name: str
    part: str
    role_a: str
    stream_a: str
    role_b: str
    stream_b: str


def _encoder(name: str, role_a: str, role_b: str) -> Comparison:
    return Comparison(name, "encoder", role_a, "encoder", role_b, "encoder")


def _decoder(name: str, a: tuple[str, str], b: tuple[str, str]) -> Comparison:
    return Comparison(name, "decoder", a[0], f"decoder/{a[1]}", b[0], f"decoder/{b[1]}")


SSO, MSO = ("sso", "surface"), ("mso", "meaning")
SDO, MDO = ("do", "surface"), ("do", "meaning")

COMPARISONS: tuple[Comparison, ...] = (
    _encoder("SSO-MSO", "sso", "mso"),
    _encoder("DO-SSO", "do", "sso"),
    _encoder("DO-MSO", "do", "mso"),
    _decoder("SSO-MSO", SSO, MSO),
    _decoder("SDO-MDO", SDO, MDO),
    _decoder("SSO-SDO", SSO, SDO),
    _decoder("MSO-MDO", MSO, MDO),
    _decoder("MSO-SDO", MSO, SDO),
    _decoder("SSO-MDO", SSO, MDO),
)

COLUMNS: tuple[str, ...] = (
    "language", "part", "comparison", "stream", "stream_b", "layer_a", "layer_b", "index_a", "index_b",
    "cka", "ci_low", "ci_high", "p", "null_mean", "n", "estimator", "kernel", "pooling",
)  # fmt: skip

# Representations of one language: role -> stream -> layer -> (n, d) per-utterance means, rows aligned.
Representations = Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]


@dataclass
class CrossTaskResult:
    """Tidy table of one language plus the bootstrap draws (R, L_a, L_b) per (part, comparison)."""

    table: pd.DataFrame
    draws: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def resamples(n: int, count: int, *, seed: int, language: str, replace: bool) -> list[np.ndarray]:
    """``count`` seeded index vectors (n,): bootstrap draws (``replace``) or permutations.

    The seed mixes ``seed`` and the language, so each language's resamples do
    not depend on which other languages are analysed.
    """
    rng = np.random.default_rng([seed, zlib.crc32(language.encode()), int(replace)])
    return [rng.integers(0, n, n) if replace else rng.permutation(n) for _ in range(count)]


def _gram_sets(reps: Representations, language: str, stats=resample) -> dict[tuple[str, str], resample.GramSet]:
    """One :class:`~resample.GramSet` per (role, stream) that the comparison set needs."""
    sets = {}
    for role, streams in ROLE_STREAMS.items():
        for stream in streams:
            layers = reps.get(role, {}).get(stream)
            if not layers:
                raise CKAProbeError(f"language {language!r}: the {role.upper()} model has no {stream!r} layers")
            sets[role, stream] = stats.GramSet(layers, source=f"{language}/{role}/{stream}/")
    if len({s.n for s in sets.values()}) > 1:
        raise CKAProbeError(f"language {language!r}: the models cover different numbers of utterances")
    return sets


def _rows(comp: Comparison, a: resample.GramSet, b: resample.GramSet, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tidy rows (one per layer pair) of one comparison from its (L_a, L_b) statistics."""
    ia, ib = np.meshgrid(np.arange(len(a.names)), np.arange(len(b.names)), indexing="ij")
    return pd.DataFrame({
        "part": comp.part, "comparison": comp.name, "stream": comp.stream_a, "stream_b": comp.stream_b,
        "layer_a": np.asarray(a.names)[ia.ravel()], "layer_b": np.asarray(b.names)[ib.ravel()],
        "index_a": ia.ravel(), "index_b": ib.ravel(),
        **{key: value.ravel() for key, value in stats.items()},
    })  # fmt: skip


def cross_task_arrays(
    reps: Representations,
    *,
    language: str,
    n_boot: int = 200,
    n_perm: int = 200,
    level: float = 0.95,
    debiased: bool = False,
    seed: int = 0,
    progress: bool = True,
    measure: str = "cka",
) -> CrossTaskResult:
    """The comparison set of one language from per-utterance representations.

    ``reps[role][stream][layer]`` is an (n, d) array (role ``sso``/``mso``/``do``,
    stream ``encoder`` or ``decoder/<task>``); row i of every array is the same
    utterance. Returns the tidy table (columns :data:`COLUMNS`) and the
    bootstrap draws, which :func:`cka_probe.analyze.cross_lang.language_differences` uses.
    ``measure``: "cka" (linear CKA) or another measure of :mod:`cka_probe.cka.similarity`
    (its value fills the ``cka`` column; ``estimator`` names it).
    """
    stats = resample if measure == "cka" else MeasureStatistics(measure)
    sets = _gram_sets(reps, language, stats)
    n = next(iter(sets.values())).n
    boots = resamples(n, n_boot, seed=seed, language=language, replace=True)
    perms = resamples(n, n_perm, seed=seed, language=language, replace=False)
    result, frames = CrossTaskResult(pd.DataFrame()), []
    for comp in tqdm(COMPARISONS, desc=f"cross-task {language}", disable=not progress):
        a, b = sets[comp.role_a, comp.stream_a], sets[comp.role_b, comp.stream_b]
        cka = stats.point_estimate(a, b, debiased=debiased)
        missing = np.full(cka.shape, np.nan)  # n_boot or n_perm = 0: no interval, no p-value
        draws = stats.bootstrap(a, b, boots, debiased=debiased)
        low, high = resample.percentile_interval(draws, level) if n_boot else (missing, missing)
        null = stats.permuted(a, b, perms, debiased=debiased)
        p = stats.permutation_pvalue(cka, null) if n_perm else missing
        chance = null.mean(axis=0) if n_perm else missing
        frames.append(_rows(comp, a, b, {"cka": cka, "ci_low": low, "ci_high": high, "p": p, "null_mean": chance}))
        result.draws[comp.part, comp.name] = draws
    table = pd.concat(frames, ignore_index=True)
    table["language"], table["n"], table["kernel"], table["pooling"] = language, n, "linear" if measure == "cka" else "-", "mean"
    table["estimator"] = measure if measure != "cka" else "debiased" if debiased else "biased"
    result.table = table[list(COLUMNS)]
    return result


def cross_task_by_language(stores: Sequence[str | Path], **options) -> dict[str, CrossTaskResult]:
    """:func:`cross_task_arrays` for every language found in ``stores`` (files or folders of ``.h5``).

    ``options`` are those of :func:`cross_task_arrays` except ``language``.
    """
    reps = load_representations(stores)
    return {language: cross_task_arrays(r, language=language, **options) for language, r in reps.items()}


def cross_task(stores: Sequence[str | Path], **options) -> pd.DataFrame:
    """The tidy cross-task table (columns :data:`COLUMNS`) of every language in ``stores``."""
    results = cross_task_by_language(stores, **options)
    return pd.concat([result.table for result in results.values()], ignore_index=True)


def diagonal(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with layer i against layer i (``index_a == index_b``) of a cross-task table."""
    return table[table["index_a"] == table["index_b"]].reset_index(drop=True)
