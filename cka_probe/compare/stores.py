"""Layer-by-layer CKA (or any registered measure) between two activation stores, aligned by utterance id.

``pool="mean"`` compares per-utterance means (n = utterances);
``pool="frames"`` compares row by row (n = frames or tokens), which requires
the same number of rows for every utterance in both stores; ``pool="words"``
compares word-level means of encoder streams (n = words, optionally only the
divergent or identical ones; :mod:`cka_probe.compare.words`). Linear CKA on
frames streams both stores from disk chunk by chunk into the engine's exact
accumulator (sums of XᵀX, YᵀY, XᵀY in float64; Kornblith et al. 2019, Eq. 3),
so that no layer has to fit in memory; other kernels load the frames.

Under ``torchrun`` (several ranks, :mod:`cka_probe.ranks`) linear CKA with
``pool="frames"`` is split: rank r streams the r-th contiguous block of the
shared utterances into its own accumulator, the ranks all-reduce the float64
sums, and every rank returns the table of all rows. So is ``pool="mean"`` where
one process also sums in feature space (more utterances than the widest
layer); with fewer, every rank computes the one-process table of the means.
Every other measure, kernel or pooling needs all rows in one process and is
refused there.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from cka_probe.measures.matrix import in_feature_space
from cka_probe.measures.moments import REFERENCE_ROWS
from cka_probe.measures.similarity import options_of, record_measure, similarity_matrix
from cka_probe.ranks import backend, process_group, rank_device, shard_bounds, world
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


def layer_rows(
    store: ActivationStore, stream: str, ids: list[str], pool: str, chunk_rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """Every layer's rows of ``ids`` in lockstep chunks ``{layer: (c, d_layer)}``: the frames, ``chunk_rows``
    a chunk, or with ``pool="mean"`` the per-utterance means ``(len(ids), d_layer)`` in one chunk."""
    layers = store.layers(stream)
    if pool == "mean":
        yield {x: store.means(stream, x, ids) for x in layers}
        return
    for chunks in zip(*(store.iter_frames(stream, x, ids, chunk_rows) for x in layers)):
        yield dict(zip(layers, chunks))


def first_rows(store: ActivationStore, stream: str, ids: list[str], pool: str) -> dict[str, np.ndarray]:
    """The first ``REFERENCE_ROWS`` rows (at most) of every layer of ``ids``: the reference the streamed sums
    are shifted by, the same on every rank."""
    return next(layer_rows(store, stream, ids[:REFERENCE_ROWS], pool, REFERENCE_ROWS))


def streamed_linear_cka(
    a: ActivationStore,
    stream_a: str,
    b: ActivationStore,
    stream_b: str,
    ids: list[str],
    *,
    pool: str = "frames",
    debiased: bool = False,
    device=None,
    dtype=None,
    chunk_rows: int | None = None,
) -> pd.DataFrame:
    """Exact linear CKA over all rows of ``ids`` (``pool``: frames, or per-utterance means), read from both
    stores in lockstep chunks.

    Every layer is shifted by the mean of its first rows (``first_rows``).
    Under ``torchrun`` this rank reads only its block of ``ids``
    (``shard_bounds``) and the ranks all-reduce their sums (gloo, or NCCL on a
    CUDA ``device``), so every rank returns the table of all rows.
    """
    rank, size = world()
    if len(ids) < size:
        raise CKAProbeError(
            f"{a.path} and {b.path} share {len(ids)} utterance id(s), too few to split among {size} ranks"
        )
    layers_a, layers_b = a.layers(stream_a), b.layers(stream_b)
    width = sum(a.dim(stream_a, x) for x in layers_a) + sum(b.dim(stream_b, y) for y in layers_b)
    chunk_rows = chunk_rows or max(1024, CHUNK_ELEMENTS // width)
    mine = ids[slice(*shard_bounds(len(ids), rank, size))]
    total = len(mine) if pool == "mean" else int(a.row_counts(stream_a, layers_a[0], mine).sum())
    acc = StreamingLinearCKA(layers_a, layers_b, debiased=debiased, device=device, dtype=dtype)
    acc.set_reference(first_rows(a, stream_a, ids, pool), first_rows(b, stream_b, ids, pool))
    chunks = zip(
        layer_rows(a, stream_a, mine, pool, chunk_rows), layer_rows(b, stream_b, mine, pool, chunk_rows)
    )
    with tqdm(
        total=total, unit="row", desc="linear CKA", leave=False, disable=None if rank == 0 else True
    ) as bar:
        for xs, ys in chunks:
            acc.update(xs, ys)
            bar.update(len(xs[layers_a[0]]))
    if size > 1:
        with process_group(backend(device)):
            acc.all_reduce()
    return acc.result()


def split_means(a: ActivationStore, stream_a: str, b: ActivationStore, stream_b: str, ids: list[str]) -> bool:
    """Whether the ranks split the means of ``ids``: where one process, too, sums them in feature space
    (``in_feature_space``), so that both give the same table."""
    widths = [a.dim(stream_a, x) for x in a.layers(stream_a)] + [
        b.dim(stream_b, y) for y in b.layers(stream_b)
    ]
    return in_feature_space(len(ids), widths)


def check_splittable(pool: str, kernel: str, measure: str) -> None:
    """Under ``torchrun``, refuse what the ranks cannot split: only linear CKA's sums add across processes."""
    size = world()[1]
    if size == 1 or (measure == "cka" and kernel == "linear" and pool in ("mean", "frames")):
        return
    needs = ((f"--measure {measure}", measure == "cka"), (f"--kernel {kernel}", kernel == "linear"))
    unsplit = next((flag for flag, splittable in needs if not splittable), f"--pool {pool}")
    raise CKAProbeError(
        f"under torchrun ({size} ranks) compare splits linear CKA with --pool mean or frames only; "
        f"{unsplit} needs all rows in one process: run it without torchrun"
    )


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
    ``pool="words"`` reads the word spans from ``word_spans`` (a TextGrid
    folder, a CTM file or a word-span ``.jsonl``, matched to ``a``'s manifest;
    default: the ``.words.jsonl`` sidecar of ``a``, else of ``b``) and keeps ``words``
    (``divergent`` | ``identical`` | ``all``).

    The stores must hold the same utterances under their shared ids
    (:mod:`cka_probe.compare.provenance`); ``allow_different_manifests``
    compares stores whose provenance cannot show it, with a warning, and
    ``attrs["alignment"]`` records the verdict.

    Under ``torchrun`` linear CKA (``pool`` frames, or mean with more
    utterances than the widest layer) is split among the ranks
    (``streamed_linear_cka``; a bare ``device="cuda"`` is each rank's own GPU)
    and every rank returns the same table; the means of fewer utterances are
    compared whole on every rank, and anything else is refused
    (``check_splittable``).
    """
    stream_b = stream_b or stream
    if pool not in ("mean", "frames", "words"):
        raise CKAProbeError(f"pool must be mean, frames or words, not {pool!r}")
    check_splittable(pool, kernel, measure)
    split, device = world()[1] > 1, rank_device(device)
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
            from cka_probe.compare.span_sources import read_spans

            if measure != "cka":
                raise CKAProbeError(f"pool=words supports measure cka only, not {measure}")
            sidecar = sidecar_for(sa, sb, word_spans)
            records = read_spans(sidecar, sa.attrs.get("manifest"))
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
        elif pool == "mean" and not (split and split_means(sa, stream, sb, stream_b, ids)):
            table = similarity_matrix(
                {x: sa.means(stream, x, ids) for x in layers_a},
                {y: sb.means(stream_b, y, ids) for y in layers_b},
                measure=measure,
                **options,
            )
        elif kernel == "linear" and measure == "cka":
            if pool == "frames":
                check_equal_rows(sa, stream, sb, stream_b, ids)
            table = streamed_linear_cka(
                sa, stream, sb, stream_b, ids, pool=pool, debiased=debiased, device=device, dtype=dtype
            )
            if pool == "mean":  # split among ranks: recorded as one process's similarity_matrix records it
                record_measure(table, measure, options)
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
