"""Conformer CTC-attention SO/DO models: sizes, names, masking, losses, and overfitting a few utterances."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import torch
from rapidfuzz.distance import Levenshtein

from cka_probe.asr import CharTokenizer, build_model, load_config
from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.data import pad_features, pad_ids
from cka_probe.asr.decode import attention_greedy, ctc_greedy
from cka_probe.asr.features import fbank, load_wav
from cka_probe.asr.model import add_sos_eos
from cka_probe.asr.nn.attention import relative_to_absolute
from cka_probe.errors import CKAProbeError

torch.set_num_threads(1)
DO = ("surface", "meaning")


def small_model_config(**encoder):
    """``tiny`` with a small encoder (d_model 32, 2 blocks); ``encoder`` overrides."""
    config = load_config("tiny")
    config["encoder"].update(
        d_model=32, n_heads=4, n_layers=2, ffn_dim=64, subsampling_channels=4, conv_kernel=5, **encoder
    )
    config["decoder"].update(n_layers=2, ffn_dim=64)
    return config


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_paper_config_sizes_match_the_paper():
    config = load_config("paper")
    so = build_model(config, "so", ("surface",), {"surface": 500})
    do = build_model(config, "do", DO, {"surface": 500, "meaning": 500})
    assert 28e6 < count(so) < 34e6  # about 32M
    assert 37e6 < count(do) < 43e6  # about 40M
    assert len(so.encoder.layers) == 12 and so.encoder.layers[0].self_attn.n_heads == 4
    tiny = build_model(load_config("tiny"), "so", ("surface",), {"surface": 40})
    assert count(tiny) < 4e6


def test_decoder_token_embeddings_start_at_the_scale_of_the_position_encoding():
    """embed(y)·√d has unit RMS, like the sinusoids added to it (RMS √½), not √d times more."""
    from cka_probe.asr.nn.embedding import sinusoids

    torch.manual_seed(0)
    config = load_config("tiny")
    d = config["encoder"]["d_model"]
    decoder = build_model(config, "so", ("surface",), {"surface": 500}).decoders["surface"]
    scaled = decoder.embed.weight.detach() * decoder.pos_enc.scale  # (V, d)
    pe = sinusoids(torch.arange(64), d)  # (64, d)
    assert abs(float(scaled.pow(2).mean().sqrt()) - 1.0) < 0.05
    assert abs(float(pe.pow(2).mean().sqrt()) - 0.5**0.5) < 1e-6


def test_hookable_names_and_task_attributes():
    model = build_model(small_model_config(), "do", DO, {"surface": 9, "meaning": 11})
    names = dict(model.named_modules())
    expected = [
        "encoder.embed",
        "encoder.layers.0",
        "encoder.layers.1",
        *(f"decoders.{t}.layers.{j}" for t in DO for j in (0, 1)),
    ]
    assert all(n in names for n in expected)
    assert isinstance(model.decoders, torch.nn.ModuleDict) and model.tasks == DO and model.arch == "do"
    so = build_model(small_model_config(), "so", ("meaning",), {"meaning": 11})
    assert list(so.decoders) == ["meaning"] and so.ctc_task == "meaning" and so.ctc.proj.out_features == 11
    outputs = {}
    hooks = [names[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in expected]
    model.eval()
    with torch.no_grad():
        enc, enc_lens = model.encode(torch.randn(2, 50, 80), torch.tensor([50, 31]))
        model.decode_teacher_forced(
            "meaning", enc, enc_lens, torch.zeros(2, 4, dtype=torch.long), torch.tensor([4, 2])
        )
        model.decode_teacher_forced(
            "surface", enc, enc_lens, torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3])
        )
    for h in hooks:
        h.remove()
    assert enc_lens.tolist() == [((50 - 1) // 2 - 1) // 2, ((31 - 1) // 2 - 1) // 2] == [11, 7]
    assert outputs["encoder.embed"][0].shape == outputs["encoder.layers.1"].shape == enc.shape == (2, 11, 32)
    assert outputs["decoders.meaning.layers.1"].shape == (2, 4, 32)


@pytest.mark.parametrize("pos_enc", ["rel_pos", "abs_pos"])
@pytest.mark.parametrize("conv_norm", ["batch_norm", "layer_norm"])
def test_padding_never_leaks_into_valid_positions(pos_enc, conv_norm):
    torch.manual_seed(0)
    model = build_model(
        small_model_config(pos_enc=pos_enc, conv_norm=conv_norm), "do", DO, {"surface": 9, "meaning": 11}
    ).eval()
    feat_lens, ys_lens = torch.tensor([61, 40, 23]), torch.tensor([7, 3, 1])
    feats, ys = torch.randn(3, 61, 80), torch.randint(0, 11, (3, 7))
    feats[1, 40:] = 1e3  # loud garbage in the padding
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, feat_lens)
        logits = model.decode_teacher_forced("meaning", enc, enc_lens, ys, ys_lens)
        for b in range(3):
            one, one_lens = model.encode(feats[b : b + 1, : feat_lens[b]], feat_lens[b : b + 1])
            n, u = int(enc_lens[b]), int(ys_lens[b])
            assert one.shape[1] == n
            torch.testing.assert_close(one[0], enc[b, :n], atol=1e-5, rtol=0)
            alone = model.decode_teacher_forced(
                "meaning", one, one_lens, ys[b : b + 1, :u], ys_lens[b : b + 1]
            )
            torch.testing.assert_close(alone[0], logits[b, :u], atol=1e-5, rtol=0)


def test_relative_to_absolute_picks_distance_i_minus_j():
    t = 5
    x = torch.randn(2, 3, t, 2 * t - 1)
    out = relative_to_absolute(x)
    for i in range(t):
        for j in range(t):
            # column k holds distance T-1-k, so distance i-j is column T-1-(i-j)
            assert torch.equal(out[:, :, i, j], x[:, :, i, t - 1 - (i - j)])


def test_add_sos_eos():
    targets, lens = torch.tensor([[4, 5, 6], [7, -1, -1]]), torch.tensor([3, 1])
    ys_in, ys_out = add_sos_eos(targets, lens, sos_eos=9)
    assert ys_in.tolist() == [[9, 4, 5, 6], [9, 7, 9, 9]]
    assert ys_out.tolist() == [[4, 5, 6, 9], [7, 9, -1, -1]]


def smoothed_kl(logits, targets, eps):
    """KL(q || p) = CE with torch's label smoothing minus the entropy of q, summed over valid tokens / B."""
    valid = targets != -1
    ce = torch.nn.functional.cross_entropy(
        logits[valid], targets[valid], label_smoothing=eps, reduction="sum"
    )
    v = logits.shape[-1]
    q_true, q_other = 1 - eps + eps / v, eps / v
    entropy = -(
        q_true * torch.log(torch.tensor(q_true)) + (v - 1) * q_other * torch.log(torch.tensor(q_other))
    )
    return (ce - valid.sum() * entropy) / logits.shape[0]


@pytest.mark.parametrize(
    "arch,tasks,weights",
    [
        ("so", ("surface",), {"ctc": 0.3, "att": 0.7}),
        ("so", ("meaning",), {"ctc": 0.2, "att": 0.8}),
        ("do", DO, {"ctc": 0.1, "surface": 0.6, "meaning": 0.3}),
    ],
)
def test_loss_is_the_configured_weighted_sum_of_independent_components(arch, tasks, weights):
    torch.manual_seed(1)
    config = small_model_config()
    config["loss"][arch] = weights
    config["loss"]["label_smoothing"] = 0.2
    vocab = {"surface": 8, "meaning": 10}
    model = build_model(config, arch, tasks, vocab).eval()
    feats, feat_lens = torch.randn(2, 70, 80), torch.tensor([70, 55])
    targets = {t: torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]) for t in tasks}
    target_lens = {t: torch.tensor([4, 2]) for t in tasks}
    with torch.no_grad():
        out = model(feats, feat_lens, targets, target_lens)
        enc, enc_lens = model.encode(feats, feat_lens)
        ctc_task = "surface" if "surface" in tasks else tasks[0]
        log_probs = model.ctc_log_probs(enc)
        assert log_probs.shape[-1] == vocab[ctc_task]
        ctc = (
            torch.nn.functional.ctc_loss(
                log_probs.transpose(0, 1),
                targets[ctc_task].clamp(min=0),
                enc_lens,
                target_lens[ctc_task],
                reduction="none",
            ).sum()
            / 2
        )
        torch.testing.assert_close(out["ctc"], ctc)
        expected = weights["ctc"] * ctc
        for task in tasks:
            sos = vocab[task] - 1
            ys_in = torch.tensor([[sos, 2, 3, 4, 5], [sos, 6, 2, sos, sos]])
            ys_out = torch.tensor([[2, 3, 4, 5, sos], [6, 2, sos, -1, -1]])
            logits = model.decode_teacher_forced(task, enc, enc_lens, ys_in, torch.tensor([5, 3]))
            att = smoothed_kl(logits, ys_out, 0.2)
            torch.testing.assert_close(out[f"att_{task}"], att, atol=1e-5, rtol=1e-5)
            expected = expected + weights["att" if arch == "so" else task] * att
    assert set(out) == {"loss", "ctc", *(f"att_{t}" for t in tasks)}
    torch.testing.assert_close(out["loss"], expected, atol=1e-5, rtol=1e-5)


def test_decoder_log_probs_are_normalised_teacher_forced_scores():
    model = build_model(small_model_config(), "so", ("surface",), {"surface": 9}).eval()
    with torch.no_grad():
        enc, enc_lens = model.encode(torch.randn(2, 40, 80), torch.tensor([40, 40]))
        ys_in = torch.tensor([[8, 2, 3], [8, 4, 4]])
        lp = model.decoder_log_probs("surface", enc, enc_lens, ys_in)
        logits = model.decode_teacher_forced("surface", enc, enc_lens, ys_in, torch.tensor([3, 3]))
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(lp, torch.log_softmax(logits, -1))


def test_bad_arch_tasks_and_configs_are_refused(tmp_path):
    with pytest.raises(CKAProbeError, match="arch"):
        build_model(small_model_config(), "do", ("surface",), {"surface": 9})
    with pytest.raises(CKAProbeError, match="meaning"):
        build_model(small_model_config(), "so", ("meaning",), {"surface": 9})
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": {}\n,,}')
    with pytest.raises(CKAProbeError, match=r"broken.json:2"):
        load_config(broken)
    config = copy.deepcopy(load_config("tiny"))
    config["loss"]["do"] = {"ctc": 0.2, "surface": 0.8}
    (tmp_path / "c.json").write_text(json.dumps(config))
    with pytest.raises(CKAProbeError, match=r"c.json: loss.do"):
        load_config(tmp_path / "c.json")
    with pytest.raises(CKAProbeError, match="no such config"):
        load_config(tmp_path / "missing.json")


SURFACE = ["ze cat sat", "i go home", "she sink so", "bery good"]
MEANING = ["the cat sat", "i went home", "she thinks so", "very good"]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """CMVN-normalised fbank of espeak-ng reading the surface sentences: ``(B, T, 80)``, ``(B,)``."""
    folder = tmp_path_factory.mktemp("spoken")
    feats = []
    for i, text in enumerate(SURFACE):
        subprocess.run(["espeak-ng", "-w", str(folder / f"{i}.wav"), text], check=True)
        feats.append(fbank(load_wav(folder / f"{i}.wav")))
    cmvn = GlobalCMVN.from_features(feats)
    return pad_features([cmvn(f) for f in feats])


def cer(refs, hyps):
    return sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps)) / sum(map(len, refs))


@pytest.mark.parametrize("arch,tasks", [("so", ("meaning",)), ("do", DO)])
def test_tiny_model_memorises_a_handful_of_utterances(spoken, arch, tasks):
    torch.manual_seed(0)
    config = load_config("tiny")
    config["encoder"]["dropout"] = config["decoder"]["dropout"] = 0.0
    texts = {"surface": SURFACE, "meaning": MEANING}
    toks = {t: CharTokenizer.build(texts[t], language="en") for t in tasks}
    padded = {t: pad_ids([toks[t].encode(s) for s in texts[t]], -1) for t in tasks}
    targets, target_lens = {t: p[0] for t, p in padded.items()}, {t: p[1] for t, p in padded.items()}
    model = build_model(config, arch, tasks, {t: toks[t].vocab_size for t in tasks})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats, feat_lens = spoken
    losses = []
    for _ in range(300):
        loss = model(feats, feat_lens, targets, target_lens)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = model(feats, feat_lens, targets, target_lens)["loss"].item()
        enc, enc_lens = model.encode(feats, feat_lens)
        ctc_hyps = [toks[model.ctc_task].decode(h) for h in ctc_greedy(model.ctc_log_probs(enc), enc_lens)]
        for task in tasks:
            ids = attention_greedy(model, task, enc, enc_lens, sos_eos=toks[task].sos_eos)
            assert cer(texts[task], [toks[task].decode(h) for h in ids]) <= 0.02, task
    assert final <= 0.1 * losses[0]
    assert cer(texts[model.ctc_task], ctc_hyps) <= 0.02
