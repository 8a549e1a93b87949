"""Stores of every family pooled by word from any span source (``compare --pool words --spans``).

Whisper stores (random weights) pooled by words from hand-written TextGrids,
and Whisper and wav2vec2 stores pooled by the words a bundled SSO's CTC
aligner found in the same audio. Expected word frames come from each model's
frame centres written out here (Whisper: 20 ms · i; bundled: 42.5 ms + 40 ms · t;
the wav2vec2 test CNN: 1.25 ms + 1.25 ms · t), which ``test_spans_frames``
checks against the models themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cka_probe.cli import main
from cka_probe.compare.span_sources import spans_for_store
from cka_probe.compare.stores import compare_stores
from cka_probe.errors import CKAProbeError
from cka_probe.extract.asr import extract_checkpoint
from cka_probe.extract.models import extract_model
from cka_probe.extract.word_spans import read_word_spans, sidecar_path
from cka_probe.store import ActivationStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cka_reference import cka, linear_gram  # noqa: E402
from helpers import shrunk_config, untrained_checkpoint, word_manifest  # noqa: E402
from hf_models import SECONDS, TEXTS, noise_corpus, wav2vec2_folder, whisper_folder  # noqa: E402
from test_spans_readers import textgrid  # noqa: E402

torch.set_num_threads(1)

WORD_TIMES = [
    [(0.05, 0.2), (0.25, 0.45)],  # hello there (0.5 s)
    [(0.1, 0.2), (0.3, 0.6)],  # a cat (0.7 s)
    [(0.1, 0.4)],  # hi (0.5 s)
    [(0.0, 0.08), (0.1, 0.2), (0.2, 0.29)],  # go home now (0.3 s)
    [(0.3, 0.8)],  # yes (0.9 s)
]
"""Hand-chosen times of the words of the noise corpus's transcripts (:data:`hf_models.TEXTS`)."""


@pytest.fixture(scope="module")
def whisper_stores(tmp_path_factory):
    """Two random Whispers (seeds 0, 1) extracted over the noise corpus, and a TextGrid per utterance."""
    root = tmp_path_factory.mktemp("whisper-words")
    manifest = noise_corpus(root / "data", SECONDS, texts=TEXTS)
    stores = [
        extract_model(whisper_folder(root / f"w{seed}", seed=seed), manifest, root / f"w{seed}.h5", tasks=[])
        for seed in (0, 1)
    ]
    grids = root / "grids"
    grids.mkdir()
    for i, (text, times, seconds) in enumerate(zip(TEXTS, WORD_TIMES, SECONDS)):
        intervals = [(str(a), str(b), word) for word, (a, b) in zip(text.split(), times)]
        (grids / f"u{i}.TextGrid").write_text(textgrid(seconds, intervals))
    return {"root": root, "manifest": manifest, "stores": stores, "grids": grids}


def whisper_frames(a: float, b: float) -> list[int]:
    """Whisper's encoder frames centred in ``[a, b)``: frame i at 20 ms · i."""
    return [i for i in range(1500) if a <= 0.02 * i < b - 1e-9]


def hand_means(store_path, layer: str, spans: dict[str, list[list[int]]]) -> np.ndarray:
    """``(W, D)`` float64 means of the given frames of each word, utterances in store order."""
    with ActivationStore(store_path) as store:
        out = []
        for uid in store.ids:
            frames = store.frames("encoder", layer, [uid])[0].astype(np.float64)
            out += [frames[f].mean(axis=0) for f in spans[uid]]
    return np.array(out)


def test_a_whisper_store_pooled_by_words_from_textgrids(whisper_stores):
    w0, w1 = whisper_stores["stores"]
    table = compare_stores(w0, w1, pool="words", word_spans=whisper_stores["grids"], dtype="float64")
    assert table.attrs["n_words"] == 9
    spans = {f"u{i}": [whisper_frames(a, b) for a, b in times] for i, times in enumerate(WORD_TIMES)}
    assert spans["u0"] == [list(range(3, 10)), list(range(13, 23))]  # 60..180 ms, 260..440 ms
    for a_layer in ("model.encoder.layers.0", "model.encoder.layers.1"):
        x = hand_means(w0, a_layer, spans)
        y = hand_means(w1, "model.encoder.layers.1", spans)
        assert table.loc[a_layer, "model.encoder.layers.1"] == pytest.approx(
            cka(linear_gram(x), linear_gram(y)), abs=1e-9
        )


def test_spans_for_store_gives_each_word_its_whisper_frames(whisper_stores):
    w0 = whisper_stores["stores"][0]
    with ActivationStore(w0) as store:
        spans = spans_for_store(store, whisper_stores["grids"])
    assert [(a, b, w["word"]) for a, b, w in spans["u3"]] == [(0, 4, "go"), (5, 10, "home"), (10, 15, "now")]
    assert [(a, b) for a, b, _ in spans["u4"]] == [(15, 40)]  # 300 .. 780 ms


def test_cli_pools_a_whisper_store_by_textgrid_words_and_names_a_bad_line(whisper_stores, tmp_path, capsys):
    w0, w1 = whisper_stores["stores"]
    out = tmp_path / "w.csv"
    args = [
        "compare",
        str(w0),
        str(w1),
        "--pool",
        "words",
        "--spans",
        str(whisper_stores["grids"]),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "n=9" in capsys.readouterr().out and out.is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "u0.TextGrid").write_text(textgrid(0.5, [("0.05", "0.2", "hello"), ("0.1", "0.45", "there")]))
    out.unlink()
    assert main([*args[:-4], "--spans", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cka-probe compare: error: {bad / 'u0.TextGrid'}:19: interval") and "\n" not in err
    assert not out.exists()


def test_a_whisper_store_refuses_spans_of_frames_alone(whisper_stores, tmp_path):
    frames_only = tmp_path / "old.words.jsonl"
    lines = [
        {"id": f"u{i}", "n_frames": 5, "words": [{"start": 0, "end": 2, "op": "identical", "word": "x"}]}
        for i in range(5)
    ]
    frames_only.write_text("".join(json.dumps(r) + "\n" for r in lines))
    w0, w1 = whisper_stores["stores"]
    with pytest.raises(
        CKAProbeError, match=r"pool=words: utterance u0 has 25 rows in .* but its word spans cover 5"
    ):
        compare_stores(w0, w1, pool="words", word_spans=frames_only)


@pytest.fixture(scope="module")
def ctc_stores(tmp_path_factory):
    """A random SSO with its CTC word spans, a random Whisper and a random layer-norm wav2vec2, all over the
    same 6 utterances of 1.5 s."""
    root = tmp_path_factory.mktemp("ctc-words")
    manifest, rows = word_manifest(root, changed=True)
    ckpt = untrained_checkpoint(root / "sso.pt", shrunk_config(2, 1), rows, "so", ("surface",))
    sso = extract_checkpoint(ckpt, manifest, root / "sso.h5", batch_size=6, word_spans=True)
    whisper = extract_model(whisper_folder(root / "whisper"), manifest, root / "whisper.h5", tasks=[])
    w2v = extract_model(wav2vec2_folder(root / "w2v", norm="layer"), manifest, root / "w2v.h5", tasks=[])
    return {"sso": sso, "whisper": whisper, "w2v": w2v}


def test_ctc_sidecar_times_are_the_bounds_of_its_frames(ctc_stores):
    for record in read_word_spans(sidecar_path(ctc_stores["sso"])).values():
        assert record["duration_s"] == 1.5
        for w in record["words"]:
            # halfway between centres: 42.5 ms + 40 ms · (start − 0.5), same after end − 1
            assert w["start_s"] == pytest.approx(0.0425 + 0.04 * (w["start"] - 0.5))
            assert w["end_s"] == pytest.approx(0.0425 + 0.04 * (w["end"] - 0.5))


@pytest.mark.parametrize(
    "family, layer, centre",
    [
        ("whisper", "model.encoder.layers.1", lambda i: 0.02 * i),
        # CNN kernels (10, 3, 3), strides (5, 2, 2): 20 samples a frame, 40 samples of field
        ("w2v", "encoder.layers.1", lambda t: (20 * t + 20) / 16000),
    ],
)
def test_hf_stores_pool_by_the_words_of_the_bundled_ssos_ctc_aligner(ctc_stores, family, layer, centre):
    table = compare_stores(ctc_stores["sso"], ctc_stores[family], pool="words", dtype="float64")
    records = read_word_spans(sidecar_path(ctc_stores["sso"]))
    with ActivationStore(ctc_stores[family]) as store:
        n_frames = dict(zip(store.ids, store.row_counts("encoder", layer)))

    def frames(uid, w):
        inside = [t for t in range(n_frames[uid]) if w["start_s"] <= centre(t) < w["end_s"] - 1e-9]
        middle = (w["start_s"] + w["end_s"]) / 2
        return inside or [min(range(n_frames[uid]), key=lambda t: abs(centre(t) - middle))]

    hf = {uid: [frames(uid, w) for w in r["words"]] for uid, r in records.items()}
    own = {uid: [list(range(w["start"], w["end"])) for w in r["words"]] for uid, r in records.items()}
    assert table.attrs["n_words"] == sum(len(v) for v in own.values())
    x = hand_means(ctc_stores["sso"], "encoder.layers.1", own)
    y = hand_means(ctc_stores[family], layer, hf)
    assert table.loc["encoder.layers.1", layer] == pytest.approx(
        cka(linear_gram(x), linear_gram(y)), abs=1e-9
    )


def test_words_without_a_meaning_transcript_pool_only_as_all():
    from cka_probe.compare.words import selected_spans

    records = {
        "u0": {
            "id": "u0",
            "n_frames": 9,
            "words": [{"start": 0, "end": 3, "op": None, "meaning_index": None}],
        },
        "u1": {
            "id": "u1",
            "n_frames": 9,
            "words": [{"start": 2, "end": 5, "op": "identical", "meaning_index": 0}],
        },
    }
    assert selected_spans(records, ["u0", "u1"], "all") == [(0, 0, 3), (1, 2, 5)]
    with pytest.raises(CKAProbeError, match=r"utterance u0: its words are not paired .* use words=all"):
        selected_spans(records, ["u0", "u1"], "divergent")
