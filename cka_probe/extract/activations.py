"""Generic extraction: any ``nn.Module``, any batches, hooked layers -> an activation store.

A batch is a mapping with ``ids`` (list of B utterance ids), whatever the
``forward`` callable needs, and optionally ``metadata`` (field -> list of B
values). ``forward(model, batch)`` runs the model and returns the valid
lengths ``(B,)`` of the hooked outputs: one tensor for every stream, a
mapping stream -> tensor, or None when every row is valid. Output rows at
``t >= length`` are padding and never reach the store. A batch may carry
``tokens`` (stream -> ``(B, U)`` input token ids of a decoder stream); their
first ``length`` ids per utterance are stored with every layer of the stream,
one id per row.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cka_probe.errors import CKAProbeError
from cka_probe.extract.hooks import LayerCapture, OutputSelector, first_tensor
from cka_probe.store import StoreWriter

Batch = Mapping[str, object]
Lengths = torch.Tensor | Mapping[str, torch.Tensor] | None


class ModelOutputError(CKAProbeError):
    """Model outputs or valid lengths that cannot be stored (``extract_model`` puts the model in front)."""


def default_forward(model: nn.Module, batch: Batch) -> Lengths:
    """``model(*batch["inputs"])`` (or ``model(batch["inputs"])``); lengths from ``batch["lengths"]``."""
    inputs = batch["inputs"]
    if isinstance(inputs, tuple):
        model(*inputs)
    else:
        model(inputs)
    return batch.get("lengths")


def valid_rows(
    name: str, output: torch.Tensor, lengths: torch.Tensor | None, ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``output[b, :lengths[b]]`` of every utterance, concatenated: ``(B, T, D) -> (sum L, D)``.

    A ``(B, D)`` output is one row per utterance. Rows stay float64 if the
    model is float64, else become float32 (the full precision the store keeps).
    """
    if output.ndim not in (2, 3) or output.shape[0] != len(ids):
        raise ModelOutputError(
            f"layer {name} output has shape {tuple(output.shape)}; expected "
            f"({len(ids)}, T, D) or ({len(ids)}, D), batch first"
        )
    if output.ndim == 2:
        rows, lengths = output, torch.ones(len(ids), dtype=torch.int64)
    else:
        steps = output.shape[1]
        lengths = (
            torch.full((len(ids),), steps) if lengths is None else lengths.to(output.device, torch.int64)
        )
        bad = torch.nonzero((lengths < 1) | (lengths > steps)).flatten()
        if len(bad):
            raise ModelOutputError(
                f"layer {name}: utterance {ids[int(bad[0])]} has valid length "
                f"{int(lengths[bad[0]])} but the output has {steps} rows"
            )
        rows = output[torch.arange(steps, device=output.device)[None, :] < lengths[:, None]]
    keep = torch.float64 if rows.dtype == torch.float64 else torch.float32
    return rows.to(keep).cpu().numpy(), lengths.cpu().numpy()


def _stream_lengths(lengths: Lengths, stream: str) -> torch.Tensor | None:
    if isinstance(lengths, Mapping):
        if stream not in lengths:
            raise ModelOutputError(
                f"forward returned valid lengths for {sorted(lengths)}, not for stream {stream}"
            )
        return lengths[stream]
    return lengths


def stream_tokens(
    tokens: Mapping[str, torch.Tensor], lengths: Lengths, ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The input token id of every stored row, per decoder stream: ``(B, U) -> (sum L,)`` int64."""
    cut = {}
    for stream, ids_in in tokens.items():
        valid = _stream_lengths(lengths, stream)
        steps = torch.arange(ids_in.shape[1], device=ids_in.device)
        keep = steps[None, :] < (ids_in.shape[1] if valid is None else valid.to(ids_in.device)[:, None])
        cut[stream] = ids_in[keep].to(torch.int64).cpu().numpy()
    return cut


def _to_device(value: object, device: torch.device) -> object:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def take(value: object, k: int) -> object:
    """The first ``k`` utterances of a batch: tensors and lists sliced, tuples and dicts recursed."""
    if isinstance(value, (torch.Tensor, list)):
        return value[:k]
    if isinstance(value, Mapping):
        return {key: take(v, k) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(take(v, k) for v in value)
    return value


def limited(batches: Iterable[Batch], limit: int | None) -> Iterator[Batch]:
    """Batches holding the first ``limit`` utterances (all when ``limit`` is None)."""
    left = limit
    for batch in batches:
        if left is not None and left <= 0:
            return
        n = len(batch["ids"])
        yield batch if left is None or n <= left else take(batch, left)
        left = None if left is None else left - n


def _storable(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per value of ``rows``, whether it is finite and, in a narrower ``dtype``, stays finite."""
    ok = np.isfinite(rows)
    if np.finfo(dtype).max < np.finfo(rows.dtype).max:
        ok &= np.abs(rows) <= np.finfo(dtype).max
    return ok


def check_finite(
    acts: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], ids: Sequence[str], dtype: str
) -> None:
    """Raise naming the layer and the utterances whose rows hold NaN, Inf or a value ``dtype`` overflows.

    ``acts[(stream, layer)] = (rows (sum L, D), lengths (B,))`` as :func:`valid_rows` returns them.
    """
    for (stream, name), (rows, lengths) in acts.items():
        bad_rows = ~_storable(rows, np.dtype(dtype)).all(axis=1)
        if bad_rows.any():
            owners = np.unique(np.repeat(np.arange(len(ids)), lengths)[bad_rows])
            named = ", ".join(ids[i] for i in owners[:3]) + (
                f" and {len(owners) - 3} more" if len(owners) > 3 else ""
            )
            raise ModelOutputError(
                f"layer {name} ({stream}): non-finite activations (NaN, Inf or beyond {dtype}) for utterance "
                f"{named}; no store was published; check the model's weights and these utterances' audio"
            )


def _check_resumed(done: list[str], seen: int, ids: list[str], out: Path) -> None:
    if done[seen : seen + len(ids)] != ids:
        raise CKAProbeError(
            f"{out}: the batches differ from the interrupted run (utterance {ids[0]} at "
            f"position {seen}); pass --overwrite to start again"
        )


def extract_activations(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]],
    out: str | Path,
    forward=default_forward,
    select: OutputSelector = first_tensor,
    allow_repeats: bool = False,
    attrs: Mapping | None = None,
    dtype: str = "float32",
    compression: str | None = None,
    device: str | torch.device | None = None,
    limit: int | None = None,
    total: int | None = None,
    overwrite: bool = False,
    commit_bytes: int | None = None,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``batches`` and store the hooked layers' valid rows in ``out``.

    ``layers``: glob patterns (all in stream ``encoder``) or a mapping stream -> patterns.
    Resumes an interrupted run of the same settings from its last commit (finished batches are
    written and committed in blocks of ``commit_bytes``; see ``StoreWriter``); returns the path
    of the complete store. A complete store of the same settings already at ``out`` is kept as
    it is (the model does not run).
    The model runs in eval mode under ``torch.inference_mode``; ``total`` sizes the progress bar, drawn
    when ``progress`` is set and stderr is a terminal.
    """
    streams = dict(layers) if isinstance(layers, Mapping) else {"encoder": list(layers)}
    device = torch.device(device) if device is not None else next(model.parameters()).device
    run_attrs = {**(attrs or {}), "layer_patterns": streams}
    was_training = model.to(device).training
    model.eval()
    try:
        with (
            StoreWriter(
                out,
                attrs=run_attrs,
                dtype=dtype,
                compression=compression,
                overwrite=overwrite,
                commit_bytes=commit_bytes,
                keep_complete=True,
            ) as writer,
            LayerCapture(model, streams, select=select, allow_repeats=allow_repeats) as capture,
            torch.inference_mode(),
            tqdm(
                total=min(filter(None, (total, limit)), default=None),
                unit="utt",
                desc=f"extract {Path(out).name}",
                disable=None if progress else True,
            ) as bar,
        ):
            if writer.done:
                print(f"{writer.path}: already complete", file=sys.stderr)
                return writer.path
            done, seen = writer.ids, 0
            for i, batch in enumerate(limited(batches, limit)):
                ids = list(batch["ids"])
                if i < writer.n_batches:
                    _check_resumed(done, seen, ids, writer.path)
                else:
                    lengths = forward(model, _to_device(batch, device))
                    acts = {
                        (stream, name): valid_rows(name, output, _stream_lengths(lengths, stream), ids)
                        for stream, outputs in capture.pop().items()
                        for name, output in outputs.items()
                    }
                    check_finite(acts, ids, dtype)
                    writer.append(
                        ids,
                        acts,
                        metadata=batch.get("metadata"),
                        tokens=stream_tokens(batch.get("tokens") or {}, lengths, ids),
                    )
                seen += len(ids)
                bar.update(len(ids))
            if seen < len(done):
                raise CKAProbeError(
                    f"{writer.path}: the batches end before the {len(done)} utterances "
                    "of the interrupted run; pass --overwrite to start again"
                )
            return writer.finish()
    finally:
        model.train(was_training)
