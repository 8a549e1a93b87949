"""Hugging Face folders end to end: every stored row equals the model run on that utterance alone.

The models are tiny random-weight Whisper, wav2vec2 (group and layer norm) and
HuBERT configs saved with ``save_pretrained``; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

pytest.importorskip("transformers")  # the [hf] extra; CI's test extra installs it

from cka_probe.cli import main  # noqa: E402
from cka_probe.errors import CKAProbeError  # noqa: E402
from cka_probe.extract.models import extract_model  # noqa: E402
from cka_probe.store import ActivationStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import (  # noqa: E402
    SECONDS,
    TEXTS,
    noise_corpus,
    wav2vec2_folder,
    whisper_folder,
    with_generation_prompt,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    return whisper_folder(root / "model"), noise_corpus(root / "data", SECONDS, texts=TEXTS)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Encoder-only manifest: ``id`` and ``audio`` alone; u0 and u2 have equal lengths."""
    return noise_corpus(tmp_path_factory.mktemp("audio"), SECONDS)


def conv_lengths(samples: int, kernels=(10, 3, 3), strides=(5, 2, 2)) -> int:
    """The CNN's output length, layer by layer ``⌊(L − k) / s⌋ + 1`` (Baevski et al. 2020)."""
    for k, s in zip(kernels, strides):
        samples = (samples - k) // s + 1
    return samples


def _rows(store: ActivationStore, stream: str, layer: str, uid: str) -> np.ndarray:
    return store.frames(stream, layer, [uid])[0].astype(np.float64)


def test_whisper_rows_equal_the_model_alone(whisper, tmp_path):
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    folder, manifest = whisper
    out = extract_model(folder, manifest, tmp_path / "w.h5", batch_size=3)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features, tok = WhisperFeatureExtractor.from_pretrained(folder), WhisperTokenizer.from_pretrained(folder)
    prompt = tok.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    with ActivationStore(out) as store, torch.no_grad():
        assert store.attrs["config_sha256"] and store.attrs["transformers_version"]
        for row in rows:
            wave, _ = soundfile.read(manifest.parent / row["audio"], dtype="float32")
            feats = features(wave, sampling_rate=16000, return_tensors="pt").input_features
            frames = -(-len(wave) // 320)  # ⌈S / 320⌉ encoder frames cover the audio
            for task in ("surface", "meaning"):
                ids = prompt + tok(row[task], add_special_tokens=False).input_ids
                hf = model(
                    input_features=feats, decoder_input_ids=torch.tensor([ids]), output_hidden_states=True
                )
                enc, dec = hf.encoder_hidden_states, hf.decoder_hidden_states
                # hidden_states[k + 1] is layer k's output; the last one has passed the final layer norm
                for k, last in ((0, lambda x: x), (1, None)):
                    stored = torch.tensor(_rows(store, "encoder", f"model.encoder.layers.{k}", row["id"]))
                    assert stored.shape[0] == frames
                    norm = last or model.model.encoder.layer_norm
                    np.testing.assert_allclose(
                        norm(stored.float()), enc[k + 1][0, :frames], atol=2e-5, rtol=1e-4
                    )
                    stored = torch.tensor(
                        _rows(store, f"decoder/{task}", f"model.decoder.layers.{k}", row["id"])
                    )
                    norm = last or model.model.decoder.layer_norm
                    np.testing.assert_allclose(norm(stored.float()), dec[k + 1][0, 3:], atol=2e-5, rtol=1e-4)
                tokens, _ = store.tokens(f"decoder/{task}", "model.decoder.layers.1", [row["id"]])
                assert tokens.tolist() == ids[3:]  # the prompt's last token, then the transcript


@pytest.mark.parametrize(
    ("family", "norm", "ctc"),
    [
        ("wav2vec2", "group", False),
        ("wav2vec2", "layer", True),
        ("hubert", "group", True),
        ("wavlm", "group", False),
        ("data2vec-audio", "layer", False),
    ],
)
def test_wav2vec2_family_rows_equal_the_model_alone(audio, tmp_path, family, norm, ctc):
    from transformers import AutoModel, AutoModelForCTC

    folder = wav2vec2_folder(tmp_path / "model", family=family, norm=norm, ctc=ctc)
    out = extract_model(folder, audio, tmp_path / "a.h5", batch_size=3)
    model = (AutoModelForCTC if ctc else AutoModel).from_pretrained(folder).eval()
    base, prefix = model.base_model, (f"{model.base_model_prefix}." if ctc else "")
    with ActivationStore(out) as store, torch.no_grad():
        # its stacked positional convs see the padding
        padded = norm == "layer" and family != "data2vec-audio"
        assert store.attrs["padding"].startswith("attention" if padded else "equal-length")
        for uid in store.ids:
            wave = torch.tensor(soundfile.read(audio.parent / f"{uid}.wav", dtype="float32")[0])
            x = ((wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7))[None]  # do_normalize
            hidden = base(x, output_hidden_states=True).hidden_states
            frames = conv_lengths(len(wave))
            cnn = base.feature_extractor(x).transpose(1, 2)[0]
            np.testing.assert_allclose(
                _rows(store, "encoder", f"{prefix}feature_extractor", uid), cnn, atol=1e-5
            )
            projected = base.feature_projection(cnn[None])  # wav2vec2: (projected, normed); HuBERT: projected
            projected = projected[0] if isinstance(projected, tuple) else projected
            np.testing.assert_allclose(
                _rows(store, "encoder", f"{prefix}feature_projection", uid),
                projected[0],
                atol=1e-5,
                rtol=1e-4,
            )
            for k in range(2):  # hidden_states[k + 1]: layer k's output
                stored = _rows(store, "encoder", f"{prefix}encoder.layers.{k}", uid)
                assert stored.shape[0] == frames
                np.testing.assert_allclose(stored, hidden[k + 1][0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_rows_do_not_depend_on_the_batch_size(audio, tmp_path, norm):
    folder = wav2vec2_folder(tmp_path / "model", norm=norm)
    one, four = (extract_model(folder, audio, tmp_path / f"b{b}.h5", batch_size=b) for b in (1, 4))
    with ActivationStore(one) as a, ActivationStore(four) as b:
        for layer in a.layers("encoder"):
            for uid in a.ids:
                np.testing.assert_allclose(
                    _rows(a, "encoder", layer, uid), _rows(b, "encoder", layer, uid), atol=2e-5, rtol=1e-4
                )


@pytest.mark.parametrize(
    ("family", "norm", "layer"),
    [("wav2vec2", "group", "feature_extractor"), ("data2vec-audio", "layer", "encoder.layers.0")],
)
def test_padding_check_fires_on_a_padding_sensitive_model(audio, tmp_path, monkeypatch, family, norm, layer):
    """Batched with padding (no buckets): a group-norm wav2vec2 normalises over the padding too;
    data2vec-audio's
    stacked positional convolutions carry it into the valid frames even with its attention mask."""
    from cka_probe.extract.models import base, wav2vec2

    folder = wav2vec2_folder(tmp_path / "model", family=family, norm=norm)
    monkeypatch.setattr(
        wav2vec2, "equal_length_buckets", lambda rows, lengths, size: base.in_order(rows, size)
    )
    monkeypatch.setattr(wav2vec2, "UNPADDED", ())
    with pytest.raises(CKAProbeError, match=rf"model: padding changes layer {layer} .* utterance 'u0'"):
        extract_model(folder, audio, tmp_path / "a.h5", batch_size=3)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "a.h5.partial").exists()


def test_flac_gives_bitwise_the_store_of_its_wav(audio, tmp_path):
    folder = wav2vec2_folder(tmp_path / "model", norm="layer")
    rows = [json.loads(line) for line in audio.read_text().splitlines()]
    for row in rows:
        wave, rate = soundfile.read(audio.parent / row["audio"], dtype="int16")
        soundfile.write(tmp_path / f"{row['id']}.flac", wave, rate, subtype="PCM_16")
        row["audio"] = f"{row['id']}.flac"
    flac = tmp_path / "flac.jsonl"
    flac.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stores = [extract_model(folder, m, tmp_path / f"{m.stem}.h5", batch_size=2) for m in (audio, flac)]
    with ActivationStore(stores[0]) as a, ActivationStore(stores[1]) as b:
        for layer in a.layers("encoder"):
            assert np.array_equal(a.frames("encoder", layer)[0], b.frames("encoder", layer)[0])


def test_segment_equals_the_file_cut_to_it(tmp_path):
    folder = wav2vec2_folder(tmp_path / "model", norm="layer")
    rng = np.random.default_rng(1)
    long = (rng.normal(size=32000) * 3000).astype(np.int16)
    soundfile.write(tmp_path / "long.flac", long, 16000, subtype="PCM_16")
    cuts = [(0.25, 0.75), (1.0, 1.6)]
    segments, files = tmp_path / "seg.jsonl", tmp_path / "cut.jsonl"
    segments.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "audio": "long.flac", "start": a, "end": b}) + "\n"
            for i, (a, b) in enumerate(cuts)
        )
    )
    for i, (a, b) in enumerate(cuts):
        soundfile.write(
            tmp_path / f"s{i}.wav", long[round(a * 16000) : round(b * 16000)], 16000, subtype="PCM_16"
        )
    files.write_text(
        "".join(json.dumps({"id": f"s{i}", "audio": f"s{i}.wav"}) + "\n" for i in range(len(cuts)))
    )
    stores = [extract_model(folder, m, tmp_path / f"{m.stem}.h5", batch_size=2) for m in (segments, files)]
    with ActivationStore(stores[0]) as a, ActivationStore(stores[1]) as b:
        for layer in a.layers("encoder"):
            assert np.array_equal(a.frames("encoder", layer)[0], b.frames("encoder", layer)[0])


def test_whisper_decoder_needs_the_transcript_and_names_the_line(whisper, audio, tmp_path):
    folder, _ = whisper
    with pytest.raises(CKAProbeError, match=r"m\.jsonl:1: missing field 'surface'"):
        extract_model(folder, audio, tmp_path / "w.h5")
    out = extract_model(folder, audio, tmp_path / "enc.h5", tasks=[])  # the encoder needs id and audio alone
    with ActivationStore(out) as store:
        assert store.streams() == ["encoder"]


def test_missing_preprocessor_warns_once_and_uses_defaults(audio, tmp_path):
    with_config = wav2vec2_folder(tmp_path / "with", norm="layer")
    without = wav2vec2_folder(tmp_path / "without", norm="layer", preprocessor=False)
    extract_model(with_config, audio, tmp_path / "a.h5")
    with pytest.warns(UserWarning, match="no preprocessor_config.json") as caught:
        extract_model(without, audio, tmp_path / "b.h5")
    assert sum("preprocessor_config" in str(w.message) for w in caught) == 1
    with ActivationStore(tmp_path / "a.h5") as a, ActivationStore(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(
            a.frames("encoder", "encoder.layers.1")[0], b.frames("encoder", "encoder.layers.1")[0]
        )


def test_without_transformers_a_folder_is_a_one_line_error(whisper, monkeypatch, capsys):
    folder, _ = whisper
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert main(["layers", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'cka-probe[hf]'" in err and len(err.splitlines()) == 1


def test_word_spans_of_a_hf_model_is_a_one_line_error(whisper, tmp_path, capsys):
    folder, manifest = whisper
    assert (
        main(
            ["extract", str(folder), "--data", str(manifest), "--out", str(tmp_path / "a.h5"), "--word-spans"]
        )
        == 2
    )
    assert "--word-spans needs a bundled checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()


def test_layers_prints_the_model_own_names(whisper, capsys):
    folder, _ = whisper
    assert main(["layers", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    chosen = [line.split()[1] for line in lines if line.startswith("*")]
    assert chosen == [
        "model.encoder.layers.0",
        "model.encoder.layers.1",
        "model.decoder.layers.0",
        "model.decoder.layers.1",
    ]


def test_reproduce_runs_the_study_on_three_brought_whisper_models(tmp_path):
    """Three Whisper "fine-tunes" (random seeds) as SSO, MSO and DO: evaluation on each role's tasks (so the
    CER tables tell SO from DO), extraction with roles, tables, report."""
    from cka_probe.pipeline import reproduce

    data = tmp_path / "data"
    manifest = noise_corpus(data, SECONDS * 2, texts=TEXTS * 2)
    manifest.rename(data / "test.jsonl")
    models = {
        ("en", role): str(with_generation_prompt(whisper_folder(tmp_path / role, seed=k)))
        for k, role in enumerate(("sso", "mso", "do"))
    }
    report = reproduce(["en"], "tiny", tmp_path / "run", data={"en": data}, models=models, jobs=1)
    assert report.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained; the floor is drawn in memory
    with ActivationStore(tmp_path / "run" / "activations" / "en" / "mso.h5") as store:
        assert store.attrs["role"] == "mso" and store.attrs["adapter"] == "whisper"
    table = (tmp_path / "run" / "tables" / "cross_task.csv").read_text()
    assert "model.encoder.layers.1" in table and "model.decoder.layers.1" in table
    cer = pd.read_csv(tmp_path / "run" / "tables" / "cer.csv")  # SSO and MSO are SO, DO is DO
    assert set(cer["task"]) == {"surface", "meaning"} and cer[["so_cer", "do_cer"]].notna().all(axis=None)
    text = report.read_text()
    assert "## Recognition: single-output (SO) vs dual-output (DO)" in text
    assert "train longer" not in text  # nothing was trained: advice in terms of what was brought
    assert text.count("scored after transformers' Whisper BasicTextNormalizer") == 3  # the default, stated


def test_bare_whisper_model_and_audio_longer_than_the_window(tmp_path):
    folder = whisper_folder(tmp_path / "bare", conditional=False)
    manifest = noise_corpus(tmp_path / "data", [0.4, 0.6], texts=TEXTS[:2])
    with ActivationStore(extract_model(folder, manifest, tmp_path / "a.h5")) as store:
        assert store.layers("encoder") == ["encoder.layers.0", "encoder.layers.1"]
        assert store.layers("decoder/meaning") == ["decoder.layers.0", "decoder.layers.1"]
        assert store.row_counts("encoder", "encoder.layers.1").tolist() == [20, 30]  # ⌈S / 320⌉
    long = noise_corpus(tmp_path / "long", [30.5], texts=TEXTS[:1])
    with pytest.raises(
        CKAProbeError, match=r"u0\.wav: utterance 'u0' lasts 30\.50 s, longer than Whisper's 30-second"
    ):
        extract_model(folder, long, tmp_path / "b.h5")
