"""Word spans for any store: word times from any aligner, mapped to each model's own frames.

A word span is a surface word of an utterance with its times in seconds, its
index, and its counterpart in the meaning transcript (``op``,
``meaning_index``: the word-level Levenshtein pairing of
:mod:`cka_probe.text.word_alignment`). Sources: the bundled models' CTC
aligner (the ``<store>.words.jsonl`` sidecar, :mod:`cka_probe.extract.word_spans`),
Montreal Forced Aligner / Praat TextGrids (:mod:`cka_probe.spans.textgrid`),
CTM files (:mod:`cka_probe.spans.ctm`), or a JSON Lines file of times in the
sidecar's format. Each store maps the times to its own encoder frames
(:mod:`cka_probe.spans.frames`), so one set of spans pools bundled, Whisper
and wav2vec2-family stores of the same audio by word (Pasad et al. 2023 pool
a word's frames the same way).

Python API:

- ``read_spans(source, manifest) -> {utterance id: record}``;
- ``frame_records(store, records, ids, stream) -> {utterance id: record}``:
  the records in the frames of one store (``start``, ``end``, ``n_frames``),
  what :func:`cka_probe.compare.words.selected_spans`,
  :func:`~cka_probe.compare.words.check_frames` and
  :func:`~cka_probe.compare.words.word_means` take;
- ``spans_for_store(store, source) -> {utterance id: [(start_frame, end_frame, word)]}``;
- ``store_grid(store.attrs)``: a store's :class:`~cka_probe.spans.frames.FrameGrid`.
"""

from cka_probe.spans.frames import FrameGrid, store_grid
from cka_probe.spans.sources import frame_records, read_spans, spans_for_store

__all__ = ["FrameGrid", "frame_records", "read_spans", "spans_for_store", "store_grid"]
