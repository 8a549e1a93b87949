"""Layer-by-layer CKA of two stores on word-level means (``compare --pool words``).

Each surface word of the word spans (the CTC sidecar,
:mod:`cka_probe.extract.word_spans`, or a TextGrid folder, a CTM file or a
JSON Lines file of times: :mod:`cka_probe.spans`) becomes one sample: the mean
of its encoder frames in every layer (:mod:`cka_probe.compare.word_pooling`;
Pasad et al. 2023), in both stores, so that n = words. Each store takes the
words' frames by its own frame arithmetic (:func:`cka_probe.compare.span_sources.frame_records`;
spans of frames alone, from a sidecar written before the times, are used as
they are), so a Whisper or wav2vec2 store pools by the words the bundled
SSO's CTC aligner found in the same audio. ``words`` selects them:
``divergent`` (aligned to no identical meaning word: substituted or
inserted), ``identical``, or ``all``. The frame count of every utterance is
checked against each stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cka_probe.compare.span_sources import frame_records
from cka_probe.compare.word_pooling import pool_words
from cka_probe.errors import CKAProbeError
from cka_probe.measures import cka_matrix
from cka_probe.store import ActivationStore

WORD_SETS = ("divergent", "identical", "all")
MIN_SAMPLES = 4
"""The fewest samples (utterances or words) a comparison accepts: fewer make any CKA a foregone number."""


def selected_spans(
    records: dict[str, dict[str, Any]], ids: list[str], words: str
) -> list[tuple[int, int, int]]:
    """``(utterance position in ids, start, end)`` of the words of set ``words``."""
    if words not in WORD_SETS:
        raise CKAProbeError(f"words must be one of {', '.join(WORD_SETS)}, not {words!r}")
    missing = [uid for uid in ids if uid not in records]
    if missing:
        raise CKAProbeError(
            f"utterance {missing[0]} has no word spans ({len(missing)} of {len(ids)} missing)"
        )
    unpaired = next((uid for uid in ids for w in records[uid]["words"] if w["op"] is None), None)
    if words != "all" and unpaired is not None:
        raise CKAProbeError(
            f"utterance {unpaired}: its words are not paired with a meaning transcript (the manifest has "
            f"none), so they are neither divergent nor identical; use words=all"
        )
    keep = {
        "all": lambda op: True,
        "identical": lambda op: op == "identical",
        "divergent": lambda op: op != "identical",
    }[words]
    return [
        (u, w["start"], w["end"]) for u, uid in enumerate(ids) for w in records[uid]["words"] if keep(w["op"])
    ]


def row_mismatch(
    store: ActivationStore, stream: str, ids: list[str], want: np.ndarray
) -> tuple[str, int, int] | None:
    """``(layer, i, rows)`` of the first layer of ``stream`` whose rows per utterance differ from ``want``
    ``(N,)``: ``ids[i]`` is the first utterance that differs, with ``rows`` rows; None when all agree."""
    for layer in store.layers(stream):
        rows = store.row_counts(stream, layer, ids)
        if (rows != want).any():
            i = int(np.argmax(rows != want))
            return layer, i, int(rows[i])
    return None


def check_frames(
    store: ActivationStore, stream: str, ids: list[str], records: dict[str, dict[str, Any]]
) -> None:
    """Every layer of ``stream`` must hold each utterance's ``n_frames`` rows, else an error naming one."""
    want = np.array([records[uid]["n_frames"] for uid in ids])
    if (mismatch := row_mismatch(store, stream, ids, want)) is not None:
        layer, i, rows = mismatch
        raise CKAProbeError(
            f"pool=words: utterance {ids[i]} has {rows} rows in {store.path} {stream}/{layer} "
            f"but its word spans cover {want[i]} encoder frames (words pool encoder streams)"
        )


def word_means(
    store: ActivationStore, stream: str, ids: list[str], spans: list[tuple[int, int, int]]
) -> dict[str, np.ndarray]:
    """``{layer: (W, D)}`` float64 word means of ``stream``."""
    return {layer: pool_words(*store.frames(stream, layer, ids), spans) for layer in store.layers(stream)}


def compare_words(
    sa: ActivationStore,
    stream_a: str,
    sb: ActivationStore,
    stream_b: str,
    ids: list[str],
    records: dict[str, dict[str, Any]],
    *,
    words: str = "all",
    **cka: Any,
) -> pd.DataFrame:
    """CKA of word means, rows = layers of ``sa``, columns = layers of ``sb``, each store taking the frames
    of the words of ``records`` by its own arithmetic; ``attrs`` add ``words``, ``n_words``."""
    framed = [frame_records(s, records, ids, stream) for s, stream in ((sa, stream_a), (sb, stream_b))]
    spans = [selected_spans(r, ids, words) for r in framed]
    if len(spans[0]) < MIN_SAMPLES:
        raise CKAProbeError(
            f"pool=words with words={words}: {len(spans[0])} word(s) selected, "
            f"CKA needs at least {MIN_SAMPLES}"
        )
    for store, stream, r in ((sa, stream_a, framed[0]), (sb, stream_b, framed[1])):
        check_frames(store, stream, ids, r)
    table = cka_matrix(
        word_means(sa, stream_a, ids, spans[0]), word_means(sb, stream_b, ids, spans[1]), **cka
    )
    table.attrs.update(words=words, n_words=len(spans[0]))
    return table


def sidecar_for(sa: ActivationStore, sb: ActivationStore, given: str | Path | None) -> Path:
    """``given``, else the sidecar of store A if it exists, else that of store B."""
    from cka_probe.extract.word_spans import sidecar_path

    if given is not None:
        return Path(given)
    first = sidecar_path(sa.path)
    return first if first.is_file() or not sidecar_path(sb.path).is_file() else sidecar_path(sb.path)
