"""Structured DO variants: training, checkpoints, module names, streams, and their building blocks.

``split-K`` (task branches), ``shared-private`` (Liu et al. 2017: private
branches, a gradient-reversal discriminator, an orthogonality penalty) and
``sparse-shared`` (hard-concrete gates, Louizos et al. 2018); see
``docs/models.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import outputs, read_log, small_config, small_parts, train_small

from cka_probe.asr import build_model, load_checkpoint, save_checkpoint
from cka_probe.asr.train import log_columns, with_meaning_weight
from cka_probe.asr.variants.discriminator import Discriminator
from cka_probe.asr.variants.gradient_reversal import reverse_gradient
from cka_probe.asr.variants.hard_concrete import HardConcreteGate
from cka_probe.asr.variants.orthogonality import orthogonality_penalty
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).resolve().parent / "data"
VARIANTS = ["split-1", "shared-private", "sparse-shared"]
TASKS = ("surface", "meaning")
AUX = {"split-1": (), "shared-private": ("adversarial", "orthogonality"), "sparse-shared": ("l0",)}
# module -> stream, for the small_parts models (2 encoder blocks, 1 decoder layer)
STREAMS = {
    "shared": {"encoder": ["encoder.embed", "encoder.layers.0", "encoder.layers.1"]},
    "split-1": {
        "encoder": ["encoder.embed", "encoder.layers.0"],
        "encoder/branch/surface": ["encoder.branches.surface.layers.1"],
        "encoder/branch/meaning": ["encoder.branches.meaning.layers.1"],
    },
    "shared-private": {
        "encoder": ["encoder.embed", "encoder.layers.0", "encoder.layers.1"],
        "encoder/private/surface": ["encoder.private.surface.layers.0", "encoder.fuse.surface"],
        "encoder/private/meaning": ["encoder.private.meaning.layers.0", "encoder.fuse.meaning"],
    },
    "sparse-shared": {
        "encoder": ["encoder.embed"],
        "encoder/gated/surface": ["encoder.gates.surface.0", "encoder.gates.surface.1"],
        "encoder/gated/meaning": ["encoder.gates.meaning.0", "encoder.gates.meaning.1"],
    },
}


def noise_model_streams(variant):
    """The default layers of the ``noise_checkpoint`` model's variant (2 blocks, 2 decoder layers), and their
    streams."""
    decoders = {f"decoder/{t}": [f"decoders.{t}.layers.0", f"decoders.{t}.layers.1"] for t in TASKS}
    return STREAMS[variant] | decoders


def variant_parts(variant):
    model, config, tokenizers, cmvn = small_parts()
    torch.manual_seed(1)
    vocab = {t: tok.vocab_size for t, tok in tokenizers.items()}
    return build_model(config, "do", TASKS, vocab, variant), config, tokenizers, cmvn


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_memorises_four_utterances(variant, speech_corpus, tmp_path):
    from cka_probe.asr.evaluate import evaluate

    train_small(speech_corpus, arch="do", variant=variant, config=small_config(epochs=60), out_dir=tmp_path)
    log = read_log(tmp_path / "log.csv")
    assert list(log[0]) == log_columns(TASKS, AUX[variant])
    assert float(log[-1]["train_loss"]) <= 0.1 * float(log[0]["train_loss"])
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["variant"] == variant and ckpt["format_version"] == 2
    table = evaluate(tmp_path / "last.pt", speech_corpus["train"], tmp_path / "cer.csv")
    assert sorted(set(table["task"])) == ["meaning", "surface"]
    assert len(table) == 2 * len(speech_corpus["rows"])


@pytest.mark.parametrize("variant", ["shared", *VARIANTS])
def test_save_load_gives_identical_outputs(variant, tmp_path):
    model, config, tokenizers, cmvn = variant_parts(variant)
    model.eval()
    path = save_checkpoint(
        tmp_path / "m.pt", model=model, config=config, tokenizers=tokenizers, cmvn=cmvn, epoch=1, metrics={}
    )
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["variant"] == variant and loaded.variant.name == variant
    for a, b in zip(outputs(model, TASKS), outputs(loaded, TASKS)):
        assert torch.equal(a, b)


def test_a_format_1_checkpoint_loads_as_shared_with_its_outputs():
    """``do_format_v1.pt`` and its outputs were written by the code before variants existed."""
    model, ckpt = load_checkpoint(DATA / "do_format_v1.pt")
    assert (ckpt["format_version"], ckpt["variant"], model.variant.name) == (1, "shared", "shared")
    want = torch.load(DATA / "do_format_v1_outputs.pt", weights_only=True)["outputs"]
    for a, b in zip(outputs(model, TASKS), want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["shared", *VARIANTS])
def test_module_names_and_streams(variant):
    model, *_ = variant_parts(variant)
    names = {name for name, _ in model.named_modules()}
    from cka_probe.extract.asr import layer_streams

    streams = layer_streams(model, model.default_layers(TASKS), TASKS)
    want = STREAMS[variant] | {f"decoder/{t}": [f"decoders.{t}.layers.0"] for t in TASKS}
    assert streams == want
    assert all(name in names for layers in want.values() for name in layers)
    assert model.encoder_streams() == [s for s in want if s.startswith("encoder")]
    modules = dict(model.named_modules())
    for stream, layers in want.items():  # every submodule of a layer belongs to the layer's stream
        for layer in layers:
            inner = [f"{layer}.{name}" for name, _ in modules[layer].named_modules() if name]
            assert {model.stream_of(name) for name in [layer, *inner]} == {stream}


def test_task_memories_are_each_tasks_own():
    """The decoders of a split model read different branches; those of the shared model the same output."""
    for variant, differ in (("shared", False), ("split-1", True)):
        model, *_ = variant_parts(variant)
        model.eval()
        with torch.no_grad():
            enc, _ = model.encode(torch.randn(2, 45, 80), torch.tensor([45, 30]))
        surface, meaning = model.task_memory("surface", enc), model.task_memory("meaning", enc)
        assert surface.shape == meaning.shape == (2, 10, 32)
        assert (not torch.equal(surface, meaning)) == differ


def test_gradient_reversal_flips_the_gradient_numerically():
    torch.manual_seed(0)
    disc = Discriminator(6, 5, 2, reversal=0.7).double()
    features = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    labels = torch.tensor([0, 1, 1])
    disc.loss(features, valid, labels).backward()
    # central differences of the same loss: the forward pass is the identity, so the
    # numerical gradient is the discriminator's own, and autograd must return −λ times it
    numeric = torch.zeros_like(features)
    eps = 1e-6
    with torch.no_grad():
        for index in range(features.numel()):
            step = torch.zeros(features.numel(), dtype=torch.float64)
            step[index] = eps
            step = step.view_as(features)
            up, down = disc.loss(features + step, valid, labels), disc.loss(features - step, valid, labels)
            numeric.view(-1)[index] = (up - down) / (2 * eps)
    torch.testing.assert_close(features.grad, -0.7 * numeric, rtol=1e-6, atol=1e-9)
    assert numeric[1, 2:].abs().max() == 0  # padded frames get no gradient
    x = torch.randn(5, requires_grad=True)
    assert torch.equal(reverse_gradient(x, 2.0), x)


def test_orthogonality_penalty_is_zero_for_orthogonal_features_only():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 7, dtype=torch.float64))  # 7 orthonormal columns over 12 frames
    shared, private = q[:, :4].reshape(2, 6, 4), q[:, 4:].reshape(2, 6, 3) * 5.0
    valid = torch.ones(2, 6, dtype=torch.bool)
    assert float(orthogonality_penalty(shared, private, valid)) == pytest.approx(0.0, abs=1e-12)
    s, p = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    # by hand: ‖SᵀP‖²_F / (‖SᵀS‖_F ‖PᵀP‖_F), from sums over entries
    cross = sum(float(s[:, i] @ p[:, j]) ** 2 for i in range(3) for j in range(2))
    ss = math.sqrt(sum(float(s[:, i] @ s[:, j]) ** 2 for i in range(3) for j in range(3)))
    pp = math.sqrt(sum(float(p[:, i] @ p[:, j]) ** 2 for i in range(2) for j in range(2)))
    padded_s, padded_p = (
        torch.zeros(1, 13, 3, dtype=torch.float64),
        torch.randn(1, 13, 2, dtype=torch.float64),
    )
    padded_s[0, :10], padded_p[0, :10] = s, p  # the 3 padded frames must not count
    valid = torch.arange(13)[None] < 10
    assert float(orthogonality_penalty(padded_s, padded_p, valid)) == pytest.approx(
        cross / (ss * pp), rel=1e-12
    )
    assert float(orthogonality_penalty(s[None], s[None, :, :2], torch.ones(1, 10, dtype=torch.bool))) > 0.3


def test_hard_concrete_gates_match_their_distribution():
    torch.manual_seed(0)
    gate = HardConcreteGate(3, beta=2 / 3, gamma=-0.1, zeta=1.1, init_open=0.5)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-3.0, 0.0, 3.0]))
    samples = torch.stack([gate.gates() for _ in range(20000)])  # (S, 3), training mode
    assert samples.min() >= 0 and samples.max() <= 1
    # eq. 12: P(z > 0) = σ(log α − β log(−γ/ζ)); against the Monte-Carlo frequency (3 σ of 20000 draws)
    p_open = torch.sigmoid(gate.log_alpha - 2 / 3 * math.log(0.1 / 1.1)).detach()
    assert torch.all((samples > 0).double().mean(0) - p_open < 3 * (0.25 / 20000) ** 0.5)
    assert float(gate.expected_open().detach()) == pytest.approx(float(p_open.mean()))
    gate.eval()
    want = (torch.sigmoid(gate.log_alpha) * 1.2 - 0.1).clamp(0, 1)
    assert torch.equal(gate.gates(), want) and torch.equal(gate(torch.ones(2, 3)), want.expand(2, 3))


@pytest.mark.parametrize("variant", VARIANTS)
def test_extraction_writes_the_variant_streams(variant, noise_checkpoint, tmp_path, capsys):
    from cka_probe.extract.asr import extract_checkpoint

    ckpt_path, manifest, rows = noise_checkpoint
    shared, ckpt = load_checkpoint(ckpt_path)
    torch.manual_seed(0)
    vocab = {t: tok.vocab_size for t, tok in ckpt["tokenizers"].items()}
    model = build_model(ckpt["config"], "do", TASKS, vocab, variant)
    path = save_checkpoint(
        tmp_path / "v.pt",
        model=model,
        config=ckpt["config"],
        tokenizers=ckpt["tokenizers"],
        cmvn=ckpt["cmvn"],
        epoch=0,
        metrics={},
    )
    assert main(["layers", str(path)]) == 0
    starred = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("*")]
    assert set(starred) == {name for names in noise_model_streams(variant).values() for name in names}
    out = extract_checkpoint(path, manifest, tmp_path / "v.h5", batch_size=3, limit=4)
    kind = {"split-1": "branch", "shared-private": "private", "sparse-shared": "gated"}[variant]
    with ActivationStore(out) as store:
        assert store.streams() == [
            "encoder",
            f"encoder/{kind}/surface",
            f"encoder/{kind}/meaning",
            "decoder/surface",
            "decoder/meaning",
        ]
        assert store.attrs["variant"] == variant
        for stream in store.streams()[1:3]:
            for layer in store.layers(stream):
                assert (
                    store.row_counts(stream, layer).tolist()
                    == store.row_counts("encoder", "encoder.embed").tolist()
                )


def test_meaning_weight_keeps_the_sum_and_rejects_bad_values():
    config = small_config()
    weights = with_meaning_weight(config, "do", 0.7)["loss"]["do"]
    assert weights["meaning"] == 0.7 and weights["surface"] == pytest.approx(0.1)
    for arch, weight in (("so", 0.3), ("do", 0.8), ("do", 0.0)):
        with pytest.raises(CKAProbeError, match="--meaning-weight"):
            with_meaning_weight(small_config(), arch, weight)


@pytest.mark.parametrize(
    "variant, message",
    [("split-2", "between 1 and"), ("split-x", "unknown variant"), ("private", "unknown variant")],
)
def test_bad_variant_names_are_one_line_errors(variant, message, speech_corpus, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--arch",
                "do",
                "--variant",
                variant,
                "--data",
                str(speech_corpus["train"]),
                "--valid",
                str(speech_corpus["valid"]),
                "--config",
                str(write_config(tmp_path)),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_so_model_has_no_structured_variant(speech_corpus, tmp_path):
    with pytest.raises(CKAProbeError, match="dual-output structure"):
        train_small(speech_corpus, arch="so", task="surface", variant="split-1", out_dir=tmp_path)


def test_unknown_variant_setting_is_named(speech_corpus, tmp_path):
    config = small_config()
    config["variants"] = {"sparse-shared": {"l1": 0.1}}
    with pytest.raises(CKAProbeError, match="variants.sparse-shared has unknown key"):
        train_small(speech_corpus, arch="do", variant="sparse-shared", config=config, out_dir=tmp_path)


def write_config(folder):
    path = folder / "config.json"
    path.write_text(json.dumps(small_config(epochs=1)))
    return path


def test_rerun_of_a_variant_resumes_and_another_variant_is_refused(speech_corpus, tmp_path):
    common = dict(arch="do", out_dir=tmp_path, meaning_weight=0.5)
    config = small_config()
    del config["variants"]  # the defaults are resolved into the saved config, and a rerun must still match it
    train_small(speech_corpus, variant="shared-private", config=config, epochs=1, **common)
    first = read_log(tmp_path / "log.csv")
    train_small(speech_corpus, variant="shared-private", config=config, epochs=2, **common)
    log = read_log(tmp_path / "log.csv")
    assert len(log) == 2 and log[0] == first[0]
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["config"]
    assert saved["loss"]["do"]["meaning"] == 0.5 and "shared-private" in saved["variants"]
    with pytest.raises(CKAProbeError, match=r"holds a do \(shared-private\) model"):
        train_small(speech_corpus, variant="split-1", config=config, epochs=3, **common)
