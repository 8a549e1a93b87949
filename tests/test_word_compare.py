"""Word spans at extraction (``extract --word-spans``) and ``compare --pool words``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cka_probe.cli import main
from cka_probe.compare.stores import compare_stores
from cka_probe.errors import CKAProbeError
from cka_probe.extract.asr import extract_checkpoint
from cka_probe.extract.word_spans import read_word_spans, sidecar_path, write_word_spans
from cka_probe.store import ActivationStore
from cka_probe.text.word_alignment import align_words

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cka_reference import cka, linear_gram  # noqa: E402
from helpers import WORD_TEXTS, shrunk_config, untrained_checkpoint, word_manifest  # noqa: E402

torch.set_num_threads(1)


def checkpoint(
    root: Path, rows: list[dict], arch: str, tasks: tuple[str, ...], variant: str, seed: int
) -> Path:
    """A random-weight model, 2 encoder layers and 1 decoder layer, saved as ``root/ARCH-VARIANT-SEED.pt``."""
    path = root / f"{arch}-{variant}-{seed}.pt"
    return untrained_checkpoint(path, shrunk_config(2, 1), rows, arch, tasks, variant, seed=seed)


@pytest.fixture(scope="module")
def word_stores(tmp_path_factory):
    """A random-weight DO and a split-1 model extracted over 6 noise utterances of 1.5 s; the DO with word
    spans."""
    root = tmp_path_factory.mktemp("words")
    manifest, rows = word_manifest(root, changed=True)
    do = extract_checkpoint(
        checkpoint(root, rows, "do", ("surface", "meaning"), "shared", 0),
        manifest,
        root / "do.h5",
        batch_size=4,
        word_spans=True,
    )
    split = extract_checkpoint(
        checkpoint(root, rows, "do", ("surface", "meaning"), "split-1", 1),
        manifest,
        root / "split.h5",
        batch_size=4,
    )
    return {"root": root, "rows": rows, "manifest": manifest, "do": do, "split": split}


def test_extraction_writes_monotonic_word_spans_that_fit_the_store(word_stores):
    records = read_word_spans(sidecar_path(word_stores["do"]))
    assert list(records) == [r["id"] for r in word_stores["rows"]]
    with ActivationStore(word_stores["do"]) as store:
        frames = store.row_counts("encoder", "encoder.layers.1")
    for record, row, n_frames in zip(records.values(), word_stores["rows"], frames):
        assert record["n_frames"] == n_frames
        words = record["words"]
        assert [w["word"] for w in words] == row["surface"].split() and [w["index"] for w in words] == list(
            range(len(words))
        )
        ends = [0] + [w["end"] for w in words]
        assert all(prev <= w["start"] < w["end"] for prev, w in zip(ends, words)) and ends[-1] <= n_frames
        # every surface word spans at least its own characters (each CTC token takes one frame or more)
        assert all(w["end"] - w["start"] >= len(w["word"]) for w in words)
        pairs = [p for p in align_words(row["surface"], row["meaning"]) if p.surface is not None]
        assert [(w["op"], w["meaning_index"]) for w in words] == [(p.op, p.meaning) for p in pairs]
        assert [w["corpus_changed"] for w in words] == [w["op"] != "identical" for w in words]
    assert [w["corpus_changed"] for w in records["u0"]["words"]] == [False, True, False]


def word_means_by_hand(store_path, stream, layer, records, keep):
    with ActivationStore(store_path) as store:
        rows, offsets = store.frames(stream, layer, list(records))
    out = []
    for u, record in enumerate(records.values()):
        for w in record["words"]:
            if keep(w["op"]):
                block = rows[offsets[u] + w["start"] : offsets[u] + w["end"]].astype(np.float64)
                out.append(block.sum(axis=0) / len(block))
    return np.array(out)


@pytest.mark.parametrize(
    "words, keep",
    [
        ("all", lambda op: True),
        ("divergent", lambda op: op != "identical"),
        ("identical", lambda op: op == "identical"),
    ],
)
def test_pool_words_is_cka_of_word_means(word_stores, words, keep):
    table = compare_stores(
        word_stores["do"], word_stores["split"], stream="encoder", pool="words", words=words, dtype="float64"
    )
    records = read_word_spans(sidecar_path(word_stores["do"]))
    n_words = sum(keep(w["op"]) for r in records.values() for w in r["words"])
    assert table.attrs["n_words"] == n_words and table.attrs["pool"] == "words"
    for a_layer in ("encoder.embed", "encoder.layers.1"):
        x = word_means_by_hand(word_stores["do"], "encoder", a_layer, records, keep)
        y = word_means_by_hand(word_stores["split"], "encoder", "encoder.layers.0", records, keep)
        assert table.loc[a_layer, "encoder.layers.0"] == pytest.approx(
            cka(linear_gram(x), linear_gram(y)), abs=1e-9
        )


def test_pool_words_counts_divergent_and_identical_words(word_stores):
    counts = {
        w: compare_stores(word_stores["do"], word_stores["do"], pool="words", words=w).attrs["n_words"]
        for w in ("all", "divergent", "identical")
    }
    assert (
        counts["divergent"] + counts["identical"]
        == counts["all"]
        == sum(len(s.split()) for s, _ in WORD_TEXTS)
    )
    assert counts["divergent"] == 5  # go, have, dey, was, eat: the surface words without an identical partner


def test_pool_words_on_a_decoder_stream_or_without_spans_is_a_clear_error(word_stores):
    with pytest.raises(CKAProbeError, match="pool=words: utterance u0 has .* rows"):
        compare_stores(word_stores["do"], word_stores["do"], stream="decoder/surface", pool="words")
    with pytest.raises(CKAProbeError, match="no word-span file"):
        compare_stores(word_stores["split"], word_stores["split"], pool="words")


def test_cli_compare_pool_words(word_stores, tmp_path, capsys):
    out = tmp_path / "words.csv"
    assert (
        main(
            [
                "compare",
                str(word_stores["split"]),
                str(word_stores["do"]),
                "--stream-b",
                "encoder",
                "--pool",
                "words",
                "--words",
                "divergent",
                "--out",
                str(out),
            ]
        )
        == 0
    )  # B's sidecar, as A has none
    assert "n=5" in capsys.readouterr().out
    assert pd.read_csv(out, index_col=0).shape == (2, 3)  # split-1: embed + 1 shared block; DO: embed + 2


def test_word_spans_need_a_surface_ctc_head(word_stores, tmp_path):
    from cka_probe.asr import load_checkpoint

    path = checkpoint(tmp_path, word_stores["rows"], "so", ("meaning",), "shared", 0)
    model, ckpt = load_checkpoint(path)
    with pytest.raises(CKAProbeError, match="CTC head is on 'meaning'"):
        write_word_spans(model, ckpt, word_stores["manifest"], tmp_path / "w.jsonl")
    assert not (tmp_path / "w.jsonl").exists()


def test_a_bad_word_span_line_is_named(tmp_path):
    path = tmp_path / "x.h5.words.jsonl"
    path.write_text(
        '{"id": "u0", "n_frames": 5, "words": [{"start": 0, "end": 3, "op": "identical"}]}\n'
        '{"id": "u1", "n_frames": 5, "words": [{"start": 4, "end": 9, "op": "identical"}]}\n'
    )
    with pytest.raises(CKAProbeError, match=r"x\.h5\.words\.jsonl:2: a word span lies outside"):
        read_word_spans(path)
    path.write_text('{"id": "u0"}\n')
    with pytest.raises(CKAProbeError, match=r":1: not a word-span record"):
        read_word_spans(path)
