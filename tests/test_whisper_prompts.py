"""Task prompts: a dual-output Whisper whose one decoder selects its output by a task token.

The model is a tiny random-weight Whisper whose tokenizer has two added task
tokens (``<|surface|>``, ``<|meaning|>``, embeddings resized); nothing is
downloaded. Each task's stored rows must equal the model's own forward on
``<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> <|task|>``
+ the transcript, from the task token's position on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

pytest.importorskip("transformers")

from cka_probe.cli import main  # noqa: E402
from cka_probe.errors import CKAProbeError  # noqa: E402
from cka_probe.extract.models import extract_model  # noqa: E402
from cka_probe.store import ActivationStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import noise_corpus, wav2vec2_folder, whisper_task_folder  # noqa: E402

torch.set_num_threads(1)
TEXTS = ["hello there", "a cat", "go home now"]
PROMPTS = {"surface": "<|surface|>", "meaning": "<|meaning|>"}
PREFIX = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    root = tmp_path_factory.mktemp("dual")
    return whisper_task_folder(root / "model"), noise_corpus(root / "data", [0.5, 0.7, 0.3], texts=TEXTS)


def _extract(folder: Path, manifest: Path, out: Path, prompts: list[str]) -> int:
    args = ["extract", str(folder), "--data", str(manifest), "--out", str(out), "--batch-size", "2"]
    return main(args + [a for p in prompts for a in ("--prompt", p)])


def test_rows_of_each_task_equal_the_model_after_its_prompt(dual, tmp_path):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    folder, manifest = dual
    out = tmp_path / "do.h5"
    assert _extract(folder, manifest, out, [f"{t}={p}" for t, p in PROMPTS.items()]) == 0
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features, tok = WhisperFeatureExtractor.from_pretrained(folder), WhisperTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    with ActivationStore(out) as store, torch.no_grad():
        assert store.attrs["prompts"] == PROMPTS
        for row in rows:
            wave, _ = soundfile.read(manifest.parent / row["audio"], dtype="float32")
            feats = features(wave, sampling_rate=16000, return_tensors="pt").input_features
            for task, prompt in PROMPTS.items():
                ids = (
                    tok.convert_tokens_to_ids([*PREFIX, prompt])
                    + tok(row[task], add_special_tokens=False).input_ids
                )
                hidden = model(
                    input_features=feats, decoder_input_ids=torch.tensor([ids]), output_hidden_states=True
                ).decoder_hidden_states
                # hidden[1]: layer 0's output, untouched by the final layer norm; rows from the task token on
                stored = store.frames(f"decoder/{task}", "model.decoder.layers.0", [row["id"]])[0]
                np.testing.assert_allclose(stored, hidden[1][0, 4:], atol=2e-5, rtol=1e-4)
                tokens, _ = store.tokens(f"decoder/{task}", "model.decoder.layers.0", [row["id"]])
                assert tokens.tolist() == ids[4:]


def test_the_prompt_changes_the_rows(dual, tmp_path):
    folder, manifest = dual
    stores = {}
    for name, prompt in (("surface", "<|surface|>"), ("meaning", "<|meaning|>"), ("text", " say it")):
        stores[name] = extract_model(
            folder, manifest, tmp_path / f"{name}.h5", tasks=["surface"], prompts={"surface": prompt}
        )
    rows = {}
    for name, path in stores.items():
        with ActivationStore(path) as store:
            rows[name] = store.frames("decoder/surface", "model.decoder.layers.1", ["u0"])[0]
    assert rows["text"].shape[0] == rows["surface"].shape[0]  # the text prompt's last token is the first row
    for a, b in (("surface", "meaning"), ("surface", "text")):
        assert np.abs(rows[a] - rows[b]).max() > 1e-2


def test_a_prompt_token_the_tokenizer_lacks_is_one_line(dual, tmp_path, capsys):
    folder, manifest = dual
    out = tmp_path / "a.h5"
    assert _extract(folder, manifest, out, ["surface=<|surfce|>", "meaning=<|meaning|>"]) == 2
    err = capsys.readouterr().err.strip()
    assert "prompt for surface '<|surfce|>': <|surfce|> is not a token of the tokenizer" in err
    assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"surface": "<|surface|>"}, r"no prompt for task meaning"),
        (
            {"surface": "<|surface|>", "meaning": "<|meaning|>", "gloss": "x"},
            r"prompt for 'gloss': not a task",
        ),
        ({"surface": "", "meaning": "<|meaning|>"}, r"prompt for surface '': the prompt has no tokens"),
    ],
)
def test_prompts_that_do_not_fit_the_tasks_are_refused(dual, tmp_path, prompts, message):
    folder, manifest = dual
    with pytest.raises(CKAProbeError, match=message):
        extract_model(folder, manifest, tmp_path / "a.h5", prompts=prompts)


def test_prompts_file_and_its_mistakes(dual, tmp_path, capsys):
    folder, manifest = dual
    good, bad = tmp_path / "p.json", tmp_path / "bad.json"
    good.write_text(json.dumps(PROMPTS))
    bad.write_text('["<|surface|>"]')
    args = ["extract", str(folder), "--data", str(manifest), "--tasks", "surface", "meaning"]
    assert main([*args, "--out", str(tmp_path / "a.h5"), "--prompts", str(good)]) == 0
    with ActivationStore(tmp_path / "a.h5") as store:
        assert store.attrs["prompts"] == PROMPTS
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b.h5"), "--prompts", str(bad)]) == 2
    assert "bad.json: not a JSON object of task -> prompt" in capsys.readouterr().err
    assert (
        main([*args, "--out", str(tmp_path / "c.h5"), "--prompt", "surface=a", "--prompt", "surface=b"]) == 2
    )
    assert "--prompt: task surface is given twice" in capsys.readouterr().err


def test_a_model_without_a_prompted_decoder_is_refused(dual, tmp_path):
    _, manifest = dual
    folder = wav2vec2_folder(tmp_path / "w2v", norm="layer")
    with pytest.raises(CKAProbeError, match=r"w2v: --prompt needs a decoder that takes a task prompt"):
        extract_model(folder, manifest, tmp_path / "a.h5", prompts=PROMPTS)
