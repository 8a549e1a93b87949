"""The encoder comparisons of the cross-task set on word-level means, divergent vs identical words.

Each surface word of a language's word spans is one sample: the mean of its
encoder frames (:mod:`cka_probe.compare.word_pooling`). The spans are the SSO
store's sidecar (its CTC aligner's, written by ``reproduce --word-level``;
:mod:`cka_probe.extract.word_spans`) or any aligner's file (a TextGrid folder,
a CTM), and their times are mapped to each store's frames by that model's own
frame arithmetic (:func:`~cka_probe.compare.span_sources.frame_records`), so
the words of one language are the same samples in a bundled, Whisper or
wav2vec2 store. Words are split into ``divergent`` (surface ≠
meaning: substituted or inserted) and ``identical``; on each set the encoder
comparisons SSO-MSO, DO-SSO and DO-MSO get linear CKA layer by layer.

Intervals are grouped by utterance: a bootstrap resample draws utterances with
replacement and takes all their words, so words of one utterance (which share
speaker, sentence and context) are never treated as independent. The same
utterance resamples serve both word sets and every comparison, so

    concentration = lean(divergent) − lean(identical),  lean = CKA(DO, SSO) − CKA(DO, MSO)

has the difference of the draws as its bootstrap distribution; negative means
the DO encoder's pull toward MSO (away from SSO) is stronger on divergent
words. Copies of one word from a repeated utterance are ties, left out of the
HSIC sums as in :mod:`cka_probe.measures.gram_resample`; a resample with fewer than 4
words of a set (only possible with a handful of utterances) is drawn again.
Seeds: replicate k of each role, pooled as everywhere (:mod:`cka_probe.inference.effects`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.compare.span_sources import Records, frame_records, read_spans
from cka_probe.compare.words import check_frames, selected_spans, word_means
from cka_probe.errors import CKAProbeError
from cka_probe.inference import intervals
from cka_probe.inference.effects import effect_rows
from cka_probe.inference.resampling import bootstrap_draws, grouped_resamples, keyed_rng
from cka_probe.measures import gram_resample
from cka_probe.store import ActivationStore
from cka_probe.study.load import common_ids, store_paths
from cka_probe.study.roles import ROLES, assign_roles
from cka_probe.study.schema import EFFECT_COLUMNS, VALUE

SETS = ("divergent", "identical")
PAIRS = {"SSO-MSO": ("sso", "mso"), "DO-SSO": ("do", "sso"), "DO-MSO": ("do", "mso")}
CKA_COLUMNS = (
    "language",
    "words",
    "comparison",
    "seed",
    "seeds",
    "index",
    "layer",
    VALUE,
    "ci_low",
    "ci_high",
    "n_words",
    "n_utterances",
)
LEAN_COLUMNS = (
    "language",
    "seed",
    "seeds",
    "index",
    "layer",
    "lean_divergent",
    "lean_identical",
    "concentration",
    *EFFECT_COLUMNS,
    "n_utterances",
)


def utterance_draws(
    groupings: Sequence[Sequence[np.ndarray]],
    n_boot: int,
    rng: np.random.Generator,
    *,
    minimum: int = 4,
    tries: int = 1000,
) -> np.ndarray:
    """(n_boot, N) utterance resamples in each of which every grouping has at least ``minimum`` rows.

    A resample with fewer (possible only with a handful of utterances) is drawn again: CKA needs 4 rows.
    """
    sizes = np.array([[len(g) for g in groups] for groups in groupings])  # (sets, N)
    draws = bootstrap_draws(rng, sizes.shape[1], n_boot)
    for _ in range(tries):
        short = (sizes[:, draws].sum(axis=2) < minimum).any(axis=0)
        if not short.any():
            return draws
        draws[short] = bootstrap_draws(rng, sizes.shape[1], int(short.sum()))
    raise CKAProbeError(
        f"word level: fewer than {minimum} words of a set in most utterance resamples; "
        "too few utterances have words of both kinds"
    )


def grouped_bootstrap(
    a: gram_resample.GramSet, b: gram_resample.GramSet, indices: Sequence[np.ndarray], *, debiased: bool
) -> np.ndarray:
    """CKA (R, L_a, L_b) of each grouped resample (n = its own length; repeated rows are ties)."""
    grids = [
        gram_resample.cka_grid(
            a.terms(i, debiased=debiased), b.terms(i, debiased=debiased), len(i), debiased=debiased
        )
        for i in indices
    ]
    return np.stack(grids) if grids else np.empty((0, len(a.names), len(b.names)))


def _groups(spans: list[tuple[int, int, int]], n_utterances: int) -> list[np.ndarray]:
    """The word rows of each utterance (W_u,), from the ``(u, start, end)`` spans in order."""
    owner = np.array([u for u, _, _ in spans], dtype=int)
    return [np.flatnonzero(owner == u) for u in range(n_utterances)]


def language_spans(paths: list[Path], source: str | Path | None, manifest: str | None) -> Records:
    """The word spans of one language: read from ``source`` (any aligner's file,
    :func:`~cka_probe.compare.span_sources.read_spans`, matched to ``manifest``), else the sidecar of the
    first store (SSO first) that has one."""
    from cka_probe.extract.word_spans import sidecar_path

    if source is not None:
        return read_spans(source, manifest)
    found = [sidecar_path(p) for p in paths if sidecar_path(p).is_file()]
    if not found:
        raise CKAProbeError(
            f"word level: none of {[str(p) for p in paths]} has a word-span sidecar "
            "(extract with --word-spans, or give the language's word spans)"
        )
    return read_spans(found[0])


def _language(
    stores: dict[str, ActivationStore],
    roles: dict[str, list[str]],
    source: str | Path | None,
    *,
    allow_different_manifests: bool,
) -> dict:
    """``{set: (grams {(role, k): GramSet}, groups, n_words)}`` of one language's encoders, on the ids
    they share (:func:`~cka_probe.study.load.common_ids`), each store's words in its own frames."""
    sources = [s for role in ROLES for s in roles[role]]
    ids = common_ids([stores[s] for s in sources], allow_different_manifests=allow_different_manifests)
    records = language_spans([Path(s) for s in sources], source, stores[sources[0]].attrs.get("manifest"))
    framed = {s: frame_records(stores[s], records, ids) for s in sources}
    for s in sources:
        check_frames(stores[s], "encoder", ids, framed[s])
    out = {}
    for words in SETS:
        spans = {s: selected_spans(framed[s], ids, words) for s in sources}
        n_words = len(spans[sources[0]])
        if n_words < 4:
            raise CKAProbeError(
                f"word level: {n_words} {words} word(s) in {sources[0]}'s language; CKA needs 4"
            )
        grams = {
            (role, k): gram_resample.GramSet(
                word_means(stores[s], "encoder", ids, spans[s]), source=f"{s} {words} words/"
            )
            for role in ROLES
            for k, s in enumerate(roles[role])
        }
        out[words] = grams, _groups(spans[sources[0]], len(ids)), n_words
    return out


def _comparisons(grams: dict, boots: list[np.ndarray], seeds: int, debiased: bool) -> dict[str, tuple]:
    """``{name: (estimates (K, L), draws (K, R, L))}`` of the diagonal of each comparison."""
    out = {}
    for name, (ra, rb) in PAIRS.items():
        pairs = [(grams[ra, k], grams[rb, k]) for k in range(seeds)]
        estimates = np.stack(
            [np.diagonal(gram_resample.point_estimate(a, b, debiased=debiased)) for a, b in pairs]
        )
        draws = np.stack(
            [
                np.diagonal(grouped_bootstrap(a, b, boots, debiased=debiased), axis1=1, axis2=2)
                for a, b in pairs
            ]
        )
        out[name] = estimates, draws
    return out


def word_cross_task(
    stores: Sequence[str | Path],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    debiased: bool = True,
    seed: int = 0,
    spans: Mapping[str, str | Path] | None = None,
    allow_different_manifests: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The word-level CKA table (:data:`CKA_COLUMNS`) and the lean per word set (:data:`LEAN_COLUMNS`).

    ``spans`` maps a language to its word spans from any aligner (:func:`language_spans`; default the
    SSO store's sidecar), mapped to each store's frames by its own arithmetic.

    ``allow_different_manifests`` compares stores whose provenance does not show that their shared ids
    name the same utterances (:mod:`cka_probe.compare.provenance`), with a warning.
    """
    interval = lambda draws, estimate: intervals.cka_interval(draws, estimate, level, debiased=debiased)
    cka_frames, lean_frames = [], []
    with ExitStack() as stack:
        files = store_paths(stores)
        opened = {str(p): stack.enter_context(ActivationStore(p)) for p in files}
        for language, roles in assign_roles({s: st.attrs for s, st in opened.items()}).items():
            source = (spans or {}).get(language)
            sets = _language(opened, roles, source, allow_different_manifests=allow_different_manifests)
            n_utt, seeds = len(sets["divergent"][1]), min(len(roles[r]) for r in ROLES)
            rng = keyed_rng(seed, language, 2)
            draws = utterance_draws([groups for _, groups, _ in sets.values()], n_boot, rng)
            layers = opened[roles["do"][0]].layers("encoder")
            stats = {}
            for words, (grams, groups, n_words) in sets.items():
                stats[words] = _comparisons(grams, grouped_resamples(groups, draws), seeds, debiased)
                for name, (estimates, d) in stats[words].items():
                    rows = effect_rows(
                        estimates, d, interval=interval, key=f"{language}/words/{words}/{name}"
                    )
                    cka_frames.append(
                        rows.rename(columns={"estimate": VALUE}).assign(
                            language=language,
                            words=words,
                            comparison=name,
                            index=rows["cell"],
                            layer=np.asarray(layers)[rows["cell"]],
                            n_words=n_words,
                            n_utterances=n_utt,
                        )
                    )
            lean = {
                w: (s["DO-SSO"][0] - s["DO-MSO"][0], s["DO-SSO"][1] - s["DO-MSO"][1])
                for w, s in stats.items()
            }
            rows = effect_rows(
                lean["divergent"][0] - lean["identical"][0],
                lean["divergent"][1] - lean["identical"][1],
                interval=interval,
                key=f"{language}/words/concentration",
            )
            for words in SETS:
                rows[f"lean_{words}"] = np.concatenate([*lean[words][0], lean[words][0].mean(0)])
            lean_frames.append(
                rows.rename(columns={"estimate": "concentration"}).assign(
                    language=language,
                    index=rows["cell"],
                    layer=np.asarray(layers)[rows["cell"]],
                    n_utterances=n_utt,
                )
            )
    return (
        pd.concat(cka_frames, ignore_index=True)[list(CKA_COLUMNS)],
        pd.concat(lean_frames, ignore_index=True)[list(LEAN_COLUMNS)],
    )


def word_tables(
    stores: Sequence[str | Path],
    cer_csvs: Sequence[str | Path],
    *,
    allow_different_manifests: bool = False,
    **options,
) -> dict[str, pd.DataFrame]:
    """``word_cross_task``, ``word_lean`` and (with evaluate CSVs) ``word_cer`` for :func:`write_tables`.

    ``options`` are those of :func:`word_cross_task`; ``allow_different_manifests`` is passed on to it.
    """
    from cka_probe.study.word_cer import word_cer_gaps

    cka, lean = word_cross_task(stores, allow_different_manifests=allow_different_manifests, **options)
    tables = {"word_cross_task": cka, "word_lean": lean}
    if cer_csvs:
        tables["word_cer"] = word_cer_gaps(
            cer_csvs, level=options.get("level", 0.95), seed=options.get("seed", 0)
        )
    return tables
