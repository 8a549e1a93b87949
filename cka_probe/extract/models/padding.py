"""The padding self-check: the first batch against its most padded utterances run alone.

A stored row must be what the model computes for that utterance alone. On the
first batch of an extraction, the utterance with the fewest valid rows in each
stream (the most padded there, which leaking padding changes most) is run
alone, and every hooked layer's valid rows of it are compared with the
batched ones: at most one run alone per stream, whatever the batch size (a
Whisper forward costs a full 30-second window however short the utterance).
The check fails,
naming the model, layer and utterance, when

    max |batched − alone|  >  tolerance · max(max |alone|, 1e-6)

over the utterance's rows (``tolerance``: the adapter's ``padding_tolerance``,
1e-3 by default: float32 batched matmuls differ from unbatched ones by about
1e-6 relatively, padding leaks by percent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from cka_probe.extract.activations import (
    ModelOutputError,
    _stream_lengths,
    _to_device,
    check_finite,
    valid_rows,
)
from cka_probe.extract.hooks import LayerCapture
from cka_probe.extract.models.base import Adapter


def _rows(
    adapter: Adapter, model: nn.Module, capture: LayerCapture, batch: dict, device: torch.device
) -> dict[tuple[str, str], list[np.ndarray]]:
    """Per (stream, layer), the valid rows of each utterance of ``batch``; NaN or Inf is an error."""
    lengths = adapter.forward(model, _to_device(batch, device))
    acts = {
        (stream, name): valid_rows(name, output, _stream_lengths(lengths, stream), batch["ids"])
        for stream, outputs in capture.pop().items()
        for name, output in outputs.items()
    }
    check_finite(acts, batch["ids"], "float64")
    return {
        key: np.split(flat.astype(np.float64), np.cumsum(counts)[:-1]) for key, (flat, counts) in acts.items()
    }


def check_padding(
    adapter: Adapter,
    model: nn.Module,
    rows: Sequence[dict],
    batch_size: int,
    streams: Mapping[str, Sequence[str]],
    tasks: Sequence[str],
    device: str | torch.device,
) -> None:
    """Raise :class:`CKAProbeError` if the first batch's most padded utterances differ from themselves run
    alone."""
    first = next(iter(adapter.batches(rows[:batch_size], batch_size, tasks)))
    if len(first["ids"]) < 2:
        return
    by_id = {row["id"]: row for row in rows}
    device = torch.device(device)
    with LayerCapture(model, streams, select=adapter.select) as capture, torch.inference_mode():
        batched = _rows(adapter, model, capture, first, device)
        for b in most_padded(batched):
            uid = first["ids"][b]
            alone = _rows(
                adapter, model, capture, next(iter(adapter.batches([by_id[uid]], 1, tasks))), device
            )
            for (stream, layer), pieces in alone.items():
                _compare(adapter, stream, layer, uid, batched[(stream, layer)][b], pieces[0])


def most_padded(batched: Mapping[tuple[str, str], list[np.ndarray]]) -> list[int]:
    """The batch positions with the fewest valid rows of each stream (the first such), in batch order."""
    fewest = {stream: [len(r) for r in rows] for (stream, _), rows in batched.items()}
    return sorted({counts.index(min(counts)) for counts in fewest.values()})


def _compare(
    adapter: Adapter, stream: str, layer: str, uid: str, batched: np.ndarray, alone: np.ndarray
) -> None:
    if batched.shape != alone.shape:
        raise ModelOutputError(
            f"padding changes the valid rows of layer {layer} ({stream}) for "
            f"utterance {uid!r}: {batched.shape[0]} in the batch, {alone.shape[0]} alone"
        )
    diff, scale = float(np.max(np.abs(batched - alone))), max(float(np.max(np.abs(alone))), 1e-6)
    if diff > adapter.padding_tolerance * scale:
        raise ModelOutputError(
            f"padding changes layer {layer} ({stream}) of utterance {uid!r}: "
            f"max |batched - alone| = {diff:.3g} > {adapter.padding_tolerance:g} x {scale:.3g}; "
            "this model must be batched without padding (see docs/your-own-model.md)"
        )
