"""Every bad input to extract, evaluate, train, layers and synth is one line naming the culprit, exit 2.

Checkpoints (unreadable bytes, Python objects, wrong types in the dict or its
config, weights that do not fit or are not finite), manifests (non-finite
segments, folders, binary garbage), audio with non-finite samples,
non-finite activations, bad options, and an output that names an input.
"""

from __future__ import annotations

import json
import random

import h5py
import numpy as np
import pytest
import soundfile
import torch
from helpers import small_parts
from torch import nn

from cka_probe.asr.checkpoint import load_checkpoint, save_checkpoint
from cka_probe.asr.evaluate import evaluate
from cka_probe.cli import main
from cka_probe.data.audio import load_audio
from cka_probe.data.manifest import read_manifest
from cka_probe.errors import CKAProbeError
from cka_probe.extract.activations import extract_activations
from cka_probe.extract.models import extract_model


def one_error_line(capsys, *names: str) -> str:
    """The captured stderr, checked to be exactly one line naming each of ``names``."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert all(name in lines[0] for name in names), err
    assert "Traceback" not in err
    return lines[0]


def cli_usage_error(capsys, argv: list[str], *names: str) -> str:
    """Run ``argv``, expecting argparse's one-line error and exit status 2."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return one_error_line(capsys, *names)


@pytest.fixture(scope="module")
def raw_checkpoint(tmp_path_factory):
    """The dict of a small, valid DO checkpoint, as ``torch.load(weights_only=True)`` returns it."""
    model, config, tokenizers, cmvn = small_parts()
    path = save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "ok.pt",
        model=model,
        config=config,
        tokenizers=tokenizers,
        cmvn=cmvn,
        epoch=0,
        metrics={},
    )
    return torch.load(path, weights_only=True)


def edited(raw: dict, path, key: str | tuple[str, ...], value) -> object:
    """A copy of ``raw`` with ``key`` (dotted, or a tuple) set to ``value`` (deleted for ``...``), saved."""
    ckpt = {**raw, "config": json.loads(json.dumps(raw["config"])), "model_state": dict(raw["model_state"])}
    *parents, last = key.split(".") if isinstance(key, str) else key
    node = ckpt
    for part in parents:
        node[part] = dict(node[part]) if part != "config" else node[part]
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    torch.save(ckpt, path)
    return path


# --- checkpoints -------------------------------------------------------------------------------------


def test_random_byte_checkpoints_are_refused_without_unsafe_advice(tmp_path):
    rng = random.Random(0)
    for i in range(30):
        path = tmp_path / f"r{i}.pt"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        with pytest.raises(CKAProbeError, match=rf"r{i}\.pt: not a cka-probe checkpoint \(") as err:
            load_checkpoint(path)
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_empty_checkpoint_is_refused_naming_the_file(tmp_path, capsys):
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["layers", str(tmp_path / "empty.pt")]) == 2
    line = one_error_line(capsys, "empty.pt: not a cka-probe checkpoint")
    assert "empty" in line.split("checkpoint", 1)[1]


class Payload:
    """A class a safe load refuses to rebuild."""


def test_checkpoint_holding_python_objects_is_refused_as_unsafe_to_load(tmp_path, capsys):
    torch.save({"format_version": 2, "payload": Payload()}, tmp_path / "evil.pt")
    assert main(["layers", str(tmp_path / "evil.pt")]) == 2
    line = one_error_line(capsys, "evil.pt: not a cka-probe checkpoint (holds Python objects")
    assert "weights_only" not in line and "arbitrary code" not in line


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("config.encoder.d_model", "96", "encoder.d_model must be a positive integer"),
        ("config.encoder.n_layers", ..., "missing key encoder.n_layers"),
        ("config.decoder.n_heads", 0, "decoder.n_heads must be a positive integer"),
        ("config.encoder.dropout", 2.0, "encoder.dropout must be a number in [0, 1)"),
        ("config.encoder.conv_kernel", 4, "encoder.conv_kernel must be a positive odd integer"),
        ("config.train.epochs", 1.5, "train.epochs must be a positive integer"),
        ("config.loss.do", {"ctc": "a", "surface": 0.5, "meaning": 0.3}, "loss.do.ctc must be"),
        ("config.features", [], "missing section 'features'"),
        ("tasks", "surface", "'tasks' must be a non-empty list"),
        ("arch", "xo", "'arch' must be 'so' or 'do'"),
        ("epoch", "3", "'epoch' must be an integer"),
        ("model_state", {"w": [1.0]}, "'model_state' must be a dict of tensors"),
        ("tokenizers.surface", {"symbols": [1, 2], "language": "en", "unit": "char"}, "symbols must be"),
        ("tokenizers.meaning", ..., "no tokenizer for task 'meaning'"),
        ("cmvn.mean", torch.zeros(40, dtype=torch.float64), "'cmvn.mean' must be a tensor of shape (80,)"),
        ("cmvn.istd", torch.full((80,), float("nan"), dtype=torch.float64), "'cmvn.istd' has non-finite"),
        ("format_version", True, "format_version True"),
    ],
)
def test_checkpoint_with_wrong_type_or_missing_key_is_refused(raw_checkpoint, tmp_path, key, value, named):
    path = edited(raw_checkpoint, tmp_path / "bad.pt", key, value)
    with pytest.raises(CKAProbeError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and named in str(err.value)


def test_checkpoint_with_nan_weights_is_refused(raw_checkpoint, tmp_path):
    name = next(k for k, v in raw_checkpoint["model_state"].items() if v.is_floating_point())
    weight = raw_checkpoint["model_state"][name].clone()
    weight.view(-1)[0] = float("inf")
    path = edited(raw_checkpoint, tmp_path / "nan.pt", ("model_state", name), weight)
    with pytest.raises(CKAProbeError, match=rf"nan\.pt: weight {name} has non-finite values"):
        load_checkpoint(path)


def test_checkpoint_weights_that_do_not_fit_list_the_keys(raw_checkpoint, tmp_path):
    state = dict(raw_checkpoint["model_state"])
    gone = next(iter(state))
    del state[gone]
    state["decoders.extra.weight"] = torch.zeros(3)
    path = edited(raw_checkpoint, tmp_path / "misfit.pt", "model_state", state)
    with pytest.raises(CKAProbeError, match=r"misfit\.pt: weights do not fit") as err:
        load_checkpoint(path)
    assert f"missing {gone}" in str(err.value) and "unexpected decoders.extra.weight" in str(err.value)


# --- manifests and audio -----------------------------------------------------------------------------


@pytest.mark.parametrize("bound", ['"start": NaN', '"end": Infinity', '"start": -Infinity', '"start": true'])
def test_manifest_non_finite_or_boolean_segment_is_refused_naming_the_line(tmp_path, bound):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.jsonl").write_text(
        '{"id": "a", "audio": "a.wav"}\n{"id": "b", "audio": "a.wav", ' + bound + "}\n"
    )
    with pytest.raises(CKAProbeError, match=r"m\.jsonl:2: field '(start|end)' must be a non-negative number"):
        read_manifest(tmp_path / "m.jsonl", require=("id", "audio"))


def test_folder_or_binary_garbage_as_data_is_one_line(noise_checkpoint, tmp_path, capsys):
    ckpt, _, _ = noise_checkpoint
    assert main(["extract", str(ckpt), "--data", str(tmp_path), "--out", str(tmp_path / "a.h5")]) == 2
    one_error_line(capsys, f"{tmp_path}: is a folder")
    (tmp_path / "junk.jsonl").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(500)))
    assert (
        main(["extract", str(ckpt), "--data", str(tmp_path / "junk.jsonl"), "--out", str(tmp_path / "a.h5")])
        == 2
    )
    one_error_line(capsys, "junk.jsonl:1:")
    assert not list(tmp_path.glob("a.h5*"))


def test_audio_with_nan_samples_is_refused_naming_file_and_utterance(noise_checkpoint, tmp_path, capsys):
    wave = np.zeros(8000, dtype=np.float32)
    wave[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(CKAProbeError, match=r"nan\.wav \(utterance u7\): has non-finite samples"):
        load_audio(tmp_path / "nan.wav", 16000, utterance="u7")
    ckpt, _, _ = noise_checkpoint
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "u0", "audio": "nan.wav"}) + "\n")
    argv = ["extract", str(ckpt), "--data", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "a.h5")]
    assert main([*argv, "--tasks"]) == 2
    one_error_line(capsys, "nan.wav", "non-finite samples")
    assert not (tmp_path / "a.h5").exists()


# --- activations -------------------------------------------------------------------------------------


class Scale(nn.Module):
    """``(B, T, D) -> (B, T, D)``: a linear layer, so a NaN or a huge input reaches its output."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def batches_with(value: float) -> list[dict]:
    """Two batches of two utterances; utterance ``c`` holds ``value`` in its second row."""
    first = torch.ones(2, 3, 2)
    second = torch.ones(2, 3, 2)
    second[0, 1, 0] = value
    return [
        {"ids": ["a", "b"], "inputs": first, "lengths": torch.tensor([3, 3])},
        {"ids": ["c", "d"], "inputs": second, "lengths": torch.tensor([3, 2])},
    ]


@pytest.mark.parametrize(("value", "dtype"), [(float("nan"), "float32"), (1e6, "float16")])
def test_non_finite_activations_name_layer_and_utterance_and_publish_nothing(tmp_path, value, dtype):
    out = tmp_path / "acts.h5"
    with pytest.raises(
        CKAProbeError, match=r"layer proj \(encoder\): non-finite activations .* utterance c;"
    ):
        extract_activations(
            Scale(),
            batches_with(value),
            layers=["proj"],
            out=out,
            dtype=dtype,
            progress=False,
            commit_bytes=1,
        )
    assert not out.exists()


def test_nan_in_padding_past_the_valid_rows_is_not_refused(tmp_path):
    first, second = batches_with(float("nan"))
    second["lengths"] = torch.tensor([1, 2])  # utterance c's NaN sits in its padding
    out = extract_activations(
        Scale(), [first, second], layers=["proj"], out=tmp_path / "ok.h5", progress=False
    )
    assert out.exists()


# --- options and outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--batch-size", "0"), ("--batch-size", "-1"), ("--limit", "0"), ("--device", "tpu")],
)
def test_extract_bad_option_is_a_usage_line(noise_checkpoint, tmp_path, capsys, option, value):
    ckpt, manifest, _ = noise_checkpoint
    argv = ["extract", str(ckpt), "--data", str(manifest), "--out", str(tmp_path / "a.h5"), option, value]
    cli_usage_error(capsys, argv, option)


def test_evaluate_train_and_synth_bad_options_are_usage_lines(noise_checkpoint, tmp_path, capsys):
    ckpt, manifest, _ = noise_checkpoint
    cli_usage_error(
        capsys, ["evaluate", str(ckpt), "--data", str(manifest), "--out", "x.csv", "--beam", "0"], "--beam"
    )
    train = ["train", "--arch", "so", "--task", "surface", "--data", "a", "--valid", "b", "--out", "o"]
    cli_usage_error(capsys, [*train, "--epochs", "0"], "--epochs")
    cli_usage_error(capsys, [*train, "--lr", "nan"], "--lr")
    cli_usage_error(
        capsys, ["synth", "--lang", "en", "--n", "10", "--out", "o", "--workers", "0"], "--workers"
    )


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("limit", 0, "limit must be an integer >= 1"),
        ("device", "tpu", "'tpu' is not a torch device"),
        ("dtype", "int8", "dtype must be one of"),
    ],
)
def test_extract_model_api_refuses_bad_options(noise_checkpoint, tmp_path, option, value, named):
    ckpt, manifest, _ = noise_checkpoint
    with pytest.raises(CKAProbeError, match=named.replace("(", r"\(")):
        extract_model(ckpt, manifest, tmp_path / "a.h5", **{option: value})
    assert not list(tmp_path.iterdir())


def test_evaluate_api_refuses_bad_options_and_an_output_that_is_an_input(noise_checkpoint, tmp_path):
    ckpt, manifest, _ = noise_checkpoint
    with pytest.raises(CKAProbeError, match="batch_size must be an integer >= 1"):
        evaluate(ckpt, manifest, tmp_path / "cer.csv", batch_size=0)
    with pytest.raises(CKAProbeError, match="device 'gpu0' is not a torch device"):
        evaluate(ckpt, manifest, tmp_path / "cer.csv", device="gpu0")
    before = manifest.read_bytes()
    with pytest.raises(CKAProbeError, match=r"--out .*test\.jsonl is an input"):
        evaluate(ckpt, manifest, manifest)
    assert manifest.read_bytes() == before


def test_extract_out_naming_the_manifest_is_refused_and_the_manifest_kept(noise_checkpoint, capsys):
    ckpt, manifest, _ = noise_checkpoint
    before = manifest.read_bytes()
    assert main(["extract", str(ckpt), "--data", str(manifest), "--out", str(manifest), "--overwrite"]) == 2
    one_error_line(capsys, f"--out {manifest} is an input")
    assert manifest.read_bytes() == before


def test_word_spans_file_naming_an_input_is_refused(noise_checkpoint, tmp_path, capsys):
    ckpt, manifest, _ = noise_checkpoint
    copy = tmp_path / "acts.h5.words.jsonl"
    copy.write_bytes(manifest.read_bytes())
    argv = ["extract", str(ckpt), "--data", str(copy), "--out", str(tmp_path / "acts.h5"), "--word-spans"]
    assert main(argv) == 2
    one_error_line(capsys, "word-spans file", "is an input")
    assert not (tmp_path / "acts.h5").exists()


# --- provenance --------------------------------------------------------------------------------------


def test_store_records_each_utterance_source_with_its_segment(noise_checkpoint, tmp_path):
    ckpt, manifest, rows = noise_checkpoint
    lines = [
        {**rows[0], "audio": str(manifest.parent / rows[0]["audio"])},
        {**rows[1], "start": 0.05, "end": 0.15},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    # the manifest lies elsewhere: the second row's relative audio is copied beside it
    (tmp_path / rows[1]["audio"]).write_bytes((manifest.parent / rows[1]["audio"]).read_bytes())
    out = extract_model(ckpt, tmp_path / "m.jsonl", tmp_path / "a.h5", tasks=[], layers=["encoder.embed"])
    with h5py.File(out, "r") as f:
        sources = [s.decode() for s in f["utterances/source"][:]]
    assert sources == [
        str((manifest.parent / rows[0]["audio"]).resolve()),
        f"{(tmp_path / rows[1]['audio']).resolve()}#0.05-0.15",
    ]


@pytest.mark.parametrize("cut", ["10", "half", "size-100", "size-22"])
@pytest.mark.parametrize("command", ["evaluate", "extract"])
def test_a_truncated_checkpoint_is_named_as_cut_short(noise_checkpoint, tmp_path, capsys, cut, command):
    ckpt, manifest, _ = noise_checkpoint
    data = ckpt.read_bytes()
    keep = {"10": 10, "half": len(data) // 2, "size-100": len(data) - 100, "size-22": len(data) - 22}[cut]
    short = tmp_path / "short.pt"
    short.write_bytes(data[:keep])
    out = tmp_path / ("cer.csv" if command == "evaluate" else "a.h5")
    assert main([command, str(short), "--data", str(manifest), "--out", str(out)]) == 2
    line = one_error_line(capsys, f"{short}: not a cka-probe checkpoint")
    if cut != "10":  # 10 bytes hold no zip header at all
        assert line.endswith("(the file is empty or ends too early)")
    assert not list(tmp_path.glob(f"{out.name}*"))


def test_unreadable_audio_on_the_bundled_path_names_the_utterance(noise_checkpoint, tmp_path, capsys):
    ckpt, _, _ = noise_checkpoint
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "u5", "audio": "junk.wav"}) + "\n")
    argv = ["extract", str(ckpt), "--data", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "a.h5")]
    assert main([*argv, "--tasks"]) == 2
    one_error_line(capsys, "junk.wav (utterance u5): not a readable audio file")


def test_a_failing_extract_off_a_terminal_prints_one_line_and_no_bar(noise_checkpoint, tmp_path, capsys):
    ckpt, _, _ = noise_checkpoint
    wave = np.zeros(8000, dtype=np.float32)
    soundfile.write(tmp_path / "ok.wav", wave + 0.1, 16000, subtype="FLOAT")
    wave[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    rows = [{"id": "u0", "audio": "ok.wav"}, {"id": "u1", "audio": "nan.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["extract", str(ckpt), "--data", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "a.h5")]
    assert main([*argv, "--tasks", "--batch-size", "1", "--no-padding-check"]) == 2
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1, err
    assert "nan.wav (utterance u1): has non-finite samples" in err
