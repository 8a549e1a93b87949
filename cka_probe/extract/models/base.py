"""The adapter protocol: what ``extract`` needs to know of a model family (docs/design.md, "Model adapters").

An adapter has four duties:

- ``build(device) -> nn.Module``: the model, in eval mode, on ``device``;
- ``default_layers(tasks) -> list[str]``: layer globs over ``named_modules()``;
- ``batches(rows, batch_size, tasks)``: manifest rows -> batches, each a dict
  with ``ids``, the model's inputs, optionally ``metadata`` (field -> B values)
  and ``tokens`` (decoder stream -> ``(B, U)`` input token ids);
- ``forward(model, batch) -> lengths``: runs the batch; returns the valid
  lengths ``(B,)`` per stream (``encoder``, ``decoder/<task>``).

and, with defaults here, ``tasks`` (decoders it can teacher-force),
``streams_of(name, tasks)`` (the streams a layer's output belongs to),
``stream_order(tasks)`` (the order of the store's streams),
``required_fields(tasks)`` (manifest fields the batches need), ``select`` (the
output selector for tuple outputs), ``padding_tolerance`` and ``attrs()``
(provenance for the store). Two more duties are optional and have no default:
``transcribe(model, batch) -> {task: list of B texts}``, the model's own
transcripts of a batch (of ``batches(rows, batch_size, ())``), which
``cka-probe evaluate`` scores (:mod:`cka_probe.extract.models.transcribe`); a
model without it has no CER; and ``build_random(device, seed) -> nn.Module``,
the same architecture with fresh weights drawn after ``torch.manual_seed(seed)``,
which ``extract_model(..., random_init=seed)`` extracts as the
random-initialisation floor (the bundled and Hugging Face adapters have it).
Everything else (hooks, the store, resume, torchrun, progress) is the generic
:func:`cka_probe.extract.activations.extract_activations`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from cka_probe.extract.hooks import first_tensor

Batch = dict


def in_order(rows: Sequence[dict], batch_size: int) -> Iterator[list[dict]]:
    """Consecutive blocks of ``batch_size`` rows, in manifest order."""
    for start in range(0, len(rows), batch_size):
        yield list(rows[start : start + batch_size])


class Adapter:
    """Defaults of the protocol; a family overrides what differs (see the module docstring)."""

    name: str = "model"
    tasks: tuple[str, ...] = ()
    padding_tolerance: float = 1e-3
    """The padding self-check's bound on ``max |batched − alone|`` relative to ``max |alone|`` of a layer."""

    def build(self, device: str) -> nn.Module:
        raise NotImplementedError

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def streams_of(self, name: str, tasks: Sequence[str]) -> list[str]:
        """The streams a layer's output belongs to: the encoder, unless a family says otherwise."""
        return ["encoder"]

    def stream_order(self, tasks: Sequence[str]) -> list[str]:
        """The store's streams in order: the encoder, then one decoder per task."""
        return ["encoder", *(f"decoder/{t}" for t in tasks)]

    def required_fields(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """Manifest fields the batches read: the audio, and the transcript of each teacher-forced task."""
        return ("id", "audio", *tasks)

    def select(self, name: str, output: object) -> torch.Tensor:
        return first_tensor(name, output)

    def attrs(self) -> dict:
        return {"adapter": self.name}
