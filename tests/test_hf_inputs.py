"""A broken Hugging Face folder or Python adapter is one stderr line naming the culprit, exit 2, no store.

The folders are tiny random-weight models saved with ``save_pretrained`` (built
once per module and copied per test), then mutated the way a user's folder
goes wrong: a config.json that disagrees with the weights, unreadable weights,
missing tokenizer files, broken JSON or values; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")  # the [hf] extra; CI's test extra installs it

from cka_probe.cli import main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import noise_corpus, wav2vec2_folder, whisper_folder  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Clean folders (Whisper, wav2vec2 bare and CTC) and a manifest with transcripts."""
    root = tmp_path_factory.mktemp("built")
    return {
        "whisper": whisper_folder(root / "whisper"),
        "wav2vec2": wav2vec2_folder(root / "wav2vec2"),
        "ctc": wav2vec2_folder(root / "ctc", ctc=True),
        "manifest": noise_corpus(root / "data", [0.3, 0.4], texts=["hi there", "a cat"]),
    }


@pytest.fixture
def copy(built, tmp_path):
    """``copy(kind)``: a fresh copy of a clean folder, to mutate."""
    return lambda kind: Path(shutil.copytree(built[kind], tmp_path / kind))


def edit_json(path: Path, **changes) -> None:
    """Set (or, with ``None``, remove) keys of the JSON object in ``path``."""
    data = json.loads(path.read_text())
    for key, value in changes.items():
        data.pop(key) if value is None else data.__setitem__(key, value)
    path.write_text(json.dumps(data))


def refused(capsys, model: str | Path, manifest: Path, out: Path, *options: str) -> str:
    """``extract`` exits 2 with one stderr line, leaves nothing at ``out``; returns the line."""
    code = main(["extract", str(model), "--data", str(manifest), "--out", str(out), *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not Path(f"{out}.partial").exists()
    assert "Traceback" not in err
    return err.strip()


def extracted(capsys, model: str | Path, manifest: Path, out: Path, *options: str) -> None:
    """``extract`` exits 0 and writes ``out``; stderr is left for the caller to read."""
    code = main(["extract", str(model), "--data", str(manifest), "--out", str(out), *options])
    assert code == 0, capsys.readouterr().err
    assert out.exists()


# config.json against the weights


def test_whisper_config_with_more_layers_than_weights_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    edit_json(folder / "config.json", encoder_layers=4)  # the weights hold 2
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert (
        f"{folder}: config.json and the weights disagree: 30 weights missing (e.g. model.encoder.layers.2."
        in line
    )


def test_whisper_config_with_fewer_layers_than_weights_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    edit_json(folder / "config.json", decoder_layers=1)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert "config.json and the weights disagree: " in line
    assert "unexpected (e.g. model.decoder.layers.1." in line


def test_config_with_another_width_than_the_weights_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    edit_json(folder / "config.json", d_model=64)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    # max_target_positions 64 rows of d_model 32 in the weights
    shapes = "model.decoder.embed_positions.weight: (64, 32) in the weights, (64, 64) by config.json"
    assert f"of another shape (e.g. {shapes})" in line


def test_wav2vec2_config_with_fewer_layers_than_ctc_weights_is_refused(built, copy, tmp_path, capsys):
    folder = copy("ctc")
    # read as the bare model; layer 1 holds 16 tensors (4 projections, 2 dense, 2 norms: weight and bias)
    edit_json(folder / "config.json", num_hidden_layers=1, architectures=None)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert "16 unexpected (e.g. wav2vec2.encoder.layers.1." in line and "lm_head" not in line


def test_ctc_config_over_bare_weights_is_refused_as_a_random_head(built, copy, tmp_path, capsys):
    folder = copy("wav2vec2")
    edit_json(folder / "config.json", architectures=["Wav2Vec2ForCTC"])
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert "2 weights missing (e.g. lm_head.bias)" in line


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2", "ctc"])
def test_clean_save_pretrained_folders_load_without_complaint(built, tmp_path, capsys, kind):
    extracted(capsys, built[kind], built["manifest"], tmp_path / "a.h5")
    assert "LOAD REPORT" not in capsys.readouterr().err


@pytest.mark.parametrize(("family", "ctc"), [("hubert", True), ("wavlm", False), ("data2vec-audio", True)])
def test_clean_folders_of_every_wav2vec2_family_load_without_complaint(built, tmp_path, capsys, family, ctc):
    folder = wav2vec2_folder(tmp_path / family, family=family, ctc=ctc)
    extracted(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert "LOAD REPORT" not in capsys.readouterr().err


def test_ctc_weights_read_as_the_bare_model_ignore_the_head(built, copy, tmp_path, capsys):
    folder = copy("ctc")
    edit_json(folder / "config.json", architectures=None)
    extracted(capsys, folder, built["manifest"], tmp_path / "a.h5")


def test_weights_without_the_training_only_mask_vector_load(built, copy, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = copy("wav2vec2")
    weights = load_file(folder / "model.safetensors")
    del weights["masked_spec_embed"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    extracted(capsys, folder, built["manifest"], tmp_path / "a.h5")


# the weights files


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: os.urandom(4096), id="random-bytes"),
        pytest.param(lambda data: b"", id="zero-length"),
    ],
)
def test_unreadable_safetensors_is_refused_naming_the_file(built, copy, tmp_path, capsys, damage):
    folder = copy("whisper")
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: the weights model.safetensors cannot be read" in line


def test_folder_without_weights_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    (folder / "model.safetensors").unlink()
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(f"{folder}: no weights file (model.safetensors or pytorch_model.bin)")


def test_weights_only_pytorch_bin_loads(built, copy, tmp_path, capsys):
    from safetensors.torch import load_file

    folder = copy("wav2vec2")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    extracted(capsys, folder, built["manifest"], tmp_path / "a.h5")


class Payload:
    """An object a weights-only ``torch.load`` refuses to unpickle."""


def test_pickle_bin_is_refused_without_suggesting_unsafe_loading(built, copy, tmp_path, capsys):
    folder = copy("wav2vec2")
    torch.save({"payload": Payload()}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: pytorch_model.bin is not a weights-only PyTorch file" in line
    assert "weights_only=False" not in line and "weights_only` set to `False" not in line


# tokenizer


def test_folder_without_tokenizer_files_refuses_the_decoder_but_extracts_the_encoder(
    built, copy, tmp_path, capsys
):
    folder = copy("whisper")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: no tokenizer files (tokenizer.json, or vocab.json and merges.txt)" in line
    assert "extract the encoder only with --tasks" in line
    extracted(capsys, folder, built["manifest"], tmp_path / "enc.h5", "--tasks")


def test_broken_tokenizer_json_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    (folder / "tokenizer.json").write_text("{not json")
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: the tokenizer files cannot be read" in line


def test_tokenizer_with_ids_past_the_model_vocabulary_is_refused(built, copy, tmp_path, capsys):
    from transformers import WhisperTokenizer

    folder = copy("whisper")
    tokenizer = WhisperTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["<|extra1|>", "<|extra2|>"])
    tokenizer.save_pretrained(folder)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: the tokenizer has token ids up to 267, but config.json's vocab_size is 266" in line


# config.json itself


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{not json", "not a readable config.json", id="not-json"),
        pytest.param("[1, 2]", "no model_type string", id="a-list"),
        pytest.param({"model_type": None}, "no model_type string", id="no-model-type"),
        pytest.param({"model_type": 5}, "no model_type string", id="model-type-a-number"),
        pytest.param({"model_type": "bert"}, "model_type 'bert' has no adapter", id="unknown-model-type"),
        pytest.param({"encoder_layers": "six"}, "'encoder_layers'", id="layers-a-string"),
        pytest.param({"d_model": -4}, "no WhisperForConditionalGeneration can be built", id="negative-width"),
        pytest.param({"d_model": 33}, "embed_dim must be divisible by num_heads", id="width-not-by-heads"),
        pytest.param({"encoder_layers": -1}, "config.json and the weights disagree", id="negative-layers"),
    ],
)
def test_broken_config_json_is_refused_naming_the_file(built, copy, tmp_path, capsys, text, expected):
    folder = copy("whisper")
    if isinstance(text, str):
        (folder / "config.json").write_text(text)
    else:
        edit_json(folder / "config.json", **text)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert str(folder) in line and expected in line


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"hop_length": "x"}, "unsupported operand", id="hop-a-string"),
        pytest.param({"n_fft": -1}, "num_frequency_bins", id="negative-fft"),
        pytest.param({"sampling_rate": "16k"}, "", id="rate-a-string"),
        pytest.param(
            {"feature_size": 0}, "feature_size is 0, but the model's config.json needs 80", id="bins"
        ),
    ],
)
def test_broken_preprocessor_config_is_refused_naming_the_file(
    built, copy, tmp_path, capsys, changes, expected
):
    folder = copy("whisper")
    edit_json(folder / "preprocessor_config.json", **changes)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder / 'preprocessor_config.json'}: " in line and expected in line


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2"])
def test_preprocessor_config_that_is_not_json_is_refused(built, copy, tmp_path, capsys, kind):
    folder = copy(kind)
    (folder / "preprocessor_config.json").write_text("{not json")
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder / 'preprocessor_config.json'}: " in line


def test_generation_config_that_is_not_json_is_refused(built, copy, tmp_path, capsys):
    folder = copy("whisper")
    (folder / "generation_config.json").write_text("{not json")
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder / 'generation_config.json'}: " in line


# Python adapters (FILE.py:FUNCTION)

ADAPTER = """\
import torch
from torch import nn


class Tiny:
    def build(self, device):
        return nn.Sequential(nn.Linear(4, 4)).to(device).eval()

    def default_layers(self, tasks):
        return ["0"]

    def batches(self, rows, batch_size, tasks):
        for start in range(0, len(rows), batch_size):
            block = rows[start : start + batch_size]
            yield {"ids": [r["id"] for r in block], "x": torch.ones(len(block), 3, 4)}

    def forward(self, model, batch):
        model(batch["x"])
        return {"encoder": torch.full((len(batch["ids"]),), 3)}


def make():
    return Tiny()
"""


def adapter_file(tmp_path: Path, old: str = "", new: str = "") -> str:
    """``adapter.py:make`` of :data:`ADAPTER` with ``old`` replaced by ``new``."""
    assert old in ADAPTER
    path = tmp_path / "adapter.py"
    path.write_text(ADAPTER.replace(old, new))
    return f"{path}:make"


def line_of(tmp_path: Path, text: str) -> int:
    """The line number of ``text`` in the adapter file."""
    lines = (tmp_path / "adapter.py").read_text().splitlines()
    return next(k for k, line in enumerate(lines, 1) if text in line)


def test_a_clean_python_adapter_extracts(built, tmp_path, capsys):
    extracted(capsys, adapter_file(tmp_path), built["manifest"], tmp_path / "a.h5")


def test_python_adapter_file_that_does_not_exist_is_refused(built, tmp_path, capsys):
    spec = f"{tmp_path / 'nowhere.py'}:make"
    assert refused(capsys, spec, built["manifest"], tmp_path / "a.h5").endswith(
        f"{spec}: no such adapter file {tmp_path / 'nowhere.py'}"
    )


def test_python_adapter_with_a_syntax_error_names_its_line(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "def make():", "def make(:")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec}: syntax error at adapter.py:{line_of(tmp_path, 'def make(:')}" in line


def test_python_adapter_raising_at_import_names_its_line(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "import torch\n", "import torch\nimport no_such_module_here\n")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec} raised ModuleNotFoundError while importing adapter.py: " in line
    assert line.endswith(f"(adapter.py:{line_of(tmp_path, 'no_such_module_here')})")


def test_python_adapter_function_raising_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "    return Tiny()", "    raise RuntimeError('no model here')")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec} raised RuntimeError in make(): no model here (adapter.py:" in line


def test_python_adapter_lacking_duties_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "    def forward(self, model, batch):", "    def run(self, model, batch):")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(
        f"{spec}: the adapter Tiny lacks forward (the protocol: build, default_layers, batches, forward)"
    )


def test_python_adapter_forward_raising_names_its_line(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, 'model(batch["x"])', 'model(batch["feats"])')
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(
        f"{spec} raised KeyError in forward: 'feats' (adapter.py:{line_of(tmp_path, 'feats')})"
    )


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        pytest.param(
            "torch.full((len(batch['ids']), 2), 3)", "lengths (2, 2) for stream 'encoder'", id="2-d"
        ),
        pytest.param("torch.full((1,), 3)", "lengths (1,) for stream 'encoder'", id="too-few"),
        pytest.param(
            "torch.full((len(batch['ids']),), 2.5)", "lengths (2,) for stream 'encoder'", id="floats"
        ),
        pytest.param(
            "torch.full((len(batch['ids']),), -1)", "lengths (2,) for stream 'encoder'", id="negative"
        ),
        pytest.param("'three'", "lengths str for stream 'encoder'", id="a-string"),
    ],
)
def test_python_adapter_forward_with_wrong_lengths_is_refused(built, tmp_path, capsys, lengths, expected):
    spec = adapter_file(tmp_path, 'torch.full((len(batch["ids"]),), 3)', lengths)
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec}: forward returned {expected} in a batch of 2 utterances" in line


def test_python_adapter_forward_returning_no_dict_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, 'return {"encoder": torch.full((len(batch["ids"]),), 3)}', "return [3, 3]")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(f"{spec}: forward returned list, not {{stream: (B,) valid lengths}}")


def test_python_adapter_build_returning_no_module_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "return nn.Sequential(nn.Linear(4, 4)).to(device).eval()", "return 'model'")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(f"{spec}: build returned str, not a torch.nn.Module")


def test_python_adapter_batch_without_ids_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, '{"ids": [r["id"] for r in block], ', "{")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec}: batch 0 of batches is dict without a list of ids" in line


def test_python_adapter_batches_raising_inside_its_generator_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "            block = rows", "            1 / 0\n            block = rows")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(
        f"{spec} raised ZeroDivisionError in batches: division by zero "
        f"(adapter.py:{line_of(tmp_path, '1 / 0')})"
    )


def test_python_adapter_with_tasks_that_are_not_names_is_refused(built, tmp_path, capsys):
    spec = adapter_file(tmp_path, "class Tiny:\n", "class Tiny:\n    tasks = 'surface'\n")
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.endswith(f"{spec}: the adapter's tasks is 'surface', not a list of task names")


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        pytest.param(
            "torch.full((len(batch['ids']),), 4)", "has valid length 4 but the output has 3", id="long"
        ),
        pytest.param("torch.zeros(len(batch['ids']), dtype=torch.long)", "has valid length 0", id="zero"),
    ],
)
def test_python_adapter_lengths_that_do_not_fit_the_output_name_the_adapter(
    built, tmp_path, capsys, lengths, expected
):
    spec = adapter_file(tmp_path, 'torch.full((len(batch["ids"]),), 3)', lengths)
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec}: layer 0: utterance " in line and expected in line


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            'return {"encoder": torch.full((len(batch["ids"]),), 3)}',
            "return torch.ones(3)",
            "forward returned Tensor",
            id="forward-tensor",
        ),
        pytest.param(
            '{"ids": [r["id"] for r in block], ', "{", "batch 0 of batches is dict without", id="no-ids"
        ),
    ],
)
def test_python_adapter_errors_name_the_file_not_the_adapters_name(
    built, tmp_path, capsys, old, new, expected
):
    spec = adapter_file(tmp_path, old, new)
    path = tmp_path / "adapter.py"
    path.write_text(path.read_text().replace("class Tiny:\n", "class Tiny:\n    name = 'my tiny model'\n"))
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert f"{spec}: {expected}" in line and "my tiny model" not in line


def test_python_adapter_nan_activations_name_the_adapter(built, tmp_path, capsys):
    spec = adapter_file(
        tmp_path, "torch.ones(len(block), 3, 4)}", 'torch.full((len(block), 3, 4), float("nan"))}'
    )
    line = refused(capsys, spec, built["manifest"], tmp_path / "a.h5")
    assert line.startswith(f"cka-probe extract: error: {spec}: layer 0 (encoder): non-finite activations")
    assert line.endswith("check the model's weights and these utterances' audio")


def test_whisper_nan_weight_names_the_folder(built, copy, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = copy("whisper")
    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if k.endswith("encoder.layers.0.fc1.weight"))
    weights[name][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: layer " in line and "non-finite activations" in line


def drop_template(folder: Path) -> None:
    """``tokenizer.json`` with its post-processor's ``single`` template dropped (the tokenizers library then
    raises a bare ``Exception``)."""
    data = json.loads((folder / "tokenizer.json").read_text())
    del data["post_processor"]["single"]
    (folder / "tokenizer.json").write_text(json.dumps(data))


def retype_max_length(folder: Path) -> None:
    """``tokenizer_config.json`` with ``model_max_length`` a list (a ``TypeError`` when it encodes)."""
    edit_json(folder / "tokenizer_config.json", model_max_length=[1])


@pytest.mark.parametrize("damage", [drop_template, retype_max_length])
def test_malformed_tokenizer_files_are_refused_naming_the_folder(built, copy, tmp_path, capsys, damage):
    folder = copy("whisper")
    damage(folder)
    line = refused(capsys, folder, built["manifest"], tmp_path / "a.h5")
    assert f"{folder}: the tokenizer files cannot be read (" in line
