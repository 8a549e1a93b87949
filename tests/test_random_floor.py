"""The random-initialisation floor of any model (``extract_model(..., random_init=SEED)``, ``extract
--random-init``): bundled checkpoints, Hugging Face folders and Python adapters with ``build_random``,
each equal to the same architecture built independently with the same seed; and the floor of a brought
SSO in ``reproduce``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cka_probe.cli import main
from cka_probe.extract.models import extract_model
from cka_probe.pipeline import plan
from cka_probe.pipeline.study_plan import SCALES
from cka_probe.store import ActivationStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import shrunk_config, untrained_checkpoint  # noqa: E402
from hf_models import SECONDS, TEXTS, noise_corpus, whisper_folder  # noqa: E402

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wenet_style_adapter.py"


def rows_of(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every stream's layers' rows of a store."""
    with ActivationStore(path) as store:
        return {
            stream: {layer: store.frames(stream, layer, store.ids) for layer in store.layers(stream)}
            for stream in store.streams()
        }


def assert_same_rows(a: Path, b: Path) -> None:
    got, want = rows_of(a), rows_of(b)
    assert got.keys() == want.keys()
    for stream in want:
        assert got[stream].keys() == want[stream].keys()
        for layer in want[stream]:
            for x, y in zip(got[stream][layer], want[stream][layer]):
                np.testing.assert_array_equal(x, y)


def test_a_bundled_floor_is_the_checkpoint_trained_from_that_seed_never_trained(noise_checkpoint, tmp_path):
    ckpt, manifest, rows = noise_checkpoint
    floor = extract_model(ckpt, manifest, tmp_path / "floor.h5", random_init=5, role="rand", replicate=0)
    seeded = untrained_checkpoint(
        tmp_path / "seed5.pt", shrunk_config(2, 2), rows, "do", ("surface", "meaning"), seed=5
    )
    assert_same_rows(floor, extract_model(seeded, manifest, tmp_path / "seed5.h5"))
    with ActivationStore(floor) as store:
        assert (store.attrs["role"], store.attrs["replicate"], store.attrs["random_init_seed"]) == (
            "rand",
            0,
            5,
        )
    own = rows_of(extract_model(ckpt, manifest, tmp_path / "own.h5"))
    assert not np.array_equal(
        own["encoder"]["encoder.layers.1"][0], rows_of(floor)["encoder"]["encoder.layers.1"][0]
    )


def test_a_hugging_face_floor_is_the_config_built_with_that_seed(tmp_path):
    pytest.importorskip("transformers")
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = whisper_folder(tmp_path / "sso")
    manifest = noise_corpus(tmp_path / "data", SECONDS[:3], texts=TEXTS[:3])
    floor = extract_model(folder, manifest, tmp_path / "floor.h5", random_init=7)
    independent = tmp_path / "seed7"
    torch.manual_seed(7)
    WhisperForConditionalGeneration(WhisperConfig.from_pretrained(folder)).save_pretrained(independent)
    for path in folder.iterdir():  # its tokenizer, feature extractor and generation config
        if path.suffix != ".safetensors":
            shutil.copy(path, independent / path.name)
    assert_same_rows(floor, extract_model(independent, manifest, tmp_path / "seed7.h5"))
    again = extract_model(folder, manifest, tmp_path / "again.h5", random_init=7)
    assert_same_rows(floor, again)


def test_an_adapter_floor_comes_from_its_build_random_duty(tmp_path, capsys):
    manifest = noise_corpus(tmp_path / "data", [0.4, 0.9, 0.6])
    out = tmp_path / "floor.h5"
    spec = f"{EXAMPLE}:adapter"
    options = ["--data", str(manifest), "--role", "rand", "--replicate", "0"]
    assert main(["extract", spec, *options, "--out", str(out), "--random-init", "3"]) == 0
    assert main(["extract", spec, *options, "--out", str(tmp_path / "own.h5")]) == 0
    floor, own = rows_of(out), rows_of(tmp_path / "own.h5")
    assert not np.array_equal(floor["encoder"]["encoders.1"][0], own["encoder"]["encoders.1"][0])
    bare = tmp_path / "bare.py"
    bare.write_text(EXAMPLE.read_text().replace("def build_random(", "def _no_build_random("))
    bad = tmp_path / "bad.h5"
    assert main(["extract", f"{bare}:adapter", *options, "--out", str(bad), "--random-init", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a build_random(device, seed) duty" in err
    assert not bad.exists()


def test_a_brought_sso_gets_its_floor_when_its_adapter_can_draw_one(tmp_path):
    data = tmp_path / "data"
    noise_corpus(data, [0.4, 0.9]).rename(data / "test.jsonl")
    bare = tmp_path / "bare.py"
    bare.write_text(EXAMPLE.read_text().replace("def build_random(", "def _no_build_random("))

    def floors(sso: str) -> list:
        models = {("en", "sso"): sso, ("en", "mso"): f"{EXAMPLE}:adapter", ("en", "do"): f"{EXAMPLE}:adapter"}
        stages = plan(tmp_path / "run", ["en"], SCALES["tiny"], data={"en": data}, models=models, seed=4)
        assert not any(s.name.startswith(("init", "train")) for s in stages)
        return [s for s in stages if s.name == "extract en rand"]

    assert floors(f"{bare}:adapter") == []
    (floor,) = floors(f"{EXAMPLE}:adapter")
    assert floor.kwargs["ckpt"] == f"{EXAMPLE}:adapter"
    # the floor's seed is the trained floor's: seed + 3 * max(seeds, 2)
    assert (floor.kwargs["role"], floor.kwargs["replicate"], floor.kwargs["random_init"]) == ("rand", 0, 10)
