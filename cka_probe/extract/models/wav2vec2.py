"""wav2vec2, HuBERT, WavLM and data2vec-audio (``*Model`` or ``*ForCTC``): CNN feature encoder, projection,
layers.

Layers (default): ``feature_extractor`` (the CNN's output, stored as
``(B, T, C)``), ``feature_projection`` and every ``encoder.layers.*``, with the
base model's prefix (``wav2vec2.`` in a ``*ForCTC`` model). Valid lengths are
the CNN's own output lengths (``_get_feat_extract_output_lengths``: per conv
layer ``⌊(L − kernel) / stride⌋ + 1``).

Padding rule (Baevski et al. 2020; the HF docs of ``Wav2Vec2Model``): with
``feat_extract_norm == "group"`` (the base models) the first conv layer's
GroupNorm normalises over the whole input, padding included, and such models
must not get an attention mask. They are batched without padding: utterances
of equal sample count share a batch (buckets in order of first appearance),
the others run one at a time. Layer-norm variants are padded and get their
attention mask, except data2vec-audio: its positional embedding is a stack of
convolutions, and from the second one on the frames past an utterance's end
hold the first one's output rather than zeros, so valid frames near the end
change with padding (the padding self-check finds it); it is batched like the
group-norm models. Input values follow the folder's feature extractor
(``do_normalize``: zero mean, unit variance per utterance over its samples).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.data.audio import audio_length, load_audio
from cka_probe.extract.models.base import Batch, in_order
from cka_probe.extract.models.hf import (
    HFAdapter,
    architecture,
    base_prefix,
    feature_extractor,
    hf_config,
    plain_settings,
    provenance,
    require_transformers,
)

MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
UNPADDED = ("data2vec-audio",)
"""Model types batched without padding whatever their feature-encoder norm (see the module docstring)."""
TRAINING_ONLY = ("masked_spec_embed",)
"""Parameters used only in training (SpecAugment's mask vector), which a folder's weights may lack."""


def equal_length_buckets(
    rows: Sequence[dict], lengths: Sequence[int], batch_size: int
) -> Iterator[list[dict]]:
    """Rows of equal ``lengths`` together, ``batch_size`` at most, buckets in order of first appearance."""
    buckets: dict[int, list[dict]] = {}
    for row, length in zip(rows, lengths):
        buckets.setdefault(length, []).append(row)
    for bucket in buckets.values():
        yield from in_order(bucket, batch_size)


class Wav2Vec2Adapter(HFAdapter):
    """A local HF folder of the wav2vec2 family."""

    unused = TRAINING_ONLY

    def __init__(self, folder: str | Path, config: dict):
        self.transformers = transformers = require_transformers(folder)
        self.folder, self.config, self.name = Path(folder), config, str(folder)
        self.hf_config = hf_config(folder, transformers)
        self.padded = (
            config.get("feat_extract_norm", "layer") == "layer" and config["model_type"] not in UNPADDED
        )
        self.features = feature_extractor(
            folder,
            transformers.Wav2Vec2FeatureExtractor,
            do_normalize=True,
            sampling_rate=16000,
            return_attention_mask=self.padded,
        )
        self.model_class = (
            transformers.AutoModelForCTC
            if architecture(config).endswith("ForCTC")
            else transformers.AutoModel
        )
        self.prefix = ""

    def ready(self, model: nn.Module) -> nn.Module:
        self.prefix = base_prefix(model)
        self.output_lengths = model.base_model._get_feat_extract_output_lengths
        return model

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        p = self.prefix
        return [f"{p}feature_extractor", f"{p}feature_projection", f"{p}encoder.layers.*"]

    def required_fields(self, tasks: Sequence[str]) -> tuple[str, ...]:
        return ("id", "audio")

    def select(self, name: str, output: object) -> torch.Tensor:
        """The CNN's ``(B, C, T)`` output as rows ``(B, T, C)``; the first tensor of anything else."""
        tensor = super().select(name, output)
        return tensor.transpose(1, 2) if name == f"{self.prefix}feature_extractor" else tensor

    def waves(self, rows: Sequence[dict]) -> list:
        rate = self.features.sampling_rate
        return [load_audio(r["audio"], rate, r.get("start"), r.get("end"), utterance=r["id"]) for r in rows]

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        blocks = (
            in_order(rows, batch_size)
            if self.padded
            else equal_length_buckets(
                rows,
                [
                    audio_length(r["audio"], self.features.sampling_rate, r.get("start"), r.get("end"))
                    for r in rows
                ],
                batch_size,
            )
        )
        for block in blocks:
            yield self.collate(block)

    def collate(self, rows: Sequence[dict]) -> Batch:
        waves = self.waves(rows)
        inputs = self.features(
            waves,
            sampling_rate=self.features.sampling_rate,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        samples = torch.tensor([len(w) for w in waves])
        batch = {
            "ids": [r["id"] for r in rows],
            "input_values": inputs["input_values"],
            "samples": samples,
            "metadata": {"n_samples": samples.tolist()},
        }
        if self.padded:
            batch["attention_mask"] = inputs["attention_mask"]
        return batch

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        model(batch["input_values"], attention_mask=batch.get("attention_mask"))
        return {"encoder": self.output_lengths(batch["samples"])}

    def attrs(self) -> dict:
        return {
            "adapter": "wav2vec2",
            **provenance(self.folder, self.config),
            "arch": self.config["model_type"],
            "tasks": [],
            "padding": "attention mask" if self.padded else "equal-length buckets (group norm)",
            "preprocessor": plain_settings(self.features),
            "conv_kernel": list(self.hf_config.conv_kernel),
            "conv_stride": list(self.hf_config.conv_stride),
        }
