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

This package reads the sources and knows each model family's frames; reading
any source as records and mapping them to one store's frames
(``read_spans``, ``frame_records``, ``spans_for_store``) is
:mod:`cka_probe.compare.span_sources`, above the sidecar's reader in
``extract``. ``store_grid(store.attrs)`` gives a store's
:class:`~cka_probe.spans.frames.FrameGrid`.
"""

from cka_probe.spans.frames import FrameGrid, store_grid

__all__ = ["FrameGrid", "store_grid"]
