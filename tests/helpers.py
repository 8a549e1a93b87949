"""Helpers shared by the test modules: data, stores, toy models and small bundled models.

Fixtures built from them are in ``conftest.py``; independent reference
implementations of the measures are in ``cka_reference.py`` and
``measures_reference.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from scipy.io import wavfile
from torch import nn

from cka_probe.asr import CharTokenizer, build_model, load_config, save_checkpoint
from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.train import Run, train
from cka_probe.extract import LayerCapture
from cka_probe.store import StoreWriter, partial_path

# -- random representations of the comparison set


def layers(rng, prefix, n, count=3, d=5):
    """``count`` independent standard normal layers ``{prefix}.i`` of shape (n, d)."""
    return {f"{prefix}.{i}": rng.standard_normal((n, d)) for i in range(count)}


def representations(rng, n, *, do_encoder=None):
    """Random SSO, MSO and DO models of one language (``reps[role][stream][layer]`` (n, 5)); ``do_encoder``
    replaces the DO encoder's layers."""
    reps = {
        "sso": {
            "encoder": layers(rng, "encoder.layers", n),
            "decoder/surface": layers(rng, "decoders.surface.layers", n, 2),
        },
        "mso": {
            "encoder": layers(rng, "encoder.layers", n),
            "decoder/meaning": layers(rng, "decoders.meaning.layers", n, 2),
        },
        "do": {
            "encoder": do_encoder if do_encoder is not None else layers(rng, "encoder.layers", n),
            "decoder/surface": layers(rng, "decoders.surface.layers", n, 2),
            "decoder/meaning": layers(rng, "decoders.meaning.layers", n, 2),
        },
    }
    return reps


def replicated(rng, n, seeds, *, shift=0.0):
    """``seeds`` replicates of every role whose DO encoder is its SSO encoder plus noise, an SSO′ and a
    floor."""
    reps = {"sso": [], "mso": [], "do": []}
    for k in range(seeds):
        one = representations(rng, n)
        one["do"]["encoder"] = {
            name: x + (0.3 + shift * k) * rng.standard_normal(x.shape)
            for name, x in one["sso"]["encoder"].items()
        }
        for role in reps:
            reps[role].append(one[role])
    if seeds == 1:  # the tiny run's second SSO, for the ceiling
        reps["sso"].append(
            {
                s: {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in layer.items()}
                for s, layer in reps["sso"][0].items()
            }
        )
    reps["rand"] = {
        "encoder": layers(rng, "encoder.layers", n),
        "decoder/surface": layers(rng, "decoders.surface.layers", n, 2),
    }
    return reps


def verdict_tables(tmp_path, change, gap_do, gap_so, agree=True):
    """The report's mitigation section of one split-2 row: the lean ``change`` and the CER gaps against DO
    and SO, each ``(estimate, ci_low, ci_high)``, written as the mitigation tables into ``tmp_path``."""
    from cka_probe.study.report import markdown, mitigation_section

    row = {"language": "en", "variant": "split-2", "seed": "all", "seeds": 2, "seeds_agree": agree}
    lean = pd.DataFrame(
        [
            {
                **row,
                "task": "surface",
                "stream": "encoder/branch/surface",
                "own_variant": 0.3,
                "own_do": 0.1,
                "change": change[0],
                "ci_low": change[1],
                "ci_high": change[2],
                "p": 0.01,
                "p_adj": 0.01,
                "n": 40,
            }
        ]
    )
    cer = pd.DataFrame(
        [
            {
                **row,
                "task": "surface",
                "unit": "char",
                "reference": ref,
                "n": 40,
                "reference_cer": 20.0,
                "variant_cer": 20.0 + gap[0],
                "gap": gap[0],
                "ci_low": gap[1],
                "ci_high": gap[2],
                "p": 0.01,
                "p_adj": 0.01,
            }
            for ref, gap in (("SO", gap_so), ("DO", gap_do))
        ]
    )
    lean.to_csv(tmp_path / "mitigation_lean.csv", index=False)
    cer.to_csv(tmp_path / "mitigation_cer.csv", index=False)
    return markdown(mitigation_section(tmp_path))


# -- activation stores of the study's roles

N_UTT, _DIM = 24, 6  # utterances and width of the role stores
_ROLE_ATTRS = {"sso": ("so", ["surface"]), "mso": ("so", ["meaning"]), "do": ("do", ["surface", "meaning"])}
_ROLE_STREAMS = {
    "sso": ["encoder", "decoder/surface"],
    "mso": ["encoder", "decoder/meaning"],
    "do": ["encoder", "decoder/surface", "decoder/meaning"],
}


def _role_frames(seed, n_layers):
    """Per-utterance frame rows (lengths 2..5) of ``n_layers`` layers, seeded."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 6, N_UTT)
    return lengths, [rng.standard_normal((lengths.sum(), _DIM)) for _ in range(n_layers)]


def write_store(path, role, language, *, encoder_seed, order=None, seed=0):
    """A store of one role (``sso``, ``mso``, ``do``) of ``N_UTT`` utterances; its encoder rows come from
    ``encoder_seed``, utterances in ``order``."""
    arch, tasks = _ROLE_ATTRS[role]
    order = np.arange(N_UTT) if order is None else order
    layers = {}
    for k, stream in enumerate(_ROLE_STREAMS[role]):
        n_layers, prefix = (
            (3, "encoder.layers") if stream == "encoder" else (2, f"decoders.{stream[8:]}.layers")
        )
        lengths, rows = _role_frames(encoder_seed if stream == "encoder" else seed * 10 + k, n_layers)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for i, x in enumerate(rows):
            chunks = [x[starts[u] : starts[u + 1]] for u in order]
            layers[stream, f"{prefix}.{i}"] = (np.concatenate(chunks), lengths[order])
    with StoreWriter(path, attrs={"arch": arch, "tasks": tasks, "language": language}) as writer:
        writer.append([f"{language}-{u}" for u in order], layers)
        writer.finish()
    return path


# -- evaluate CSVs: (surface_meaning_ed, ed_bin) per utterance, two utterances in each bin

EDS = [(0, "0"), (0, "0"), (2, "1-3"), (3, "1-3"), (5, "4-10"), (9, "4-10"), (12, ">10"), (20, ">10")]
REF_LEN = [10, 12, 14, 16, 18, 20, 30, 40]
SO_ERR = {"surface": [0, 1, 1, 2, 2, 3, 4, 5], "meaning": [3, 3, 4, 5, 6, 7, 9, 12]}
DO_ERR = {"surface": [0, 1, 2, 3, 4, 5, 8, 12], "meaning": [2, 3, 3, 4, 5, 5, 7, 9]}


def cer_rows(errors, task, language="en", repeat=1, jamo=False):
    """Evaluate-CSV rows of one task: the utterances of ``EDS`` ``repeat`` times, ``errors[task]`` errors."""
    out = []
    for r in range(repeat):
        for i, ((ed, b), length) in enumerate(zip(EDS, REF_LEN)):
            row = {
                "id": f"u{r}-{i}",
                "language": language,
                "task": task,
                "decoding": "attention",
                "ref": "x",
                "hyp": "y",
                "errors": errors[task][i],
                "ref_len": length,
                "cer": 0.0,
                "surface_meaning_ed": ed,
                "ed_bin": b,
            }
            if jamo:
                row |= {"jamo_errors": 2 * errors[task][i], "jamo_ref_len": 3 * length, "jamo_cer": 0.0}
            out.append(row)
    return out


def write_cer(tmp_path, repeat=1, language="en", jamo=False):
    """The SSO, MSO and DO evaluate CSVs of one language (paths in that order)."""
    paths = []
    for name, errors, tasks in (
        ("sso", SO_ERR, ["surface"]),
        ("mso", SO_ERR, ["meaning"]),
        ("do", DO_ERR, ["surface", "meaning"]),
    ):
        path = tmp_path / f"{language}-{name}.csv"
        pd.DataFrame([r for t in tasks for r in cer_rows(errors, t, language, repeat, jamo)]).to_csv(
            path, index=False
        )
        paths.append(path)
    return paths


# -- activation stores from ragged random batches

BATCH_LAYERS = [("encoder", "enc.1"), ("encoder", "enc.0"), ("decoder/surface", "dec.0")]
BATCH_DIMS = {"enc.1": 5, "enc.0": 3, "dec.0": 4}


def random_batches(n_batches: int = 3, batch: int = 4, seed: int = 0, prefix: str = "u"):
    """Batches of ragged random rows: (ids, {(stream, layer): (rows, lengths)}, metadata)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        ids = [f"{prefix}{b}-{i}" for i in range(batch)]
        acts = {}
        for stream, layer in BATCH_LAYERS:
            lengths = rng.integers(1, 6, batch)
            acts[(stream, layer)] = (
                rng.normal(size=(lengths.sum(), BATCH_DIMS[layer])).astype(np.float32),
                lengths,
            )
        out.append(
            (ids, acts, {"speaker": [f"spk{i % 2}" for i in range(batch)], "index": list(range(batch))})
        )
    return out


def write_batches(path, batches, **kwargs):
    """A DO store of :func:`random_batches`' batches; ``kwargs`` go to the writer."""
    with StoreWriter(
        path, attrs={"arch": "do", "tasks": ["surface", "meaning"], "config": {"d": 3}}, **kwargs
    ) as writer:
        for ids, acts, meta in batches:
            writer.append(ids, acts, metadata=meta)
        return writer.finish()


def contents(path: Path) -> dict[str, object]:
    """Every dataset's bytes and every attribute except the creation time."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                found.__setitem__(name, obj[()].tobytes() if obj.dtype.kind != "O" else list(obj.asstr()[()]))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
        found["attrs"] = {k: v for k, v in f.attrs.items() if k != "created"}
    return found


def assert_same_store(path: Path, want: dict[str, object]) -> None:
    """``path`` is a complete store, alone (no partial beside it), bitwise equal to ``want``
    (:func:`contents`)."""
    assert path.exists() and not partial_path(path).exists()
    got = contents(path)
    assert got.keys() == want.keys()
    for key in want:
        assert (
            np.array_equal(got[key], want[key]) if key != "attrs" else got[key].keys() == want[key].keys()
        ), key
    assert all(np.array_equal(got["attrs"][k], v) for k, v in want["attrs"].items())


# -- toy models for extraction


class IntegerLinearStack(nn.Module):
    """Frame-wise linear maps with small integer weights: float32 arithmetic is exact."""

    def __init__(self, dims: tuple[int, ...] = (3, 4, 5, 2), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        for layer in self.net:
            layer.weight.data = torch.randint(-2, 3, layer.weight.shape, generator=gen).float()
            layer.bias.data = torch.randint(-2, 3, layer.bias.shape, generator=gen).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def expected(self, x: np.ndarray) -> list[np.ndarray]:
        """Each layer's output for one utterance ``(T, d0)``, in int64 numpy."""
        outs, h = [], x.astype(np.int64)
        for layer in self.net:
            h = h @ layer.weight.detach().numpy().astype(np.int64).T + layer.bias.detach().numpy().astype(
                np.int64
            )
            outs.append(h)
        return outs


def integer_batches(n_batches: int = 4, batch: int = 3, dim: int = 3, seed: int = 0, pad: float = 1e4):
    """Padded batches of integer frames; padding rows hold ``pad`` so that a leak would show."""
    gen = torch.Generator().manual_seed(seed)
    batches, utterances = [], {}
    for b in range(n_batches):
        lengths = torch.randint(1, 7, (batch,), generator=gen)
        x = torch.full((batch, int(lengths.max()), dim), pad)
        ids = [f"utt{b:02d}{i}" for i in range(batch)]
        for i, uid in enumerate(ids):
            utterances[uid] = torch.randint(-3, 4, (int(lengths[i]), dim), generator=gen).float()
            x[i, : lengths[i]] = utterances[uid]
        batches.append(
            {
                "ids": ids,
                "inputs": x,
                "lengths": lengths,
                "metadata": {"speaker": [f"s{i}" for i in range(batch)], "n_frames": lengths.tolist()},
            }
        )
    return batches, utterances


class ToyEncoderDecoders(nn.Module):
    """Subsampling by 2, masked self-attention layers, and one teacher-forced decoder per task.

    Padding changes every output unless the masks work, so the stored rows
    equal single-utterance forwards only when padding never leaks.
    """

    def __init__(self, dim: int = 8, vocab: int = 7, tasks: tuple[str, ...] = ("surface", "meaning")):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(2 * dim, dim)
        self.layers = nn.ModuleList([nn.MultiheadAttention(dim, 2, batch_first=True) for _ in range(2)])
        self.decoders = nn.ModuleDict({t: ToyDecoder(dim, vocab) for t in tasks})

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = x.shape[1] // 2
        h, enc_lens = self.embed(x[:, : 2 * steps].reshape(len(x), steps, -1)), lengths // 2
        pad = torch.arange(steps)[None, :] >= enc_lens[:, None]
        for layer in self.layers:
            h = h + layer(h, h, h, key_padding_mask=pad)[0]
        return h, enc_lens


class ToyDecoder(nn.Module):
    """Teacher-forced cross-attention layers over the encoder output."""

    def __init__(self, dim: int, vocab: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([nn.MultiheadAttention(dim, 2, batch_first=True) for _ in range(2)])

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor) -> torch.Tensor:
        pad = torch.arange(enc.shape[1])[None, :] >= enc_lens[:, None]
        h = self.emb(ys_in)
        for layer in self.layers:
            h = h + layer(h, enc, enc, key_padding_mask=pad)[0]
        return h


def teacher_forced(model: ToyEncoderDecoders, batch: dict) -> dict[str, torch.Tensor]:
    """Forward for :func:`extract`: encoder, then one teacher-forced pass per task."""
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    lengths = {"encoder": enc_lens}
    for task, decoder in model.decoders.items():
        decoder(enc, enc_lens, batch["ys_in"][task])
        lengths[f"decoder/{task}"] = batch["ys_in_lens"][task]
    return lengths


def toy_asr_batches(n_batches: int = 3, batch: int = 3, dim: int = 8, vocab: int = 7, seed: int = 1):
    """Padded batches for :class:`ToyEncoderDecoders` (padding frames 1e3, so that a leak would show)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        feat_lens = torch.randint(2, 12, (batch,), generator=gen)
        ys_lens = {t: torch.randint(1, 5, (batch,), generator=gen) for t in ("surface", "meaning")}
        feats = torch.randn(batch, int(feat_lens.max()), dim, generator=gen)
        feats[torch.arange(feats.shape[1])[None, :] >= feat_lens[:, None]] = 1e3
        ys_in = {t: torch.randint(0, vocab, (batch, int(n.max())), generator=gen) for t, n in ys_lens.items()}
        out.append(
            {
                "ids": [f"b{b}u{i}" for i in range(batch)],
                "feats": feats,
                "feat_lens": feat_lens,
                "ys_in": ys_in,
                "ys_in_lens": ys_lens,
            }
        )
    return out


TOY_LAYERS = {
    "encoder": ["embed", "layers.*"],
    "decoder/surface": ["decoders.surface.layers.*"],
    "decoder/meaning": ["decoders.meaning.layers.*"],
}


def unpad(batch: dict, i: int) -> dict:
    """Utterance ``i`` of a padded batch alone, without padding (feats, ys_in per task)."""
    one = {
        "feats": batch["feats"][i : i + 1, : int(batch["feat_lens"][i])],
        "feat_lens": batch["feat_lens"][i : i + 1],
        "ys_in": {t: y[i : i + 1, : int(batch["ys_in_lens"][t][i])] for t, y in batch["ys_in"].items()},
        "ys_in_lens": {t: n[i : i + 1] for t, n in batch["ys_in_lens"].items()},
    }
    return {**one, "tasks": batch["tasks"]} if "tasks" in batch else one


def assert_store_matches_single_forwards(store, model, batches, patterns, forward, rtol, atol) -> None:
    """Every stored utterance's rows and means equal a forward of that utterance alone."""
    for batch in batches:
        for i, uid in enumerate(batch["ids"]):
            with LayerCapture(model, {"all": patterns}) as capture, torch.no_grad():
                forward(model, unpad(batch, i))
                alone = {name: out[0] for name, out in capture.pop()["all"].items()}
            for stream in store.streams():
                for layer in store.layers(stream):
                    np.testing.assert_allclose(
                        store.frames(stream, layer, [uid])[0], alone[layer].numpy(), rtol=rtol, atol=atol
                    )
                    np.testing.assert_allclose(
                        store.means(stream, layer, [uid])[0],
                        alone[layer].double().mean(0).numpy(),
                        rtol=rtol,
                        atol=atol,
                    )


# -- small bundled models and their corpora


def small_parts(arch="do", tasks=("surface", "meaning")):
    """A seeded small bundled model with its config, tokenizers and CMVN."""
    config = load_config("tiny")
    config["encoder"].update(
        d_model=32, n_layers=2, ffn_dim=64, subsampling_channels=4, conv_kernel=5, conv_norm="batch_norm"
    )
    config["decoder"].update(n_layers=1, ffn_dim=64)
    texts = {"surface": ["ze cat", "bery"], "meaning": ["the cat", "very"]}
    tokenizers = {t: CharTokenizer.build(texts[t], language="en") for t in tasks}
    torch.manual_seed(0)
    model = build_model(config, arch, tasks, {t: tok.vocab_size for t, tok in tokenizers.items()})
    cmvn = GlobalCMVN(
        torch.linspace(-1, 1, 80, dtype=torch.float64), torch.full((80,), 0.5, dtype=torch.float64)
    )
    return model, config, tokenizers, cmvn


def outputs(model, tasks):
    """The model's encoder, CTC and teacher-forced decoder outputs on seeded random input."""
    torch.manual_seed(5)
    feats, feat_lens = torch.randn(2, 45, 80), torch.tensor([45, 30])
    ys, ys_lens = torch.randint(0, 5, (2, 4)), torch.tensor([4, 2])
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, feat_lens)
        return [
            enc,
            enc_lens,
            model.ctc_log_probs(enc),
            *(model.decode_teacher_forced(t, enc, enc_lens, ys, ys_lens) for t in tasks),
        ]


def shrunk_config(encoder_layers: int, decoder_layers: int) -> dict:
    """``tiny`` cut down to random-weight extraction size: d_model 16, 2 heads, FFN 32, 4 subsampling
    channels."""
    config = load_config("tiny")
    config["encoder"].update(
        subsampling_channels=4, d_model=16, n_heads=2, n_layers=encoder_layers, ffn_dim=32
    )
    config["decoder"].update(n_layers=decoder_layers, n_heads=2, ffn_dim=32)
    return config


def untrained_checkpoint(
    path: Path,
    config: dict,
    rows: list[dict],
    arch: str,
    tasks: tuple[str, ...],
    variant: str = "shared",
    *,
    seed: int = 0,
    epoch: int = 0,
) -> Path:
    """A random-weight model (torch seeded with ``seed``) with English character tokenizers of ``rows``'
    ``tasks`` transcripts and identity CMVN, saved to ``path`` as of ``epoch``."""
    tokenizers = {t: CharTokenizer.build([r[t] for r in rows], language="en") for t in tasks}
    torch.manual_seed(seed)
    model = build_model(config, arch, tasks, {t: k.vocab_size for t, k in tokenizers.items()}, variant)
    return save_checkpoint(
        path,
        model=model,
        config=config,
        tokenizers=tokenizers,
        cmvn=GlobalCMVN(torch.zeros(80), torch.ones(80)),
        epoch=epoch,
        metrics={},
    )


def manifest_row(i: int, audio: str, surface: str, meaning: str, **fields) -> dict:
    """The English manifest row of utterance ``u{i}`` (its transcripts, then ``fields``)."""
    return {"id": f"u{i}", "audio": audio, "surface": surface, "meaning": meaning, "language": "en", **fields}


# (surface, meaning, surface-meaning character edit distance counted by hand)
SPEECH_UTTERANCES = [
    ("de cat sat", "the cat sat", 2),  # d→t, +h
    ("dis is a big dog", "this is a big dog", 2),  # d→t, +h
    ("dey hab tree cars", "they have three cars", 5),  # d→t, +h, b→v, +e, +h
    ("she reads a book", "she reads a book", 0),
]


def small_config(**train):
    """``tiny`` cut down to train in seconds (2 blocks, no dropout, smoothing or SpecAugment); ``train``
    overrides."""
    config = load_config("tiny")
    config["encoder"].update(subsampling_channels=16, n_layers=2, ffn_dim=256, dropout=0.0)
    config["decoder"].update(n_layers=2, ffn_dim=256, dropout=0.0)
    config["loss"]["label_smoothing"] = 0.0
    config["train"].update(lr=2e-3, warmup_steps=10, epochs=100, batch_size=4, spec_augment=None)
    config["train"].update(train)
    return config


def train_small(corpus, config=None, **options):
    """:func:`cka_probe.asr.train.train` on the train and valid manifests of ``corpus`` (the ``speech_corpus``
    fixture) with ``config``, :func:`small_config` by default; returns the path of ``best.pt``."""
    config = small_config() if config is None else config
    return train(train_manifest=corpus["train"], valid_manifest=corpus["valid"], config=config, **options)


def read_log(path):
    """The rows of a training ``log.csv``."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# (surface, meaning) of the noise recordings the small models are extracted over
NOISE_TEXTS = [
    ("he go park", "he goes to the park"),
    ("she have cat", "she has a cat"),
    ("i am here", "i am here"),
    ("they was late", "they were late"),
    ("we eat", "we ate"),
    ("he run", "he ran"),
    ("it good", "it is good"),
    ("you is kind", "you are kind"),
]


# (surface, meaning) for the word level, with the meaning words changed, by hand, as the corpus records them
WORD_TEXTS = [
    ("he go park", "he goes to the park"),
    ("she have a cat", "she has a cat"),
    ("i am here", "i am here"),
    ("dey was late", "they were late"),
    ("we eat rice", "we ate rice"),
    ("it good", "it is good"),
]

WORD_CHANGED = [[1, 2, 3], [1], [], [0, 1], [1], [1]]


def word_manifest(folder: Path, *, changed: bool = False) -> tuple[Path, list[dict]]:
    """``(manifest, rows)``: 1.5 s of seeded noise per :data:`WORD_TEXTS` utterance in ``folder`` and their
    manifest ``test.jsonl``, with :data:`WORD_CHANGED` as ``changed_words`` when ``changed``."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (surface, meaning) in enumerate(WORD_TEXTS):
        wavfile.write(folder / f"u{i}.wav", 16000, (rng.normal(size=24000) * 3000).astype(np.int16))
        fields = {"changed_words": WORD_CHANGED[i]} if changed else {}
        rows.append(manifest_row(i, f"u{i}.wav", surface, meaning, **fields))
    manifest = folder / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, rows


def interrupt_in_epoch(epoch: int, monkeypatch) -> None:
    """Make training stop with Ctrl-C at the start of ``epoch``."""
    original = Run.train_epoch

    def train_epoch(self):
        if self.epoch == epoch:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Run, "train_epoch", train_epoch)
