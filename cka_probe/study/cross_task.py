"""The paper's cross-task comparison set, with bootstrap intervals and permutation p-values.

For each language, three models (roles, :mod:`cka_probe.study.roles`) are
compared layer by layer with linear CKA (Kornblith et al. 2019), or with any
measure of :mod:`cka_probe.measures.registry` (``measure=``; the table's
``measure`` column names it, ``value`` holds it, and a distance counts smaller
as more similar in the p-values):

* encoder: SSO–MSO, DO–SSO, DO–MSO
* decoder: SSO–MSO, SDO–MDO, SSO–SDO, MSO–MDO, MSO–SDO, SSO–MDO

Rows are utterances: each layer is represented by its per-utterance mean
(the paper's utterance-level comparison), so decoders that read different
token sequences (surface vs meaning targets) are still comparable. For every
comparison the full L_a × L_b matrix is reported; its diagonal (layer i vs
layer i) is :func:`diagonal`.

Uncertainty over utterances: a bootstrap interval from resampling utterances
with replacement (the same resamples for every comparison of a language and
every seed), tie-corrected; with the debiased estimator (the default) its
percentile interval covers the population CKA at the nominal level in
simulation (``benchmarks/bench_coverage.py``), with the biased one the basic
interval is used and is not calibrated where d is not small against n
(another measure: its percentile interval, recomputed on each resample).
A one-sided permutation p-value for "more similar than unrelated
representations" comes from shuffling the utterances of the second model
(Phipson & Smyth 2010), with the mean CKA under that shuffling (``null_mean``:
the chance level at this n and width, ≈ d/(n+d) for the biased estimator, ≈ 0
for the debiased one); ``p_adj`` is Benjamini–Hochberg-adjusted over the
cells of one comparison (:mod:`cka_probe.inference.adjust`). All of it is seeded.

Seeds and reference levels: with several seed replicates per role
(:mod:`cka_probe.study.roles`), replicate k of each role forms the k-th
set; every cell is reported per seed (``seed`` = k) and pooled (``seed`` =
``all``: the mean over seeds, with the seed mean's utterance draws plus a
Student-t seed part, :func:`cka_probe.inference.seeds.pooled_draws`). The reference comparisons are
the seed-to-seed ceiling ``SSO-SSO'`` (SSO replicate j against j + 1) and the
random-initialisation floor ``SSO-RAND`` (SSO against an untrained model of
its architecture), for the encoder and the surface decoder, where those
models exist.

Structured variants (roles named after the variant, :mod:`cka_probe.study.roles`)
extend the set where their stores are present (:func:`variant_comparisons`):
each encoder stream V/s of variant V (``encoder`` named ``V``, a task stream
``encoder/branch/surface`` named ``V/branch/surface``) against the SSO and MSO
encoders (``V-SSO``, ``V-MSO``, ``V/branch/surface-SSO``, …), and its decoders
against the SO decoders (``SSO-V/surface``, ``MSO-V/meaning``, ``MSO-V/surface``,
``SSO-V/meaning``), with the same resamples, intervals and adjustment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cka_probe.errors import CKAProbeError
from cka_probe.inference.adjust import benjamini_hochberg
from cka_probe.inference.resample_measures import ResampledMeasure
from cka_probe.inference.resampling import bootstrap_draws, keyed_rng, permutations
from cka_probe.inference.seeds import pooled_draws
from cka_probe.measures import gram_resample
from cka_probe.measures.registry import GRAM_SPACE, Layers
from cka_probe.ranks import split_over_ranks
from cka_probe.study.load import load_representations
from cka_probe.study.roles import FLOOR, ROLE_STREAMS, ROLES, is_variant
from cka_probe.study.schema import CEILING, COLUMNS, FLOOR_NAME, POOLED, VALUE


@dataclass(frozen=True)
class Comparison:
    """One comparison of the set: layers of ``stream_a`` in model ``role_a`` against ``stream_b`` in
    ``role_b``."""

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
REFERENCES: tuple[Comparison, ...] = (
    _encoder(CEILING, "sso", "sso"),
    _decoder(CEILING, SSO, SSO),
    _encoder(FLOOR_NAME, "sso", FLOOR),
    _decoder(FLOOR_NAME, SSO, (FLOOR, "surface")),
)


def variant_comparisons(roles: Sequence[str], streams: Mapping[str, Sequence[str]]) -> tuple[Comparison, ...]:
    """The comparisons of each variant role in ``roles``, whose streams (``streams[role]``) are its
    store's."""
    out = []
    for role in (r for r in roles if is_variant(r)):
        for stream in (s for s in streams[role] if s.startswith("encoder")):
            label = role + stream.removeprefix("encoder")
            out += [
                Comparison(f"{label}-{other.upper()}", "encoder", role, stream, other, "encoder")
                for other in ("sso", "mso")
            ]
        out += [
            _decoder(f"{so.upper()}-{role}/{task}", (so, own), (role, task))
            for task in ("surface", "meaning")
            for so, own in (SSO, MSO)
            if f"decoder/{task}" in streams[role]
        ]
    return tuple(out)


# Representations of one language: role -> stream -> layer -> (n, d) per-utterance means, rows aligned;
# or role -> [that mapping per seed replicate].
Representations = Mapping[str, Mapping[str, Mapping[str, np.ndarray]] | Sequence]


@dataclass
class CrossTaskResult:
    """Tidy table of one language, the resampling statistics of its measure (their interval serves the
    differences of its draws) and, per (part, comparison), the pooled bootstrap draws (R, L_a, L_b), the
    per-seed draws (K, R, L_a, L_b) and the per-seed estimates (K, L_a, L_b)."""

    table: pd.DataFrame
    statistics: ResampledMeasure
    draws: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    seed_draws: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    seed_estimates: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def resamples(n: int, count: int, *, seed: int, language: str, replace: bool) -> list[np.ndarray]:
    """``count`` seeded index vectors (n,): bootstrap draws (``replace``) or permutations.

    The seed mixes ``seed`` and the language, so each language's resamples do
    not depend on which other languages are analysed.
    """
    rng = keyed_rng(seed, language, int(replace))
    return list(bootstrap_draws(rng, n, count)) if replace else permutations(rng, n, count)


def _replicates(reps: Representations, language: str) -> dict[str, list]:
    """role -> [streams of each seed replicate]; a single mapping is one replicate."""
    out = {role: [models] if isinstance(models, Mapping) else list(models) for role, models in reps.items()}
    for role in ROLES:
        if not out.get(role):
            raise CKAProbeError(f"language {language!r}: no {role.upper()} model")
    return out


def _layer_sets(
    reps: Representations, language: str, stats: ResampledMeasure
) -> dict[tuple[str, str], list[Layers]]:
    """The layers held for resampling (``stats.layers``) of every seed replicate per (role, stream) that
    the comparisons need."""
    sets = {}
    for role, replicates in _replicates(reps, language).items():
        for stream in ROLE_STREAMS[role] if not is_variant(role) else replicates[0]:
            for k, streams in enumerate(replicates):
                layers = streams.get(stream)
                if not layers:
                    raise CKAProbeError(
                        f"language {language!r}: the {role.upper()} model has no {stream!r} layers"
                    )
                source = f"{language}/{role}{f' seed {k}' if k else ''}/{stream}/"
                sets.setdefault((role, stream), []).append(stats.layers(layers, source=source))
    if len({s.n for group in sets.values() for s in group}) > 1:
        raise CKAProbeError(f"language {language!r}: the models cover different numbers of utterances")
    return sets


def _pairs(comp: Comparison, sets: dict) -> list[tuple[Layers, Layers]]:
    """The (a, b) pairs a comparison pools: replicate k of both roles, SSO j vs j + 1 (ceiling), SSO k vs
    RAND."""
    a, b = sets.get((comp.role_a, comp.stream_a), []), sets.get((comp.role_b, comp.stream_b), [])
    if comp.name == CEILING:
        return list(zip(a, a[1:]))
    if comp.role_b == FLOOR:
        return [(x, b[0]) for x in a[: _seeds(sets)]] if b else []
    return list(zip(a, b))[: _seeds(sets)]


def _seeds(sets: dict) -> int:
    """K: the number of complete replicates (every role of the comparison set)."""
    return min(len(group) for (role, _), group in sets.items() if role in ROLES)


def _rows(comp: Comparison, a: Layers, b: Layers, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tidy rows (one per layer pair) of one comparison from its (L_a, L_b) statistics."""
    ia, ib = np.meshgrid(np.arange(len(a.names)), np.arange(len(b.names)), indexing="ij")
    return pd.DataFrame(
        {
            "part": comp.part,
            "comparison": comp.name,
            "stream": comp.stream_a,
            "stream_b": comp.stream_b,
            "layer_a": np.asarray(a.names)[ia.ravel()],
            "layer_b": np.asarray(b.names)[ib.ravel()],
            "index_a": ia.ravel(),
            "index_b": ib.ravel(),
            **{
                key: value.ravel() if isinstance(value, np.ndarray) else value for key, value in stats.items()
            },
        }
    )


def _cell_stats(
    value: np.ndarray, draws: np.ndarray, null: np.ndarray, level: float, stats: ResampledMeasure
) -> dict:
    """Interval, permutation p (raw and BH-adjusted over the cells) and chance level of one (L_a, L_b)
    grid of values, from its draws (R, L_a, L_b) and null (R', L_a, L_b)."""
    missing = np.full(value.shape, np.nan)  # n_boot or n_perm = 0: no interval, no p-value
    low, high = stats.interval(draws, value, level) if len(draws) else (missing, missing)
    p = stats.permutation_pvalue(value, null) if len(null) else missing
    return {
        VALUE: value,
        "ci_low": low,
        "ci_high": high,
        "p": p,
        "p_adj": benjamini_hochberg(p),
        "null_mean": null.mean(axis=0) if len(null) else missing,
    }


def _comparison(
    comp: Comparison,
    pairs: list,
    grids: list[tuple[np.ndarray, np.ndarray]],
    level: float,
    key: str,
    stats: ResampledMeasure,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Per-seed and pooled rows of one comparison from each pair's bootstrap and permutation grids
    ((R, L_a, L_b) each); the pooled draws, per-seed draws and estimates."""
    values = np.stack([stats.point_estimate(a, b) for a, b in pairs])
    draws, nulls = np.stack([d for d, _ in grids]), np.stack([z for _, z in grids])
    frames = [
        _rows(comp, *pairs[0], {"seed": str(k), "seeds": 1, **_cell_stats(v, d, z, level, stats)})
        for k, (v, d, z) in enumerate(zip(values, draws, nulls))
    ]
    pooled = pooled_draws(draws, values, key=key) if draws.shape[1] else draws[0]
    cells = _cell_stats(values.mean(axis=0), pooled, nulls.mean(axis=0), level, stats)
    frames.append(_rows(comp, *pairs[0], {"seed": POOLED, "seeds": len(pairs), **cells}))
    return pd.concat(frames, ignore_index=True), pooled, draws, values


FLOAT32_FROM = 500
"""Utterances from which the tables hold linear CKA's Grams and compute its resampled products in float32
by default: there the products are most of a study's time and float32 halves it and the memory, within 1e-6
of float64; below, float64 costs seconds and keeps exact invariances (a model against a rotated copy of
itself has intervals of exactly 1, not within 1e-6 of 1)."""


def _resampled(
    pairs: list[tuple[Layers, Layers]], boots: list, perms: list, stats: ResampledMeasure, dtype: torch.dtype
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Bootstrap and permutation grids (R, L_a, L_b) of the pairs of one batch. Linear CKA's Gram sets go
    through :func:`~cka_probe.measures.gram_resample.bootstrap_grids` and
    :func:`~cka_probe.measures.gram_resample.permuted_grids` together (their Grams and products in
    ``dtype``), so that each side's Grams and terms are computed once and shared by every pair of the
    batch using it; any other measure is recomputed per pair. Under ``torchrun`` each rank computes its
    block of the resamples and every rank gets all of them (:func:`~cka_probe.ranks.split_over_ranks`)."""
    if stats.resampling is not GRAM_SPACE:
        boot = lambda block: [stats.bootstrap(a, b, block) for a, b in pairs]
        perm = lambda block: [stats.permuted(a, b, block) for a, b in pairs]
    else:
        options = {"dtype": dtype, "held": gram_resample.held_grams(pairs, dtype), **stats.options}
        boot = lambda block: gram_resample.bootstrap_grids(pairs, block, **options)
        perm = lambda block: gram_resample.permuted_grids(pairs, block, **options)
    return split_over_ranks(boots, boot), split_over_ranks(perms, perm)


def _batched(
    compared: list[tuple[Comparison, list]],
    boots: list,
    perms: list,
    stats: ResampledMeasure,
    dtype: torch.dtype,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bootstrap, permutation) grids of every pair of ``compared``, in order, computed one batch at a time:
    the k-th pair of every comparison of one part (encoder or decoder), so that only one seed
    replicate's Grams of one part are held at once (docs/resampled-statistics.md, "Memory")."""
    keys = [(k, comp.part) for comp, pairs in compared for k in range(len(pairs))]
    flat = [pair for _, pairs in compared for pair in pairs]
    out: list = [None] * len(flat)
    for key in dict.fromkeys(keys):
        members = [i for i, k in enumerate(keys) if k == key]
        grids = _resampled([flat[i] for i in members], boots, perms, stats, dtype)
        for i, pair_grids in zip(members, zip(*grids)):
            out[i] = pair_grids
    return out


def cross_task_arrays(
    reps: Representations,
    *,
    language: str,
    n_boot: int = 200,
    n_perm: int = 200,
    level: float = 0.95,
    debiased: bool = True,
    seed: int = 0,
    progress: bool = True,
    measure: str = "cka",
    dtype: torch.dtype | None = None,
) -> CrossTaskResult:
    """The comparison set of one language from per-utterance representations.

    ``reps[role][stream][layer]`` is an (n, d) array (role ``sso``/``mso``/``do``,
    optionally ``rand``; stream ``encoder`` or ``decoder/<task>``), or
    ``reps[role]`` a list of such mappings, one per seed replicate; row i of
    every array is the same utterance. Returns the tidy table (columns
    :data:`COLUMNS`) and the bootstrap draws, which
    :func:`cka_probe.study.cross_lang.language_differences` uses.
    ``measure``: a measure of :mod:`cka_probe.measures.registry`, "cka" (linear CKA) by
    default; the table names it in ``measure`` and holds its values in ``value``,
    ``estimator`` is "debiased"/"biased" for CKA and the measure's name otherwise;
    intervals and p-values are those of
    :class:`~cka_probe.inference.resample_measures.ResampledMeasure`.
    ``dtype``: the dtype of linear CKA's held Grams and resampled products (the triangle GEMMs; sums and
    accumulation are float64, docs/resampled-statistics.md, "Precision"); by default float32 from
    :data:`FLOAT32_FROM` utterances (within 1e-6 of float64), float64 below. Point estimates are float64
    either way.
    """
    stats = ResampledMeasure(measure, debiased=debiased)
    sets = _layer_sets(reps, language, stats)
    n = next(iter(sets.values()))[0].n
    dtype = dtype or (torch.float32 if n >= FLOAT32_FROM else torch.float64)
    boots = resamples(n, n_boot, seed=seed, language=language, replace=True)
    perms = resamples(n, n_perm, seed=seed, language=language, replace=False)
    result, frames = CrossTaskResult(pd.DataFrame(), stats), []
    variants = variant_comparisons(list(reps), {role: _replicates(reps, language)[role][0] for role in reps})
    compared = [
        (comp, pairs) for comp in COMPARISONS + REFERENCES + variants if (pairs := _pairs(comp, sets))
    ]
    grids = iter(_batched(compared, boots, perms, stats, dtype))
    for comp, pairs in tqdm(compared, desc=f"cross-task {language}", disable=None if progress else True):
        key = f"{language}/{comp.part}/{comp.name}"
        own = [next(grids) for _ in pairs]
        rows, pooled, draws, values = _comparison(comp, pairs, own, level, key, stats)
        frames.append(rows)
        result.draws[comp.part, comp.name] = pooled
        result.seed_draws[comp.part, comp.name], result.seed_estimates[comp.part, comp.name] = draws, values
    table = pd.concat(frames, ignore_index=True).assign(
        language=language,
        n=n,
        measure=measure,
        estimator=stats.estimator,
        kernel=stats.kernel,
        pooling="mean",
    )
    result.table = table[list(COLUMNS)]
    return result


def cross_task_by_language(
    stores: Sequence[str | Path], *, allow_different_manifests: bool = False, **options
) -> dict[str, CrossTaskResult]:
    """:func:`cross_task_arrays` for every language found in ``stores`` (files or folders of ``.h5``).

    ``options`` are those of :func:`cross_task_arrays` except ``language``; ``allow_different_manifests``
    compares stores whose provenance does not show that their shared ids name the same utterances
    (:func:`~cka_probe.study.load.load_representations`).
    """
    reps = load_representations(stores, allow_different_manifests=allow_different_manifests)
    return {language: cross_task_arrays(r, language=language, **options) for language, r in reps.items()}


def cross_task(stores: Sequence[str | Path], **options) -> pd.DataFrame:
    """The tidy cross-task table (columns :data:`COLUMNS`) of every language in ``stores``."""
    results = cross_task_by_language(stores, **options)
    return pd.concat([result.table for result in results.values()], ignore_index=True)
