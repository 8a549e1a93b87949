"""Speed of the bundled model pieces on CPU, each against a baseline measured in the same run.

    python benchmarks/bench_asr_model.py [--threads 1] [--steps 5] [--seconds 3.0]

- fbank: ``cka_probe.asr.features.fbank`` on a 60 s waveform against
  kaldi-native-fbank (C++) on the same samples, and the largest difference.
- training step (forward + backward + AdamW) of the ``tiny`` models on a batch
  of 16 utterances of ``--seconds`` s (about 12 characters per second of
  targets): SO and DO with relative positions, against the SO model with
  absolute positions as the baseline; and encoder-only inference;
- the structured DO variants (``split-2``, ``shared-private``,
  ``sparse-shared``, tiny config) against the plain DO model (``shared``) as
  their baseline, same batch.

Figures vary with the machine's load; compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cka_probe.asr import build_model, load_config
from cka_probe.asr.features import fbank

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_asr_features import kaldi_fbank as kaldi  # noqa: E402  (the tests' kaldi-native-fbank reference)


def best_of(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_fbank() -> None:
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(60 * 16000)).astype(np.float32)
    ours, theirs = best_of(lambda: fbank(wave), 3), best_of(lambda: kaldi(wave), 3)
    diff = float(np.abs(fbank(wave).numpy() - kaldi(wave)).max())
    print(
        f"fbank 60 s audio: cka_probe {ours * 1e3:.1f} ms, kaldi-native-fbank {theirs * 1e3:.1f} ms "
        f"(ratio {ours / theirs:.2f}); max |difference| {diff:.2e}"
    )


def step_time(
    arch: str, pos_enc: str, seconds: float, steps: int, variant: str = "shared"
) -> tuple[float, float, int]:
    """(train step s, encoder inference s, parameters) of a tiny model on a batch of 16."""
    config = load_config("tiny")
    config["encoder"]["pos_enc"] = pos_enc
    tasks = ("surface", "meaning") if arch == "do" else ("surface",)
    torch.manual_seed(0)
    model = build_model(config, arch, tasks, {t: 40 for t in tasks}, variant)
    frames, chars = int(seconds * 100), int(seconds * 12)
    feats, feat_lens = torch.randn(16, frames, 80), torch.full((16,), frames)
    targets = {t: torch.randint(2, 39, (16, chars)) for t in tasks}
    target_lens = {t: torch.full((16,), chars) for t in tasks}
    diverges = torch.arange(16) % 2 == 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad()
        model(feats, feat_lens, targets, target_lens, diverges)["loss"].backward()
        optimizer.step()

    def encode() -> None:
        with torch.no_grad():
            model.encode(feats, feat_lens)

    train = best_of(train_step, steps)
    model.eval()
    return train, best_of(encode, steps), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_fbank()
    base_train, base_encode, _ = step_time("so", "abs_pos", args.seconds, args.steps)
    print(
        f"tiny training step, batch 16 x {args.seconds:g} s, {args.threads} thread(s); baseline SO abs_pos "
        f"{base_train:.3f} s/step, encoder inference {base_encode:.3f} s"
    )
    for arch in ("so", "do"):
        train, encode, params = step_time(arch, "rel_pos", args.seconds, args.steps)
        print(
            f"  {arch.upper()} rel_pos ({params / 1e6:.2f}M parameters): {train:.3f} s/step "
            f"({train / base_train:.2f}x baseline), encoder inference {encode:.3f} s "
            f"({encode / base_encode:.2f}x)"
        )
    do_train, do_encode, do_params = step_time("do", "abs_pos", args.seconds, args.steps)
    print(
        f"DO variants (tiny, abs_pos); baseline DO shared ({do_params / 1e6:.2f}M parameters) "
        f"{do_train:.3f} s/step, "
        f"encoder inference {do_encode:.3f} s"
    )
    for variant in ("split-2", "shared-private", "sparse-shared"):
        train, encode, params = step_time("do", "abs_pos", args.seconds, args.steps, variant)
        print(
            f"  {variant} ({params / 1e6:.2f}M parameters): {train:.3f} s/step ({train / do_train:.2f}x), "
            f"encoder inference {encode:.3f} s ({encode / do_encode:.2f}x)"
        )


if __name__ == "__main__":
    main()
