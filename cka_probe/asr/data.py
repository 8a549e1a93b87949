"""From manifests to padded batches: features, targets, length-grouped batching.

Training side: :func:`load_features` computes every utterance's fbank once
(the data set's in-memory cache, reused every epoch), :func:`build_tokenizers`
makes one vocabulary per task from the training transcripts, and
:class:`TrainBatches` yields CMVN-normalised, SpecAugmented batches grouped by
length. Extraction and evaluation: :class:`ManifestBatches` streams a manifest
in its own order, normalised with a checkpoint's statistics.

Batch dicts hold ``ids: list[str]``, ``feats (B, T, 80)`` float32,
``feat_lens (B,)`` int64 and, per task, ``targets[task] (B, L)`` padded with
−1 and ``target_lens[task] (B,)`` (training) or ``ys_in[task] (B, U)``
(``<sos>`` + tokens, padded with ``<eos>``) and ``ys_in_lens[task] (B,)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.features import fbank, load_wav
from cka_probe.asr.specaugment import spec_augment
from cka_probe.asr.tokenizer import CharTokenizer, unit_for
from cka_probe.data.manifest import read_manifest
from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import normalize_text

MIN_FRAMES = 7  # ((7 - 1) // 2 - 1) // 2 = 1 encoder frame after 4x subsampling


def utterance_features(row: dict[str, Any], features: dict[str, Any]) -> torch.Tensor:
    """Raw (unnormalised) fbank ``(T, 80)`` of one manifest row; too short is an error naming it."""
    wave = load_wav(
        row["audio"], features["sample_rate"], row.get("start"), row.get("end"), utterance=row["id"]
    )
    feats = fbank(wave, **features)
    if feats.shape[0] < MIN_FRAMES:
        raise CKAProbeError(
            f"{row['audio']}: utterance '{row['id']}' has {feats.shape[0]} frames, the encoder needs at "
            f"least {MIN_FRAMES}"
        )
    return feats


def load_features(
    rows: Sequence[dict[str, Any]], features: dict[str, Any], desc: str = "fbank"
) -> list[torch.Tensor]:
    """Fbank ``(T_i, 80)`` of every row, computed once, with a progress bar on a terminal."""
    bar = tqdm(rows, desc=desc, unit="utt", leave=False, disable=None)
    return [utterance_features(row, features) for row in bar]


def build_tokenizers(
    rows: Sequence[dict[str, Any]], tasks: Sequence[str], korean_unit: str
) -> dict[str, CharTokenizer]:
    """One :class:`CharTokenizer` per task from the rows' transcripts (language of the first row)."""
    language = rows[0]["language"]
    unit = unit_for(language, korean_unit)
    return {
        task: CharTokenizer.build((r[task] for r in rows), language=language, unit=unit) for task in tasks
    }


def pad_features(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(T_i, F)] -> (B, T_max, F)`` zero-padded and lengths ``(B,)``."""
    lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True), lens


def pad_ids(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[[id, ...]] -> (B, L_max)`` padded with ``pad`` and lengths ``(B,)``."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), max(1, int(lens.max()))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lens


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices sorted by length (ties broken at random) cut into batches, in a random batch order.

    Deterministic for ``(seed, epoch)``; each epoch gets a different order.
    """
    rng = np.random.default_rng([seed, epoch])
    order = np.lexsort((rng.permutation(len(lengths)), np.asarray(lengths)))
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class TrainBatches:
    """Training or validation batches over cached features; ``epoch(e)`` iterates one epoch."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        feats: Sequence[torch.Tensor],
        tokenizers: dict[str, CharTokenizer],
        cmvn: GlobalCMVN,
        batch_size: int,
        *,
        seed: int = 0,
        spec_augment: dict[str, Any] | None = None,
    ) -> None:
        self.ids = [r["id"] for r in rows]
        self.feats = [cmvn(f) for f in feats]
        self.targets = {task: [tok.encode(r[task]) for r in rows] for task, tok in tokenizers.items()}
        self.diverges = [normalize_text(r["surface"]) != normalize_text(r["meaning"]) for r in rows]
        self.batch_size, self.seed, self.augment = batch_size, seed, spec_augment

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Batches of epoch ``epoch``, shuffled and SpecAugmented deterministically for ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        lengths = [f.shape[0] for f in self.feats]
        for index in length_grouped_batches(lengths, self.batch_size, self.seed, epoch):
            yield self.collate(index, generator)

    def collate(self, index: list[int], generator: torch.Generator) -> dict[str, Any]:
        feats, feat_lens = pad_features([self.feats[i] for i in index])
        if self.augment:
            feats = spec_augment(feats, feat_lens, generator, **self.augment)
        batch: dict[str, Any] = {"ids": [self.ids[i] for i in index], "feats": feats, "feat_lens": feat_lens}
        padded = {
            task: pad_ids([seqs[i] for i in index], CharTokenizer.ignore_id)
            for task, seqs in self.targets.items()
        }
        batch["targets"] = {task: p[0] for task, p in padded.items()}
        batch["target_lens"] = {task: p[1] for task, p in padded.items()}
        batch["diverges"] = torch.tensor([self.diverges[i] for i in index], dtype=torch.bool)
        return batch


class ManifestBatches:
    """Batches of a manifest in file order, normalised with ``ckpt``'s CMVN, for extraction and evaluation.

    ``manifest`` is a path or the rows already read; ``ckpt`` is the dict that
    :func:`cka_probe.asr.load_checkpoint` returns (``tokenizers``, ``cmvn``,
    ``config``, ``tasks``); ``limit`` keeps the first rows; ``tasks`` (default:
    every tokenizer's) are the transcripts turned into ``ys_in``.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[dict[str, Any]],
        ckpt: dict[str, Any],
        batch_size: int,
        limit: int | None = None,
        tasks: Sequence[str] | None = None,
    ) -> None:
        rows = (
            manifest
            if isinstance(manifest, Sequence) and not isinstance(manifest, str)
            else read_manifest(manifest)
        )
        self.rows = list(rows)[:limit]
        self.features = ckpt["config"]["features"]
        self.tokenizers = {t: tok for t, tok in ckpt["tokenizers"].items() if tasks is None or t in tasks}
        self.cmvn = ckpt["cmvn"]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self.rows), self.batch_size):
            yield self.collate(self.rows[start : start + self.batch_size])

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        feats, feat_lens = pad_features([self.cmvn(utterance_features(r, self.features)) for r in rows])
        batch: dict[str, Any] = {"ids": [r["id"] for r in rows], "feats": feats, "feat_lens": feat_lens}
        batch["ys_in"], batch["ys_in_lens"] = {}, {}
        for task, tok in self.tokenizers.items():
            ys_in, lens = pad_ids([[tok.sos_eos, *tok.encode(r[task])] for r in rows], tok.sos_eos)
            batch["ys_in"][task], batch["ys_in_lens"][task] = ys_in, lens
        return batch
