"""Model adapters: one file per family, and the extraction that every adapter shares.

:func:`extract_model` resolves MODEL (:mod:`.resolve`), selects its layers by
stream, reads the manifest fields the selected streams need, runs the padding
self-check (:mod:`.padding`) and hands the adapter's batches to the generic
:func:`cka_probe.extract.activations.extract_activations` (under ``torchrun``, one shard per rank).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.activations import ModelOutputError, extract_activations
from cka_probe.extract.distributed import rank_device, run_sharded, world
from cka_probe.extract.hooks import select_modules
from cka_probe.extract.models.base import Adapter
from cka_probe.extract.models.padding import check_padding
from cka_probe.extract.models.resolve import resolve
from cka_probe.paths import file_sha256, refuse_input_as_output

__all__ = ["Adapter", "resolve", "extract_model", "hookable_layers", "layer_streams"]

METADATA_FIELDS = ("surface", "meaning", "language", "speaker")
ROLES = ("sso", "mso", "do", "rand")
DTYPES = ("float32", "float16")


def layer_streams(
    streams_of: Callable[[str, Sequence[str]], list[str]],
    model: nn.Module,
    patterns: Sequence[str],
    tasks: Sequence[str],
    order: Sequence[str] = ("encoder",),
) -> dict[str, list[str]]:
    """Module names matching ``patterns``, grouped by ``streams_of``; streams in ``order``, then any
    others."""
    streams: dict[str, list[str]] = {stream: [] for stream in order}
    for name in select_modules(model, patterns):
        for stream in streams_of(name, tasks):
            streams.setdefault(stream, []).append(name)
    return {stream: names for stream, names in streams.items() if names}


def source(row: dict) -> str:
    """Where an utterance's audio comes from: the absolute audio path, plus ``#START-END`` for a segment."""
    start, end = row.get("start"), row.get("end")
    if start is None and end is None:
        return str(row["audio"])
    return f"{row['audio']}#{'' if start is None else start}-{'' if end is None else end}"


def _with_metadata(batches, rows: Sequence[dict]) -> Iterator[dict]:
    """Each batch plus the manifest's text fields and the ``source`` of its utterances in ``metadata``."""
    by_id = {row["id"]: row for row in rows}
    for batch in batches:
        meta = {f: [str(by_id[i].get(f) or "") for i in batch["ids"]] for f in METADATA_FIELDS}
        meta["source"] = [source(by_id[i]) for i in batch["ids"]]
        yield {**batch, "metadata": {**meta, **batch.get("metadata", {})}}


def model_files(model: str | Path) -> list[Path]:
    """The paths a MODEL argument reads: itself, and the file of a ``FILE.py:FUNCTION``."""
    spec = str(model)
    return [Path(spec), *([Path(spec.rpartition(":")[0])] if ":" in spec else [])]


def _check_arguments(
    model: str | Path, manifest: str | Path, out: str | Path, options: dict[str, object], word_spans: bool
) -> None:
    """Refuse a bad count, dtype, role or device, and an output (or its word-spans file) that is an input."""
    from cka_probe.asr.checkpoint import check_count, usable_device
    from cka_probe.extract.word_spans import sidecar_path

    check_count(options["batch_size"], "batch_size")
    check_count(options["limit"], "limit", optional=True)
    check_count(options["replicate"], "replicate", optional=True, minimum=0)
    check_count(options["random_init"], "random_init", optional=True, minimum=0)
    if options["dtype"] not in DTYPES:
        raise CKAProbeError(f"dtype must be one of {', '.join(DTYPES)}, not {options['dtype']!r}")
    if options["role"] is not None and options["role"] not in ROLES:
        raise CKAProbeError(f"--role must be one of {', '.join(ROLES)}, not {options['role']!r}")
    usable_device(options["device"])
    inputs = [manifest, *model_files(model)]
    refuse_input_as_output(out, inputs)
    if word_spans:
        refuse_input_as_output(sidecar_path(out), inputs, option="--out's word-spans file")


@contextmanager
def _naming(model: str | Path) -> Iterator[None]:
    """Errors about the model's outputs (:class:`ModelOutputError`) with ``model`` in front."""
    try:
        yield
    except ModelOutputError as err:
        raise CKAProbeError(f"{model}: {err}") from None


def _tasks(adapter: Adapter, tasks: Sequence[str] | None, model: str | Path) -> list[str]:
    """The tasks to teacher-force: ``tasks`` (all of the adapter's when None), each one the model has."""
    tasks = list(adapter.tasks if tasks is None else tasks)
    unknown = [t for t in tasks if t not in adapter.tasks]
    if unknown:
        raise CKAProbeError(
            f"{model}: the model has no {unknown[0]} decoder (tasks: {', '.join(adapter.tasks) or 'none'})"
        )
    return tasks


def _built(adapter: Adapter, model: str | Path, device: str, random_init: int | None) -> nn.Module:
    """The adapter's model with its own weights, or (``random_init`` a seed) its architecture with fresh
    weights from the adapter's ``build_random`` duty."""
    if random_init is None:
        return adapter.build(device)
    if not callable(getattr(adapter, "build_random", None)):
        raise CKAProbeError(
            f"{model}: cannot build the model with fresh weights (an adapter needs a "
            "build_random(device, seed) duty)"
        )
    return adapter.build_random(device, random_init)


def extract_model(
    model: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    layers: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    dtype: str = "float32",
    limit: int | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    padding_check: bool = True,
    role: str | None = None,
    replicate: int | None = None,
    random_init: int | None = None,
    word_spans: bool = False,
    prompts: Mapping[str, str] | None = None,
) -> Path:
    """Extract ``model``'s layers (a ``.pt``, an HF folder or ``FILE.py:FUNCTION``) over ``manifest`` into
    ``out``.

    Every utterance's ``source`` (its absolute audio path, plus ``#START-END`` for a
    segment) is stored with its metadata. Bad options, and an ``out`` that is one of
    the inputs, are refused before anything is read or written.
    ``role`` (``sso`` | ``mso`` | ``do`` | ``rand``, the random-initialisation floor) is recorded for
    ``compare --cross-task`` when the provenance cannot tell it (any model other than a bundled one), and
    ``replicate`` (K of ``reproduce --model LANG:ROLE#K=MODEL``) orders a role's seed replicates.
    ``random_init`` (a seed) extracts the model's architecture with fresh weights drawn after
    ``torch.manual_seed(random_init)`` instead of its own weights (the adapter's ``build_random``; the
    store records ``random_init_seed``).
    ``word_spans`` also writes the surface words' CTC spans to ``<out>.words.jsonl``
    (bundled checkpoints: :mod:`cka_probe.extract.word_spans`). ``prompts`` (task -> a task token or
    text) teacher-forces each task after its prompt, for a model whose one decoder selects its output by a
    prompt (an adapter with ``use_prompts``: Whisper folders). Under ``torchrun``
    each rank extracts its block of the manifest and rank 0 merges the shards
    (:mod:`cka_probe.extract.distributed`).
    """
    from cka_probe.data.manifest import read_manifest

    device = rank_device(device)
    options = {"batch_size": batch_size, "limit": limit, "dtype": dtype, "role": role, "device": device}
    options |= {"replicate": replicate, "random_init": random_init}
    _check_arguments(model, manifest, out, options, word_spans)
    adapter = resolve(model)
    if word_spans and not hasattr(adapter, "word_spans"):
        raise CKAProbeError(
            f"{model}: --word-spans needs a bundled checkpoint (its CTC head aligns the words)"
        )
    if prompts and not hasattr(adapter, "use_prompts"):
        raise CKAProbeError(f"{model}: --prompt needs a decoder that takes a task prompt (a Whisper folder)")
    net = _built(adapter, model, device, random_init)
    tasks = _tasks(adapter, tasks, model)
    streams = layer_streams(
        adapter.streams_of, net, layers or adapter.default_layers(tasks), tasks, adapter.stream_order(tasks)
    )
    tasks = [t for t in tasks if f"decoder/{t}" in streams]
    if prompts:
        adapter.use_prompts(prompts, tasks)
    rows = read_manifest(manifest, require=adapter.required_fields(tasks))[:limit]
    attrs = {
        **adapter.attrs(),
        "extracted_tasks": tasks,
        "language": str(rows[0].get("language") or ""),
        "manifest": str(Path(manifest).resolve()),
        "manifest_sha256": file_sha256(manifest),
        "limit": limit or 0,
        "batch_size": batch_size,
        **({"role": role} if role else {}),
        **({"replicate": replicate} if replicate is not None else {}),
        **({"random_init_seed": random_init} if random_init is not None else {}),
    }

    def extract_shard(start: int, stop: int, path: Path, progress: bool) -> Path:
        batches = _with_metadata(adapter.batches(rows[start:stop], batch_size, tasks), rows)
        return extract_activations(
            net,
            batches,
            layers=streams,
            out=path,
            forward=adapter.forward,
            select=adapter.select,
            attrs=attrs,
            dtype=dtype,
            compression=compression,
            device=device,
            total=stop - start,
            overwrite=overwrite,
            progress=progress,
        )

    with _naming(model):
        if padding_check:
            check_padding(adapter, net, rows, batch_size, streams, tasks, device)
        stored = run_sharded(len(rows), out, extract_shard, overwrite=overwrite)
    if word_spans and world()[0] == 0:
        adapter.word_spans(net, manifest, stored, batch_size=batch_size, limit=limit, device=device)
    return stored


def hookable_layers(model: str | Path) -> list[tuple[str, str, bool]]:
    """``(name, module class, selected by default)`` for every module of ``model``."""
    adapter = resolve(model)
    net = adapter.build("cpu")
    chosen = set(select_modules(net, adapter.default_layers(list(adapter.tasks))))
    return [(name, type(m).__name__, name in chosen) for name, m in net.named_modules() if name]
