"""``cka-probe evaluate`` on models that are not bundled: Whisper ``generate``, greedy CTC, adapters.

Each model's hypotheses are checked against the model run by hand on each
utterance alone (its own ``generate`` or forward, decoded by its tokenizer),
and every CER against a Levenshtein distance computed here. The models are
tiny random-weight folders saved with ``save_pretrained``; nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import unicodedata
from itertools import groupby
from pathlib import Path

import pandas as pd
import pytest
import soundfile
import torch

pytest.importorskip("transformers")  # the [hf] extra; CI's test extra installs it

from cka_probe.asr.features import fbank  # noqa: E402
from cka_probe.cli import main  # noqa: E402
from cka_probe.extract.models.transcribe import CannotTranscribe, evaluate_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import (  # noqa: E402
    noise_corpus,
    wav2vec2_folder,
    whisper_folder,
    whisper_task_folder,
    with_generation_prompt,
)

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wenet_style_adapter.py"
TEXTS = ["Hello, there!", "a cat", "hi", "Go home now.", "yes"]
SECONDS = [0.5, 0.7, 0.5, 0.3, 0.9]
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "c", "e", "h", "i", "o", "t"]


def levenshtein(a: str, b: str) -> int:
    """Edit distance by the textbook dynamic programme (the test's own, independent of rapidfuzz)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def manifest_rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def wave(manifest: Path, row: dict):
    return soundfile.read(manifest.parent / row["audio"], dtype="float32")[0]


def assert_scored(table: pd.DataFrame, manifest: Path, hyps: dict[str, str], tasks: tuple[str, ...]) -> None:
    """Every (utterance, task) row holds the expected hypothesis and its CER against the reference."""
    refs = {r["id"]: r for r in manifest_rows(manifest)}
    assert list(table["task"].unique()) == list(tasks)
    assert len(table) == len(refs) * len(tasks)
    for row in table.itertuples():
        ref = folded(refs[row.id][row.task])
        assert row.ref == ref and row.hyp == folded(hyps[row.id])
        assert row.errors == levenshtein(ref, row.hyp) and row.ref_len == len(ref)
        assert row.cer == pytest.approx(100 * row.errors / len(ref))
        assert row.surface_meaning_ed == levenshtein(refs[row.id]["surface"], refs[row.id]["meaning"])


def whisper_with_prompt_tokens(folder: Path) -> Path:
    """:func:`whisper_folder` with the generation config a released Whisper has for its prompt."""
    return with_generation_prompt(whisper_folder(folder))


def ctc_folder(folder: Path, norm: str) -> Path:
    """:func:`wav2vec2_folder` with a CTC head and a character tokenizer for its 12 outputs."""
    from transformers import Wav2Vec2CTCTokenizer

    wav2vec2_folder(folder, norm=norm, ctc=True)
    vocab = folder.parent / f"{folder.name}-vocab.json"
    vocab.write_text(json.dumps({token: i for i, token in enumerate(CTC_VOCAB)}))
    Wav2Vec2CTCTokenizer(str(vocab)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return noise_corpus(tmp_path_factory.mktemp("data"), SECONDS, texts=TEXTS)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return whisper_with_prompt_tokens(tmp_path_factory.mktemp("whisper") / "model")


def test_whisper_hypotheses_are_its_own_greedy_generate(whisper, corpus, tmp_path):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    out = tmp_path / "w.csv"
    table = evaluate_model(whisper, corpus, out, batch_size=3, normalise="none")
    model = WhisperForConditionalGeneration.from_pretrained(whisper).eval()
    features, tok = (
        WhisperFeatureExtractor.from_pretrained(whisper),
        WhisperTokenizer.from_pretrained(whisper),
    )
    hyps = {}
    with torch.no_grad():
        for row in manifest_rows(corpus):
            feats = features(wave(corpus, row), sampling_rate=16000, return_tensors="pt").input_features
            ids = model.generate(  # at most the model's own max_target_positions decoder tokens
                feats, language="en", task="transcribe", num_beams=1, do_sample=False, max_length=64
            )
            hyps[row["id"]] = tok.batch_decode(ids, skip_special_tokens=True)[0]
    assert_scored(table, corpus, hyps, ("surface", "meaning"))
    assert set(table["decoding"]) == {"greedy"}
    summary = json.loads(out.with_name("w.csv.summary.json").read_text())
    assert summary["decoding"] == "greedy" and summary["normalise"] == "none" and summary["n_utterances"] == 5
    surface = table[table["task"] == "surface"]
    assert summary["tasks"]["surface"]["cer"] == pytest.approx(
        100 * surface["errors"].sum() / surface["ref_len"].sum()
    )


PROMPTS = {"surface": "<|surface|>", "meaning": "<|meaning|>"}


def test_a_prompted_whisper_generates_each_task_after_its_own_prompt(tmp_path, corpus, monkeypatch):
    from transformers import (
        GenerationMixin,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    folder = with_generation_prompt(whisper_task_folder(tmp_path / "do"))
    generate, passed = GenerationMixin.generate, []

    def spy(self, *args, **kwargs):
        passed.append(kwargs["decoder_input_ids"].tolist())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    out = tmp_path / "do.csv"
    table = evaluate_model(folder, corpus, out, batch_size=5, normalise="none", prompts=PROMPTS)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    features, tok = WhisperFeatureExtractor.from_pretrained(folder), WhisperTokenizer.from_pretrained(folder)
    prefix = tok.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    prompt_ids = {task: prefix + [tok.convert_tokens_to_ids(p)] for task, p in PROMPTS.items()}
    assert passed == [[prompt_ids[task]] * 5 for task in PROMPTS]
    with torch.no_grad():
        for task, ids in prompt_ids.items():
            hyps = {}
            for row in manifest_rows(corpus):
                feats = features(wave(corpus, row), sampling_rate=16000, return_tensors="pt").input_features
                options = {"num_beams": 1, "do_sample": False, "max_length": 64}
                made = generate(model, input_features=feats, decoder_input_ids=torch.tensor([ids]), **options)
                hyps[row["id"]] = tok.batch_decode(made[:, len(ids) :], skip_special_tokens=True)[0]
            assert_scored(table[table["task"] == task], corpus, hyps, (task,))
    assert json.loads(out.with_name("do.csv.summary.json").read_text())["prompts"] == PROMPTS


def test_cli_prompts_file_reaches_the_summary_and_other_models_refuse_prompts(tmp_path, corpus, capsys):
    folder = with_generation_prompt(whisper_task_folder(tmp_path / "do"))
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    out = tmp_path / "do.csv"
    args = ["evaluate", str(folder), "--data", str(corpus), "--out", str(out), "--limit", "1"]
    assert main([*args, "--prompts", str(prompts)]) == 0
    assert json.loads(out.with_name("do.csv.summary.json").read_text())["prompts"] == PROMPTS
    ctc = ctc_folder(tmp_path / "ctc", "group")
    args = ["evaluate", str(ctc), "--data", str(corpus), "--out", str(tmp_path / "c.csv")]
    assert main([*args, "--prompt", "surface=<|surface|>"]) != 0
    assert "--prompt needs a decoder that takes a task prompt" in capsys.readouterr().err


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_ctc_hypotheses_are_the_argmax_decoded_by_the_tokenizer(tmp_path, corpus, norm):
    from transformers import AutoModelForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    folder = ctc_folder(tmp_path / "ctc", norm)
    table = evaluate_model(
        folder, corpus, tmp_path / "c.csv", batch_size=2, normalise="none", tasks=["surface"]
    )
    model = AutoModelForCTC.from_pretrained(folder).eval()
    features = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    tok = Wav2Vec2CTCTokenizer.from_pretrained(folder)
    hyps = {}
    with torch.no_grad():
        for row in manifest_rows(corpus):
            values = features(wave(corpus, row), sampling_rate=16000, return_tensors="pt").input_values
            hyps[row["id"]] = tok.batch_decode(model(values).logits.argmax(-1))[0]
    assert_scored(table, corpus, hyps, ("surface",))
    assert set(table["decoding"]) == {"ctc"}


def test_basic_normalisation_is_applied_to_references_and_hypotheses(whisper, corpus, tmp_path):
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    plain = evaluate_model(whisper, corpus, tmp_path / "n.csv", tasks=["surface"], normalise="none")
    basic = evaluate_model(whisper, corpus, tmp_path / "b.csv", tasks=["surface"])
    normaliser = BasicTextNormalizer()
    assert list(basic["ref"]) == [folded(normaliser(t)) for t in TEXTS]
    assert list(basic["hyp"]) == [folded(normaliser(h)) for h in plain["hyp"]]
    assert list(basic["errors"]) == [levenshtein(r, h) for r, h in zip(basic["ref"], basic["hyp"])]
    assert json.loads((tmp_path / "b.csv.summary.json").read_text())["normalise"] == "basic"


def test_the_example_adapter_transcribes_with_greedy_ctc(tmp_path, corpus, capsys):
    import importlib.util

    out = tmp_path / "a.csv"
    args = ["evaluate", f"{EXAMPLE}:adapter", "--data", str(corpus), "--out", str(out), "--normalise", "none"]
    assert main(args) == 0
    assert "surface  CER" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = example.adapter().build("cpu")
    hyps = {}
    with torch.no_grad():
        for row in manifest_rows(corpus):
            feats = fbank(wave(corpus, row))
            best = model.ctc(model(feats[None], torch.tensor([len(feats)])))[0].argmax(-1).tolist()
            hyps[row["id"]] = "".join(example.ALPHABET[k] for k, _ in groupby(best) if k != 0)
    table = pd.read_csv(out, dtype={"id": str, "ed_bin": str}, keep_default_na=False)
    assert_scored(table, corpus, hyps, ("surface",))
    assert set(table["decoding"]) == {"adapter"}


def adapter_file(tmp_path: Path, transcribe: str | None) -> str:
    """The example adapter, without a transcribe duty or with ``transcribe``'s body."""
    body = f"    def transcribe(self, model, batch):\n        {transcribe}\n" if transcribe else ""
    path = tmp_path / "mine.py"
    path.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('example', {str(EXAMPLE)!r})\n"
        "example = importlib.util.module_from_spec(spec); spec.loader.exec_module(example)\n"
        "class Mine(example.WenetStyleAdapter):\n"
        f"    transcribe = None\n{body}"
        "def make():\n    return Mine()\n"
    )
    return f"{path}:make"


def test_an_adapter_gets_cer_for_every_task_it_transcribes(tmp_path, corpus):
    spec = adapter_file(
        tmp_path, "return {'surface': ['hello there'] * len(batch['ids']), 'meaning': list(batch['ids'])}"
    )
    table = evaluate_model(spec, corpus, tmp_path / "t.csv", batch_size=2, normalise="none")
    refs = {r["id"]: r for r in manifest_rows(corpus)}
    assert_scored(table[table["task"] == "surface"], corpus, {i: "hello there" for i in refs}, ("surface",))
    assert_scored(table[table["task"] == "meaning"], corpus, {i: i for i in refs}, ("meaning",))


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda tmp: whisper_folder(tmp / "bare", conditional=False),
            "WhisperModel has no language-model head",
        ),
        (lambda tmp: whisper_folder(tmp / "old"), "lacks no_timestamps_token_id, task_to_id"),
        (lambda tmp: wav2vec2_folder(tmp / "w2v"), "wav2vec2 model without a CTC head"),
        (lambda tmp: wav2vec2_folder(tmp / "w2v", ctc=True), "no CTC tokenizer (vocab.json)"),
        (lambda tmp: adapter_file(tmp, None), "the adapter has no transcribe(model, batch) duty"),
    ],
)
def test_a_model_that_cannot_transcribe_is_one_line(tmp_path, corpus, capsys, make, says):
    model = str(make(tmp_path))
    with pytest.raises(CannotTranscribe, match=f"^{re.escape(model)}: .*{re.escape(says)}"):
        evaluate_model(model, corpus, tmp_path / "x.csv")
    capsys.readouterr()
    assert main(["evaluate", model, "--data", str(corpus), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_a_whisper_folder_without_tokenizer_cannot_transcribe(whisper, corpus, tmp_path):
    copy = shutil.copytree(whisper, tmp_path / "notok")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (copy / name).unlink(missing_ok=True)
    with pytest.raises(CannotTranscribe, match="no tokenizer files"):
        evaluate_model(copy, corpus, tmp_path / "x.csv")


def test_cli_refuses_an_output_that_is_an_input_and_options_of_the_other_kind(
    whisper, corpus, tmp_path, capsys
):
    assert main(["evaluate", str(whisper), "--data", str(corpus), "--out", str(corpus)]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert (
        main(
            ["evaluate", str(whisper), "--data", str(corpus), "--out", str(tmp_path / "x.csv"), "--beam", "2"]
        )
        == 2
    )
    assert "--beam does not apply" in capsys.readouterr().err
    ckpt = tmp_path / "m.pt"
    assert (
        main(
            [
                "evaluate",
                str(ckpt),
                "--data",
                str(corpus),
                "--out",
                str(tmp_path / "x.csv"),
                "--normalise",
                "none",
            ]
        )
        == 2
    )
    assert "--normalise does not apply to a checkpoint .pt" in capsys.readouterr().err
