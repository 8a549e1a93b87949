"""The whole study on brought models: replicates, the random floor, CER stages, the report, HF folders as
transformers 5 saves them.

The models are tiny random-weight Whisper folders saved with ``save_pretrained``; nothing is downloaded.
Transcription is replaced by a fake ``cka_probe.extract.models.transcribe`` module, so no real
recognition runs.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from cka_probe.cli import main  # noqa: E402
from cka_probe.errors import CKAProbeError  # noqa: E402
from cka_probe.extract.models import extract_model  # noqa: E402
from cka_probe.extract.models.hf import feature_extractor  # noqa: E402
from cka_probe.pipeline import plan, reproduce  # noqa: E402
from cka_probe.pipeline.study_plan import SCALES, measured_cer  # noqa: E402
from cka_probe.store import ActivationStore  # noqa: E402
from cka_probe.study.report.brought import ceiling_advice, replicates_advice  # noqa: E402
from cka_probe.study.schema import CEILING, FLOOR_NAME  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import SECONDS, TEXTS, noise_corpus, whisper_folder  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Four Whisper "fine-tunes" (SSO replicates 0 and 1, MSO, DO) and a test manifest."""
    root = tmp_path_factory.mktemp("brought")
    data = root / "data"
    noise_corpus(data, SECONDS * 2, texts=TEXTS * 2).rename(data / "test.jsonl")
    names = ("sso", "sso-1", "mso", "do")
    return {name: whisper_folder(root / name, seed=k) for k, name in enumerate(names)}, data


def models_of(folders: dict[str, Path]) -> dict[tuple[str, str], str]:
    keys = {"sso": "sso", "sso-1": "sso#1", "mso": "mso", "do": "do"}
    return {("en", keys[name]): str(folder) for name, folder in folders.items()}


@pytest.fixture
def transcribe(monkeypatch):
    """A fake transcribe module: DO cannot transcribe, the others write a CSV (its content is never read
    here); returns the models it was asked to evaluate."""
    asked: list[str] = []
    module = types.ModuleType("cka_probe.extract.models.transcribe")

    class CannotTranscribe(CKAProbeError):
        pass

    def evaluate_model(model, manifest, out_csv, *, device="cpu", **_):
        asked.append(Path(model).name)
        if Path(model).name == "do":
            raise CannotTranscribe(f"{model}: no language-model head")
        Path(out_csv).write_text("id\n")

    module.CannotTranscribe, module.evaluate_model = CannotTranscribe, evaluate_model
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return asked


def test_replicates_and_the_floor_of_brought_models_reach_the_tables_and_the_report(
    folders, transcribe, tmp_path, capsys
):
    models, data = folders
    run = tmp_path / "run"
    report = reproduce(["en"], "tiny", run, data={"en": data}, models=models_of(models), jobs=1)
    assert sorted(transcribe) == ["do", "mso", "sso", "sso-1"]
    assert f"{models['do']} cannot transcribe:" in capsys.readouterr().out
    for name, role, replicate in (("sso-s1", "sso", 1), ("rand", "rand", 0)):
        with ActivationStore(run / "activations" / "en" / f"{name}.h5") as store:
            assert (store.attrs["role"], store.attrs["replicate"]) == (role, replicate)
    assert {CEILING, FLOOR_NAME} <= set(pd.read_csv(run / "tables" / "cross_task.csv")["comparison"])
    assert not (run / "tables" / "cer.csv").exists()  # DO has no CER, so no SO-DO gap can be read
    assert json.loads((run / "cer" / "en" / "do.json").read_text())["cer"] is None
    assert all(not record["cer"] for record in json.loads((run / "tables" / "brought.json").read_text()))
    text = report.read_text()
    assert "## Brought models" in text and "`--model en:mso#1=…`" in text and "`--model en:do#1=…`" in text
    assert "--seeds 3" not in text and "needs two SSO" not in text  # the ceiling was measured
    assert "One model per role was brought" in text
    assert "SSO replicate 0's architecture with fresh weights" in text


def test_brought_models_train_nothing_and_their_floor_is_sso_drawn_afresh(folders, tmp_path):
    models, data = folders
    brought = {key: value for key, value in models_of(models).items() if key[1] != "sso#1"}
    stages = plan(tmp_path / "run", ["en"], SCALES["tiny"], data={"en": data}, models=brought)
    names = [stage.name for stage in stages]
    assert not any(name.startswith(("train", "init")) for name in names)
    floor = next(stage for stage in stages if stage.name == "extract en rand")
    assert (floor.kwargs["ckpt"], floor.kwargs["random_init"]) == (str(models["sso"]), 6)
    tables = next(stage for stage in stages if stage.name == "tables")
    cer = tmp_path / "run" / "cer" / "en"
    assert tables.kwargs["cer"] == [cer / f"{m}.csv" for m in ("do", "mso", "sso")]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("en:sso#2=M", "--model en:sso#2=M: replicates of en:sso are numbered 0, 1, ... without gaps"),
        ("en:sso#x=M", "--model en:sso#x=M: expected LANG:ROLE=MODEL or LANG:ROLE#K=MODEL"),
        ("en:sso#0=M", "--model en:sso#0=M: replicate 0 of en:sso is brought twice"),
        ("en:rand=M", "--model en:rand=M: expected LANG:ROLE=MODEL or LANG:ROLE#K=MODEL"),
    ],
)
def test_bad_replicates_are_one_line_naming_the_option(tmp_path, capsys, option, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("")
    options = ["--data", f"en={data}", "--model", "en:sso=M", "--model", option]
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path / "run"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cer_is_read_only_for_languages_where_every_role_has_one(tmp_path):
    names = ("sso", "mso", "do", "sso-s1")
    files = {lang: [tmp_path / lang / f"{m}.csv" for m in names] for lang in ("en", "ko")}
    for path in [*files["en"], *files["ko"][:2]]:  # ko's DO could not transcribe
        path.parent.mkdir(exist_ok=True)
        path.write_text("id\n")
    assert measured_cer(files["en"] + files["ko"]) == files["en"]


def test_report_advice_names_the_option_that_brings_what_is_missing(tmp_path):
    records = [
        {"language": "en", "role": "sso", "replicate": 0, "model": "m", "cer": True},
        {"language": "en", "role": "do", "replicate": 0, "model": "d", "cer": True},
        {"language": "en", "role": "do", "replicate": 1, "model": "d1", "cer": True},
    ]
    (tmp_path / "brought.json").write_text(json.dumps(records))
    assert replicates_advice(tmp_path) == (
        "bring replicates with `--model en:sso#1=…` and run `cka-probe reproduce --seeds 3` for the "
        "trained roles"
    )
    assert ceiling_advice(tmp_path, "en") == "needs two SSO models: bring a second with `--model en:sso#1=…`"
    assert ceiling_advice(tmp_path, "ko") == "needs two SSO seeds: run with `--seeds 2` or more"


def processor_folder(folders: dict[str, Path], out: Path, mel_bins: int) -> Path:
    """A Whisper folder as transformers 5 saves a model and its processor: the feature extractor inside
    ``processor_config.json``, no ``preprocessor_config.json``; ``mel_bins`` in the model and the features."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    source = folders["sso"]
    config = WhisperConfig.from_pretrained(source)
    config.num_mel_bins = mel_bins
    WhisperForConditionalGeneration(config).save_pretrained(out)
    features = WhisperFeatureExtractor(feature_size=mel_bins, hop_length=160, chunk_length=30)
    tokenizer = WhisperTokenizer.from_pretrained(source)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    (out / "generation_config.json").write_text((source / "generation_config.json").read_text())
    return out


def test_processor_config_is_read_as_transformers_reads_it_without_a_warning(folders, tmp_path):
    from transformers import WhisperFeatureExtractor

    models, data = folders
    folder = processor_folder(models, tmp_path / "p", mel_bins=128)
    assert not (folder / "preprocessor_config.json").exists()
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = feature_extractor(
            folder, WhisperFeatureExtractor, require={"feature_size": 128}, feature_size=128
        )
    theirs = WhisperFeatureExtractor.from_pretrained(folder)
    got, want = (f([audio], sampling_rate=16000, return_tensors="np").input_features for f in (ours, theirs))
    assert got.shape[1] == 128
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extract_model(folder, data / "test.jsonl", tmp_path / "p.h5", tasks=[])
    assert not [w for w in caught if "preprocessor" in str(w.message)]


def test_prompts_reach_brought_whisper_stages_and_a_change_redoes_them(folders, tmp_path, monkeypatch):
    """The heavy actions are fakes that record their options."""
    from cka_probe.pipeline import study_plan

    calls: dict[str, dict] = {}

    def fake(partial: Path, **options) -> None:
        output = partial.name[1 : -len(".partial")]
        calls[f"{partial.parent.name}/{output}"] = options
        (partial / ("made.json" if "." not in output else output)).write_text(
            json.dumps(options, default=str)
        )

    for name in ("evaluate_brought_action", "extract_action", "tables_action"):
        monkeypatch.setattr(study_plan, name, fake)
    for name in ("figures_action", "report_action"):
        monkeypatch.setattr(study_plan, name, fake)
    models, data = folders
    pt = tmp_path / "mso.pt"
    pt.write_bytes(b"weights")
    brought = [f"en:sso={models['sso']}", f"en:mso={pt}", f"en:do={models['do']}"]
    args = [
        "reproduce",
        "--lang",
        "en",
        "--jobs",
        "1",
        "--data",
        f"en={data}",
        "--out",
        str(tmp_path / "run"),
    ]
    args += [a for model in brought for a in ("--model", model)]
    prompts = {"surface": "<|surface|>", "meaning": "<|meaning|>"}
    assert main([*args, *(a for t, p in prompts.items() for a in ("--prompt", f"{t}={p}"))]) == 0
    for role in ("sso", "do"):
        assert calls[f"en/{role}.h5"]["prompts"] == calls[f"en/{role}.json"]["prompts"] == prompts
    assert "prompts" not in calls["en/mso.h5"] and "prompts" not in calls["en/mso.json"]
    assert calls["en/rand.h5"]["prompts"] == prompts  # SSO's architecture and tokenizer, so its prompts
    assert [list(calls[f"en/{m}.json"]["tasks"]) for m in ("sso", "do")] == [
        ["surface"],
        ["surface", "meaning"],
    ]
    assert calls["en/sso.json"]["normalise"] == "basic"
    calls.clear()
    file = tmp_path / "prompts.json"
    file.write_text(json.dumps({"surface": "<|surface|>", "meaning": "mean"}))
    assert main([*args, "--prompts", str(file)]) == 0
    redone = {key for key in calls if key.startswith("en/")}
    assert redone == {"en/sso.h5", "en/sso.json", "en/do.h5", "en/do.json", "en/rand.h5"}
    assert calls["en/do.json"]["prompts"]["meaning"] == "mean"
    calls.clear()
    assert main([*args, "--prompts", str(file), "--normalise", "none"]) == 0  # redoes the evaluations only
    assert {k for k in calls if k.startswith("en/")} == {f"en/{m}.json" for m in ("sso", "mso", "do")}
    assert calls["en/do.json"]["normalise"] == "none"
    calls.clear()
    scoped = ["--prompt", "do:surface=<|surface|>", "--prompt", "do:meaning=<|meaning|>"]
    assert main([*args, *scoped]) == 0  # only DO selects its output by a prompt
    assert calls["en/do.h5"]["prompts"] == calls["en/do.json"]["prompts"] == prompts
    assert all("prompts" not in calls[f"en/{name}"] for name in ("sso.h5", "sso.json", "rand.h5"))


def test_prompts_of_a_model_are_the_common_ones_updated_by_its_role_and_replicate(folders):
    from cka_probe.pipeline.study_plan import Brought, prompts_of_model

    models, _ = folders
    prompts = {"surface": "<|s|>", "sso": {"meaning": "<|m|>"}, "sso#1": {"surface": "<|s1|>"}}
    of = {k: prompts_of_model(prompts, Brought("en", "sso", k, str(models["sso"]))) for k in (0, 1)}
    assert of == {0: {"surface": "<|s|>", "meaning": "<|m|>"}, 1: {"surface": "<|s1|>", "meaning": "<|m|>"}}
    assert prompts_of_model(prompts, Brought("en", "do", 0, str(models["do"]))) == {"surface": "<|s|>"}
    assert prompts_of_model(prompts, Brought("en", "mso", 0, "mso.pt")) is None


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("mso:surface=x", "--prompt mso:...: no Whisper folder is brought as mso"),
        (":surface=x", "is not [ROLE:]TASK=PROMPT"),
    ],
)
def test_a_prompt_for_a_role_without_a_whisper_folder_is_one_line(folders, tmp_path, capsys, prompt, message):
    models, data = folders
    brought = [f"en:sso={models['sso']}", "en:mso=m.pt", f"en:do={models['do']}"]
    options = ["--data", f"en={data}", *(a for model in brought for a in ("--model", model))]
    args = ["reproduce", "--lang", "en", "--out", str(tmp_path / "run"), *options, "--prompt", prompt]
    try:
        code = main(args)
    except SystemExit as exit_:  # a usage error
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
