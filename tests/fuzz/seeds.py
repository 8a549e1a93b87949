"""Clean seed inputs of every format, built from scratch in a folder in seconds (nothing downloaded).

The layout, relative to the seed folder (every case copies it and runs its
command there, so paths in outputs are the same as in the clean run):

- ``corpus/m.jsonl`` and ``corpus/u0.wav`` .. ``u2.wav``: a 4-utterance manifest of seeded int16 noise
  with transcripts;
- ``model.pt``: a random-weight DO checkpoint (shrunk tiny config); ``other.pt``: the same with another seed;
- ``a.h5``, ``b.h5``: the two checkpoints extracted over the manifest;
- ``a.npz``, ``b.npz``: two related representations, two layers each;
- ``roles/{sso,mso,do}.h5``: the comparison set of one language (random rows);
- ``whisper/``, ``wav2vec2/``: tiny random-weight Hugging Face folders (when transformers is installed);
- ``adapter.py``: a copy of the shipped ``FILE.py:FUNCTION`` example;
- ``small.json``: a training config small enough to train for one epoch in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from cka_probe.cli import main

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    ("he go park", "he goes to the park"),
    ("she have cat", "she has a cat"),
    ("i am here", "i am here"),
    ("we eat", "we ate"),
]
SECONDS = [0.4, 0.6, 0.5, 0.3]


def has_transformers() -> bool:
    """Whether the Hugging Face formats can be built and consumed here."""
    try:
        import safetensors  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _corpus(folder: Path) -> list[dict]:
    """Seeded int16 noise WAVs at 16 kHz and ``m.jsonl``; the manifest rows."""
    from hf_models import noise_corpus

    manifest = noise_corpus(folder, SECONDS, texts=[s for s, _ in TEXTS], seed=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row, (_, meaning) in zip(rows, TEXTS):
        row["meaning"] = meaning
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _checkpoints(root: Path, rows: list[dict]) -> None:
    """``model.pt`` and ``other.pt``: random-weight DO models of the shrunk tiny config."""
    from helpers import shrunk_config, untrained_checkpoint

    for name, seed in (("model.pt", 0), ("other.pt", 1)):
        untrained_checkpoint(root / name, shrunk_config(2, 1), rows, "do", ("surface", "meaning"), seed=seed)


def _stores(root: Path) -> None:
    """``a.h5`` and ``b.h5`` extracted from the checkpoints, and the role stores of one language."""
    for ckpt, out in (("model.pt", "a.h5"), ("other.pt", "b.h5")):
        argv = ["extract", str(root / ckpt), "--data", str(root / "corpus/m.jsonl"), "--out", str(root / out)]
        if main(argv) != 0:
            raise RuntimeError(f"the seed store {out} could not be extracted")
    from helpers import write_store

    (root / "roles").mkdir()
    for k, role in enumerate(("sso", "mso", "do")):
        write_store(root / "roles" / f"{role}.h5", role, "en", encoder_seed=k, seed=k)


def _npz(root: Path) -> None:
    """``a.npz`` (layers l0, l1 of 12 rows) and ``b.npz``, a noisy linear map of it."""
    rng = np.random.default_rng(0)
    a = {"l0": rng.standard_normal((12, 5)), "l1": rng.standard_normal((12, 4))}
    noise = lambda: 0.3 * rng.standard_normal((12, 3))  # noqa: E731
    b = {k: v @ rng.standard_normal((v.shape[1], 3)) + noise() for k, v in a.items()}
    np.savez(root / "a.npz", **a)
    np.savez(root / "b.npz", **b)


def _hf(root: Path) -> None:
    """Tiny Whisper and wav2vec2 folders."""
    from hf_models import wav2vec2_folder, whisper_folder

    whisper_folder(root / "whisper")
    wav2vec2_folder(root / "wav2vec2")


def _small_config(root: Path) -> None:
    """``small.json``: the shrunk tiny config with one epoch of batches of 2."""
    from helpers import shrunk_config

    config = shrunk_config(1, 1)
    config["train"].update(epochs=1, batch_size=2, warmup_steps=1, spec_augment=None)
    (root / "small.json").write_text(json.dumps(config))


def build_seeds(root: Path) -> Path:
    """Every clean seed input under ``root`` (created); ``root``."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = _corpus(root / "corpus")
        _checkpoints(root, rows)
        _stores(root)
        _npz(root)
        _small_config(root)
        shutil.copy(REPO / "examples" / "wenet_style_adapter.py", root / "adapter.py")
        if has_transformers():
            _hf(root)
    finally:
        torch.set_num_threads(threads)
    return root
