"""Overheads of extraction and of compare-from-stores, as ratios to baselines measured in the same run.

1. ``extract`` (hooks + valid-row gathering + HDF5 writing) against the same
   model's plain forward passes over the same batches: the bundled tiny DO
   model (random weights), encoder and both teacher-forced decoders. Target <= 1.25x.
   The HF case does the same for a Whisper-base-sized random model (d_model
   512, 6 encoder + 6 decoder layers, built from a config: nothing is
   downloaded) through its adapter: 30-second windows, 2-5 s of audio each,
   both tasks teacher-forced on 20-60 tokens. Target <= 1.25x.
   ``--whisper-throughput``: utterances per second of ``extract_model`` end to
   end (audio, log-mel, encoder, both decoders teacher-forced, HDF5) for
   Whisper-tiny- and base-sized random models (d_model 384, 4 + 4 layers;
   512, 6 + 6; 80 mels) over 20 utterances of 2-3 s, at batch sizes 1, 4, 8
   and 16, padding self-check off (the steady state) and, at 16 (the default),
   on; it checks that the adapter's forward runs under ``torch.inference_mode``.
2. ``compare_stores`` (alignment by id, chunked streaming into the exact
   linear accumulator) against reading the same layers whole with plain h5py
   and calling ``cka_matrix``. Target <= 1.5x.

Usage: ``python benchmarks/bench_extract.py [--utterances 256] [--hf-utterances 8] [--rows 40000] [--repeats
7]
[--dtype float32|float16] [--device cpu|cuda] [--whisper-throughput]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import torch

from cka_probe.asr import build_model, load_config
from cka_probe.compare.stores import compare_stores
from cka_probe.extract import extract
from cka_probe.extract.asr import default_layers, layer_streams, teacher_forced
from cka_probe.measures import cka_matrix
from cka_probe.store import StoreWriter


def interleaved_best(repeats: int, baseline, candidate) -> tuple[float, float, float]:
    """Least wall time of each of two calls, run alternately, and the median of the per-repeat ratios.

    On a shared machine the least of interleaved runs is the least noisy time
    of each call; the median ratio of the adjacent pairs shows how much the
    ratio itself moves (±10 % for a forward pass of a few ms per utterance).
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, record in ((baseline, times[0]), (candidate, times[1])):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return min(times[0]), min(times[1]), float(np.median(np.divide(times[1], times[0])))


def asr_batches(n: int, batch: int, vocab: int, seed: int = 0) -> list[dict]:
    """Random 80-dim features of 2-5 s and random transcripts of 20-60 tokens, padded."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(0, n, batch):
        feat_lens = torch.randint(200, 500, (batch,), generator=gen)
        ys_lens = {t: torch.randint(20, 60, (batch,), generator=gen) for t in ("surface", "meaning")}
        out.append(
            {
                "ids": [f"u{b + i}" for i in range(batch)],
                "tasks": ["surface", "meaning"],
                "feats": torch.randn(batch, int(feat_lens.max()), 80, generator=gen),
                "feat_lens": feat_lens,
                "ys_in": {
                    t: torch.randint(0, vocab, (batch, int(k.max())), generator=gen)
                    for t, k in ys_lens.items()
                },
                "ys_in_lens": ys_lens,
            }
        )
    return out


def raw_write_seconds(nbytes: int, tmp: Path, repeats: int) -> float:
    """Least time to write ``nbytes`` to a new file in ``tmp`` with one plain ``write``: the disk's floor."""
    payload, best = np.zeros(nbytes, np.uint8), float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        payload.tofile(tmp / f"raw{i}.bin")
        best = min(best, time.perf_counter() - start)
    for i in range(repeats):
        (tmp / f"raw{i}.bin").unlink()
    return best


def bench_extraction(n: int, tmp: Path, repeats: int, dtype: str) -> float:
    torch.manual_seed(0)
    model = build_model(
        load_config("tiny"), "do", ("surface", "meaning"), {"surface": 40, "meaning": 40}
    ).eval()
    batches = asr_batches(n, 16, 40)
    streams = layer_streams(model, default_layers(model.tasks), model.tasks)

    def plain():
        with torch.inference_mode():
            for batch in batches:
                teacher_forced(model, batch)

    inside = []

    def timed_forward(m, batch):
        start = time.perf_counter()
        lengths = teacher_forced(m, batch)
        inside.append(time.perf_counter() - start)
        return lengths

    def extraction():
        inside.clear()
        extract(
            model,
            batches,
            layers=streams,
            out=tmp / "bench.h5",
            forward=timed_forward,
            overwrite=True,
            dtype=dtype,
            progress=False,
        )

    plain()
    t_plain, t_extract, median = interleaved_best(repeats, plain, extraction)
    start = time.perf_counter()
    extraction()
    t_run = time.perf_counter() - start
    rows = sum(int(b["feat_lens"].div(4, rounding_mode="floor").sum()) for b in batches)
    print(
        f"extract: {n} utterances, tiny DO model, {sum(map(len, streams.values()))} layers, ~{rows} "
        "encoder frames"
    )
    print(
        f"  plain forward {t_plain:.2f} s   extract {t_extract:.2f} s   ratio {t_extract / t_plain:.2f}x "
        f"(median of {repeats} pairs {median:.2f}x; target <= 1.25x)"
    )
    print(
        f"  one extract run: {t_run:.2f} s of which forward passes {sum(inside):.2f} s: "
        f"ratio {t_run / sum(inside):.2f}x"
    )
    size = (tmp / "bench.h5").stat().st_size
    print(
        f"  the store holds {size / 2**20:.1f} MiB ({dtype}); writing that many bytes to a plain file here "
        f"takes {raw_write_seconds(size, tmp, repeats):.2f} s"
    )
    return t_extract / t_plain


def whisper_base_adapter(tmp: Path):
    """A random Whisper-base-sized model saved to ``tmp`` and its adapter (default preprocessing)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from cka_probe.extract.models.hf import read_config
    from cka_probe.extract.models.whisper import WhisperAdapter

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
    )
    WhisperForConditionalGeneration(config).save_pretrained(tmp / "whisper-base-random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WhisperAdapter(tmp / "whisper-base-random", read_config(tmp / "whisper-base-random"))


def whisper_batches(n: int, batch: int, vocab: int, seed: int = 0) -> list[dict]:
    """Random log-mel windows (B, 80, 3000) with 2-5 s of audio, and 20-60 transcript tokens per task."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(0, n, batch):
        samples = torch.randint(32000, 80000, (batch,), generator=gen)
        item = {
            "ids": [f"u{b + i}" for i in range(batch)],
            "tasks": ["surface", "meaning"],
            "input_features": torch.randn(batch, 80, 3000, generator=gen),
            "enc_lens": -(-samples // 320),
            "decoder_ids": {},
            "dec_lens": {},
            "tokens": {},
        }
        for task in item["tasks"]:
            lens = torch.randint(20, 60, (batch,), generator=gen) + 4
            item["decoder_ids"][task] = torch.randint(0, vocab, (batch, int(lens.max())), generator=gen)
            item["dec_lens"][task] = lens - 3
            item["tokens"][f"decoder/{task}"] = item["decoder_ids"][task][:, 3:]
        out.append(item)
    return out


def bench_hf_extraction(n: int, tmp: Path, repeats: int, dtype: str, device: str) -> float:
    from cka_probe.extract.activations import _to_device
    from cka_probe.extract.models import layer_streams

    adapter = whisper_base_adapter(tmp)
    model = adapter.build(device)
    tasks = ["surface", "meaning"]
    streams = layer_streams(adapter.streams_of, model, adapter.default_layers(tasks), tasks)
    batches = [_to_device(b, torch.device(device)) for b in whisper_batches(n, 4, model.config.vocab_size)]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def plain():
        with torch.inference_mode():
            for batch in batches:
                adapter.forward(model, batch)
        sync()

    def extraction():
        extract(
            model,
            batches,
            layers=streams,
            out=tmp / "whisper.h5",
            forward=adapter.forward,
            select=adapter.select,
            overwrite=True,
            dtype=dtype,
            device=device,
            progress=False,
        )
        sync()

    plain()
    t_plain, t_extract, median = interleaved_best(repeats, plain, extraction)
    print(
        f"extract (HF): {n} utterances, Whisper-base-sized random model on {device}, "
        f"{sum(map(len, streams.values()))} layers over its three streams"
    )
    print(
        f"  plain forward {t_plain:.2f} s   extract {t_extract:.2f} s   ratio {t_extract / t_plain:.2f}x "
        f"(median of {repeats} pairs {median:.2f}x; target <= 1.25x)"
    )
    return t_extract / t_plain


WHISPER_SIZES = {"tiny": (384, 4, 6), "base": (512, 6, 8)}
"""Whisper sizes: d_model, layers of the encoder and of the decoder, attention heads."""
TEXTS = ["he go to de park yesterday", "she have two cat at home", "we was there all the day long"]


def cpu_model() -> str:
    """``model name`` of /proc/cpuinfo, else ``platform.processor()``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")


@contextmanager
def inference_mode_seen(adapter_class) -> Iterator[list[bool]]:
    """Records, for each call of ``adapter_class.forward``, whether ``torch.inference_mode`` was on."""
    seen: list[bool] = []
    original = adapter_class.forward

    def forward(self, model, batch):
        seen.append(torch.is_inference_mode_enabled())
        return original(self, model, batch)

    adapter_class.forward = forward
    try:
        yield seen
    finally:
        adapter_class.forward = original


def bench_whisper_throughput(tmp: Path, n: int, batch_sizes: list[int]) -> None:
    """Utterances per second of ``extract_model`` on Whisper-tiny- and base-sized random models."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hf_models import noise_corpus, whisper_sized_folder

    from cka_probe.extract.models import extract_model
    from cka_probe.extract.models.whisper import WhisperAdapter

    seconds = list(np.random.default_rng(0).uniform(2, 3, n))
    manifest = noise_corpus(tmp / "corpus", seconds, texts=[TEXTS[i % len(TEXTS)] for i in range(n)])
    runs = [(b, False) for b in batch_sizes] + [(batch_sizes[-1], True)]
    print(f"Whisper extraction throughput: {n} utterances of 2-3 s, both tasks teacher-forced")
    print("| model | batch | padding check | seconds | utterances/s |")
    print("|---|---|---|---|---|")
    for size, (d_model, layers, heads) in WHISPER_SIZES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder = whisper_sized_folder(tmp / size, d_model, layers, heads)
        for batch, check in runs:
            with inference_mode_seen(WhisperAdapter) as seen:
                start = time.perf_counter()
                extract_model(
                    folder, manifest, tmp / "t.h5", batch_size=batch, overwrite=True, padding_check=check
                )
                took = time.perf_counter() - start
            assert seen and all(seen), "the adapter's forward ran outside torch.inference_mode"
            print(
                f"| {size} ({d_model}, {layers}+{layers}) | {batch} | {'on' if check else 'off'} | "
                f"{took:.1f} | {n / took:.2f} |"
            )


def write_store(path: Path, layers: int, rows: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(rows, dim)).astype(np.float32)
    lengths = np.full(rows // 50, 50)
    with StoreWriter(path) as writer:
        acts = {
            ("encoder", f"layers.{i}"): (
                np.tanh(base @ rng.normal(size=(dim, dim)).astype(np.float32) / 8),
                lengths,
            )
            for i in range(layers)
        }
        for lo in range(0, len(lengths), 100):
            sel = slice(lo * 50, (lo + 100) * 50)
            writer.append(
                [f"u{i}" for i in range(lo, lo + 100)],
                {k: (r[sel], lengths[lo : lo + 100]) for k, (r, _) in acts.items()},
            )
        writer.finish()


def bench_compare(rows: int, tmp: Path, repeats: int) -> tuple[float, float]:
    layers, dim = 6, 144
    a, b = tmp / "a.h5", tmp / "b.h5"
    write_store(a, layers, rows, dim, 0)
    write_store(b, layers, rows, dim, 1)

    def plain(dataset: str):
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            xs = {f"layers.{i}": fa[f"encoder/layers.{i}/{dataset}"][:] for i in range(layers)}
            ys = {f"layers.{i}": fb[f"encoder/layers.{i}/{dataset}"][:] for i in range(layers)}
        return cka_matrix(xs, ys)

    ratios = []
    for pool, dataset in (("frames", "data"), ("mean", "mean")):
        ours = compare_stores(a, b, pool=pool)
        base = plain(dataset)
        assert np.allclose(ours.to_numpy(), base.to_numpy(), rtol=1e-4), (ours, base)
        t_plain, t_store, median = interleaved_best(
            repeats, lambda d=dataset: plain(d), lambda p=pool: compare_stores(a, b, pool=p)
        )
        n = ours.attrs["n"]
        print(f"compare pool={pool}: {layers}x{layers} layers, d={dim}, n={n}")
        print(
            f"  h5py + cka_matrix {t_plain:.2f} s   compare_stores {t_store:.2f} s   "
            f"ratio {t_store / t_plain:.2f}x (median of {repeats} pairs {median:.2f}x; target <= 1.5x)"
        )
        ratios.append(t_store / t_plain)
    return tuple(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--utterances", type=int, default=256, help="utterances of the bundled case (0: skip it)"
    )
    parser.add_argument("--hf-utterances", type=int, default=8, help="utterances of the HF case (0: skip it)")
    parser.add_argument("--device", default="cpu", help="device of the HF case")
    parser.add_argument("--rows", type=int, default=40_000, help="rows of the compare case (0: skip it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage dtype")
    parser.add_argument(
        "--whisper-throughput", action="store_true", help="only the Whisper throughput case (utterances/s)"
    )
    parser.add_argument("--whisper-utterances", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        if args.whisper_throughput:
            bench_whisper_throughput(Path(tmp), args.whisper_utterances, [1, 4, 8, 16])
            return
        if args.utterances:
            bench_extraction(args.utterances, Path(tmp), args.repeats, args.dtype)
        if args.hf_utterances:
            bench_hf_extraction(args.hf_utterances, Path(tmp), args.repeats, args.dtype, args.device)
        if args.rows:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bench_compare(args.rows, Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
