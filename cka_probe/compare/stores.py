"""Layer-by-layer CKA (or any registered measure) between two activation stores, aligned by utterance id.

``pool="mean"`` compares per-utterance means (n = utterances);
``pool="frames"`` compares row by row (n = frames or tokens), which requires
the same number of rows for every utterance in both stores; ``pool="words"``
compares word-level means of encoder streams (n = words, optionally only the
divergent or identical ones; :mod:`cka_probe.compare.words`). Linear CKA on
frames streams both stores from disk chunk by chunk into the engine's exact
accumulator (sums of XᵀX, YᵀY, XᵀY in float64; Kornblith et al. 2019, Eq. 3),
so that no layer has to fit in memory; other kernels load the frames.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cka_probe.compare.provenance import check_same_utterances
from cka_probe.compare.words import (
    MIN_SAMPLES,
    compare_words,
    row_mismatch,
    sidecar_for,
)
from cka_probe.errors import CKAProbeError
from cka_probe.measures import StreamingLinearCKA
from cka_probe.measures.similarity import options_of, similarity_matrix
from cka_probe.store import ActivationStore, align_ids

CHUNK_ELEMENTS = 1 << 25
"""Rows per streamed chunk are chosen so that all layers' chunks hold about this many values."""


def _open(store: str | Path | ActivationStore, stack: ExitStack) -> ActivationStore:
    return store if isinstance(store, ActivationStore) else stack.enter_context(ActivationStore(store))


def check_enough_utterances(a: ActivationStore, b: ActivationStore, ids: list[str]) -> None:
    """Per-utterance means need at least :data:`MIN_SAMPLES` shared utterances, else an error naming both."""
    if len(ids) < MIN_SAMPLES:
        raise CKAProbeError(
            f"{a.path} and {b.path} share {len(ids)} utterance id(s) ({', '.join(ids)}); comparing "
            f"per-utterance means needs at least {MIN_SAMPLES}: compare stores of the same utterances"
        )


def check_equal_rows(
    a: ActivationStore, stream_a: str, b: ActivationStore, stream_b: str, ids: list[str]
) -> np.ndarray:
    """Rows per utterance ``(N,)``, the same in every layer of both streams, else an error naming one."""
    first = a.layers(stream_a)[0]
    counts = a.row_counts(stream_a, first, ids)
    for store, stream in ((a, stream_a), (b, stream_b)):
        if (mismatch := row_mismatch(store, stream, ids, counts)) is not None:
            layer, i, rows = mismatch
            raise CKAProbeError(
                f"pool=frames needs equal rows per utterance: utterance {ids[i]} has "
                f"{counts[i]} rows in {a.path} {stream_a}/{first} but {rows} in "
                f"{store.path} {stream}/{layer}; use pool=mean"
            )
    return counts


def streamed_linear_cka(
    a: ActivationStore,
    stream_a: str,
    b: ActivationStore,
    stream_b: str,
    ids: list[str],
    *,
    debiased: bool = False,
    device=None,
    dtype=None,
    chunk_rows: int | None = None,
) -> pd.DataFrame:
    """Exact linear CKA over all rows, read from both stores in lockstep chunks."""
    layers_a, layers_b = a.layers(stream_a), b.layers(stream_b)
    width = sum(a.dim(stream_a, x) for x in layers_a) + sum(b.dim(stream_b, y) for y in layers_b)
    chunk_rows = chunk_rows or max(1024, CHUNK_ELEMENTS // width)
    total = int(a.row_counts(stream_a, layers_a[0], ids).sum())
    acc = StreamingLinearCKA(layers_a, layers_b, debiased=debiased, device=device, dtype=dtype)
    readers = [a.iter_frames(stream_a, x, ids, chunk_rows) for x in layers_a] + [
        b.iter_frames(stream_b, y, ids, chunk_rows) for y in layers_b
    ]
    with tqdm(total=total, unit="row", desc="linear CKA", leave=False, disable=None) as bar:
        for chunks in zip(*readers):
            acc.update(dict(zip(layers_a, chunks)), dict(zip(layers_b, chunks[len(layers_a) :])))
            bar.update(len(chunks[0]))
    return acc.result()


def compare_stores(
    a: str | Path | ActivationStore,
    b: str | Path | ActivationStore,
    *,
    stream: str = "encoder",
    stream_b: str | None = None,
    pool: str = "mean",
    kernel: str = "linear",
    sigma: float = 0.8,
    debiased: bool = False,
    device=None,
    dtype=None,
    words: str = "all",
    word_spans: str | Path | None = None,
    measure: str = "cka",
    allow_different_manifests: bool = False,
    **measure_options,
) -> pd.DataFrame:
    """CKA (or the registered ``measure``, see ``similarity_matrix``; pool mean or frames) of every layer
    of ``a``'s ``stream`` against every layer of ``b``'s ``stream_b``.

    The measure takes those of ``kernel``, ``sigma``, ``debiased``, ``device``,
    ``dtype`` that are among its options, and ``measure_options``.

    ``dtype``: the engine's working dtype (default: its policy, float32 for
    float32 stores; ``"float64"`` for the last digits).
    Rows = layers of ``a``, columns = layers of ``b`` (as ``cka_matrix``);
    ``attrs`` add the stores, streams, pooling and the number of utterances.
    ``pool="words"`` reads the word spans from ``word_spans`` (default: the
    ``.words.jsonl`` sidecar of ``a``, else of ``b``) and keeps ``words``
    (``divergent`` | ``identical`` | ``all``).

    The stores must hold the same utterances under their shared ids
    (:mod:`cka_probe.compare.provenance`); ``allow_different_manifests``
    compares stores whose provenance cannot show it, with a warning, and
    ``attrs["alignment"]`` records the verdict.
    """
    stream_b = stream_b or stream
    if pool not in ("mean", "frames", "words"):
        raise CKAProbeError(f"pool must be mean, frames or words, not {pool!r}")
    shared = dict(kernel=kernel, sigma=sigma, debiased=debiased, device=device, dtype=dtype)
    options = options_of(measure, shared) | measure_options
    with ExitStack() as stack:
        sa, sb = _open(a, stack), _open(b, stack)
        ids = align_ids(sa, sb)
        alignment = check_same_utterances(sa, sb, ids, allow_different_manifests=allow_different_manifests)
        layers_a, layers_b = sa.layers(stream), sb.layers(stream_b)
        if pool == "mean":
            check_enough_utterances(sa, sb, ids)
        if pool == "words":
            from cka_probe.extract.word_spans import read_word_spans

            if measure != "cka":
                raise CKAProbeError(f"pool=words supports measure cka only, not {measure}")
            sidecar = sidecar_for(sa, sb, word_spans)
            records = read_word_spans(sidecar)
            table = compare_words(
                sa,
                stream,
                sb,
                stream_b,
                ids,
                records,
                words=words,
                kernel=kernel,
                sigma=sigma,
                debiased=debiased,
                device=device,
                dtype=dtype,
            )
        elif pool == "mean":
            table = similarity_matrix(
                {x: sa.means(stream, x, ids) for x in layers_a},
                {y: sb.means(stream_b, y, ids) for y in layers_b},
                measure=measure,
                **options,
            )
        elif kernel == "linear" and measure == "cka":
            check_equal_rows(sa, stream, sb, stream_b, ids)
            table = streamed_linear_cka(
                sa, stream, sb, stream_b, ids, debiased=debiased, device=device, dtype=dtype
            )
        else:
            check_equal_rows(sa, stream, sb, stream_b, ids)
            table = similarity_matrix(
                {x: sa.frames(stream, x, ids)[0] for x in layers_a},
                {y: sb.frames(stream_b, y, ids)[0] for y in layers_b},
                measure=measure,
                **options,
            )
        table.attrs.update(
            store_a=str(sa.path),
            store_b=str(sb.path),
            stream_a=stream,
            stream_b=stream_b,
            pool=pool,
            n_utterances=len(ids),
            alignment=alignment,
            allow_different_manifests=allow_different_manifests,
        )
    return table
