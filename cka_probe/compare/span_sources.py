"""Word spans from any source, mapped to the frames of one store.

:func:`read_spans` reads a TextGrid folder (:mod:`cka_probe.spans.textgrid`),
a CTM file (:mod:`cka_probe.spans.ctm`) or a word-span JSON Lines file
(:mod:`cka_probe.extract.word_spans`: the CTC sidecar, with frames and times,
or times alone) as records ``{utterance id: record}``.
:func:`frame_records` turns them into the frames of one store's encoder
stream: each timed word through the store's own frame arithmetic
(:mod:`cka_probe.spans.frames`), ``n_frames`` that arithmetic's frame count
of the utterance's samples, which every layer of the stream must hold
(:func:`cka_probe.compare.words.check_frames`); a record of frames alone (a
sidecar written before the times) is kept as it is. The result is in the
sidecar's frame format, so whatever pools sidecar spans pools it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cka_probe.errors import CKAProbeError
from cka_probe.spans.frames import FrameGrid, store_grid

Records = dict[str, dict[str, Any]]


def read_spans(source: str | Path, manifest: str | Path | None = None) -> Records:
    """``{utterance id: record}`` of a TextGrid folder (or file), a ``.ctm`` file or a ``.jsonl`` file; the
    first two are matched to the rows of ``manifest`` (:mod:`cka_probe.spans.timed`)."""
    from cka_probe.extract.word_spans import read_word_spans

    source = Path(source)
    if source.suffix == ".jsonl":
        return read_word_spans(source)
    if not (source.is_dir() or source.suffix in (".ctm", ".TextGrid")):
        raise CKAProbeError(
            f"{source}: word spans are a TextGrid folder, a .TextGrid, a .ctm or a .jsonl file"
        )
    if manifest is None:
        raise CKAProbeError(f"{source}: a manifest is needed to match its words to utterances")
    from cka_probe.data.manifest import read_manifest
    from cka_probe.spans.ctm import ctm_file
    from cka_probe.spans.textgrid import textgrid_folder
    from cka_probe.spans.timed import records

    rows = read_manifest(manifest, require=("id", "audio"))
    groups, origin = ctm_file(source) if source.suffix == ".ctm" else textgrid_folder(source)
    return records(groups, rows, origin)


def utterance_samples(store, grid: FrameGrid, ids: list[str]) -> np.ndarray | None:
    """``(N,)`` samples of each utterance as the store's metadata records them: ``n_samples`` (Hugging
    Face stores), or for a bundled store the fewest samples that give its ``n_frames`` fbank frames
    (``(T − 1) · shift + window``, the same encoder frame count); None when neither is recorded."""
    meta = store.metadata
    if "n_samples" in meta:
        return meta.loc[ids, "n_samples"].to_numpy(np.int64)
    if grid.family == "bundled" and "n_frames" in meta:
        window, shift = grid.convs[0]
        return (meta.loc[ids, "n_frames"].to_numpy(np.int64) - 1) * shift + window
    return None


def frame_records(store, records: Records, ids: list[str], stream: str = "encoder") -> Records:
    """``records`` of utterances ``ids`` in the frames of ``store``'s ``stream`` (module docstring): the
    frame count of each utterance from its recorded samples, else the stream's rows."""
    missing = [uid for uid in ids if uid not in records]
    if missing:
        raise CKAProbeError(
            f"utterance {missing[0]} has no word spans ({len(missing)} of {len(ids)} missing)"
        )
    if all("duration_s" not in records[uid] for uid in ids):
        return {uid: records[uid] for uid in ids}
    grid = store_grid(store.attrs, store.path)
    samples = utterance_samples(store, grid, ids)
    counts = (
        [grid.count(int(n)) for n in samples]
        if samples is not None
        else store.row_counts(stream, store.layers(stream)[0], ids)
    )
    out = {}
    for u, uid in enumerate(ids):
        record = records[uid]
        if "duration_s" not in record:
            out[uid] = record
            continue
        n = int(counts[u])
        if n < 1:
            raise CKAProbeError(
                f"{store.path}: utterance {uid} has no {grid.family} frames to pool words over"
            )
        words = [
            w | dict(zip(("start", "end"), grid.frames(w["start_s"], w["end_s"], n))) for w in record["words"]
        ]
        out[uid] = {"id": uid, "n_frames": n, "duration_s": record["duration_s"], "words": words}
    return out


def spans_for_store(
    store, source: str | Path | Records, *, stream: str = "encoder", manifest: str | Path | None = None
) -> dict[str, list[tuple[int, int, dict[str, Any]]]]:
    """``{utterance id: [(start frame, end frame, word record)]}`` of every utterance of ``store`` from
    ``source`` (a path :func:`read_spans` reads, with the store's own manifest by default, or records),
    checked against the rows of every layer of ``stream``."""
    from cka_probe.compare.words import check_frames

    if not isinstance(source, dict):
        source = read_spans(source, manifest or store.attrs.get("manifest"))
    framed = frame_records(store, source, store.ids, stream)
    check_frames(store, stream, store.ids, framed)
    return {uid: [(w["start"], w["end"], w) for w in record["words"]] for uid, record in framed.items()}
