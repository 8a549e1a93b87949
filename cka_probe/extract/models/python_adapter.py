"""``FILE.py:FUNCTION``: an adapter written in Python for any other framework (ESPnet, WeNet, ...).

``FUNCTION()`` (no arguments) returns an object with at least the four duties
of :mod:`cka_probe.extract.models.base`: ``build(device)``,
``default_layers(tasks)``, ``batches(rows, batch_size, tasks)`` and
``forward(model, batch)``; any of ``name``, ``tasks``, ``streams_of``, ``stream_order``,
``required_fields``, ``select``, ``padding_tolerance`` and ``attrs`` it also
has replace the defaults, an optional ``transcribe(model, batch)`` (task ->
the batch's B texts) lets ``cka-probe evaluate`` score it, and an optional
``build_random(device, seed)`` (the architecture with fresh weights drawn
after ``torch.manual_seed(seed)``) gives it a random-initialisation floor.
``examples/wenet_style_adapter.py`` is a worked example.

The user's code is held to the protocol: a missing file, a syntax error, an
exception raised at import or by any duty, and a duty that returns the wrong
thing (``build`` or ``build_random`` no ``nn.Module``, ``default_layers`` no list of globs, a
batch without its ``ids``, ``forward`` no ``(B,)`` integer lengths per stream,
``transcribe`` no ``{task: B strings}``)
are one line naming ``FILE.py:FUNCTION`` (and, for an exception, the line of
the adapter file it came from), e.g.
``adapter.py:make raised KeyError in forward: 'feats' (adapter.py:41)``.
"""

from __future__ import annotations

import importlib.util
import re
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter, Batch
from cka_probe.paths import file_sha256

SPEC = re.compile(r"(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)\Z")
DUTIES = ("build", "default_layers", "batches", "forward")
OPTIONAL_METHODS = ("streams_of", "stream_order", "required_fields", "select")
OPTIONAL_VALUES = {
    "name": (str, "string"),
    "tasks": ((tuple, list), "list of task names"),
    "padding_tolerance": ((int, float), "number"),
}


def is_python_adapter(model: str) -> bool:
    return SPEC.match(str(model)) is not None


def where(err: BaseException, path: Path) -> str:
    """``FILE:LINE`` of the innermost frame of ``err`` in the adapter file (else of the innermost frame)."""
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
    frame = (own or frames or [None])[-1]
    return f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""


def raised(spec: str, path: Path, err: Exception, during: str) -> CKAProbeError:
    """The one line for an exception of the user's code: ``SPEC raised TYPE DURING: message (FILE:LINE)``."""
    message = " ".join(str(err).split())
    return CKAProbeError(f"{spec} raised {type(err).__name__} {during}: {message}{where(err, path)}")


def load_python_adapter(spec: str) -> Adapter:
    """Import ``FILE.py`` and call its ``FUNCTION`` to get the adapter."""
    match = SPEC.match(spec)
    path = Path(match["file"])
    if not path.is_file():
        raise CKAProbeError(f"{spec}: no such adapter file {path}")
    module_spec = importlib.util.spec_from_file_location(f"cka_probe_adapter_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        raise CKAProbeError(f"{spec}: syntax error at {path.name}:{err.lineno}: {err.msg}") from err
    except CKAProbeError:
        raise
    except Exception as err:
        raise raised(spec, path, err, f"while importing {path.name}") from err
    factory = getattr(module, match["function"], None)
    if not callable(factory):
        raise CKAProbeError(f"{spec}: {path} has no function {match['function']}")
    return PythonAdapter(guarded(spec, path, factory, f"in {match['function']}()")(), spec, path)


def guarded(spec: str, path: Path, fn: Callable, during: str) -> Callable:
    """``fn``, with any exception but a :class:`CKAProbeError` turned into the one line of :func:`raised`."""

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CKAProbeError:
            raise
        except Exception as err:
            raise raised(spec, path, err, during) from err

    return call


def guarded_iter(spec: str, path: Path, items: object, during: str) -> Iterator:
    """The items of the user's iterable, with its exceptions turned into the one line of :func:`raised`."""
    try:
        iterator = iter(items)
    except TypeError as err:
        raise raised(spec, path, err, during) from err
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except CKAProbeError:
            raise
        except Exception as err:
            raise raised(spec, path, err, during) from err


class PythonAdapter(Adapter):
    """The user's object, with the protocol's defaults for what it leaves out and its results checked."""

    def __init__(self, inner: object, spec: str, path: Path):
        missing = [duty for duty in DUTIES if not callable(getattr(inner, duty, None))]
        if missing:
            raise CKAProbeError(
                f"{spec}: the adapter {type(inner).__name__} lacks {', '.join(missing)} "
                f"(the protocol: {', '.join(DUTIES)})"
            )
        self.inner, self.name, self.spec, self.path = inner, spec, spec, path
        for name in OPTIONAL_VALUES:
            if hasattr(inner, name):
                setattr(self, name, self.value(name))
        for name in OPTIONAL_METHODS:
            if callable(getattr(inner, name, None)):
                setattr(self, name, self.duty(name))
        if callable(getattr(inner, "transcribe", None)):
            self.transcribe = self.checked_transcribe
        if callable(getattr(inner, "build_random", None)):
            self.build_random = self.checked_build_random

    def value(self, name: str) -> object:
        """The adapter's ``name`` attribute, refused unless it has the type :data:`OPTIONAL_VALUES` names."""
        found = getattr(self.inner, name)
        kind, what = OPTIONAL_VALUES[name]
        strings = name != "tasks" or all(isinstance(t, str) for t in found or ())
        if not isinstance(found, kind) or isinstance(found, bool) or not strings:
            raise CKAProbeError(f"{self.spec}: the adapter's {name} is {found!r}, not a {what}")
        return tuple(found) if name == "tasks" else found

    def duty(self, name: str) -> Callable:
        """The adapter's method ``name``, its exceptions turned into one line naming the adapter."""
        return guarded(self.spec, self.path, getattr(self.inner, name), f"in {name}")

    def build(self, device: str) -> nn.Module:
        return self.module("build", device)

    def checked_build_random(self, device: str, seed: int) -> nn.Module:
        return self.module("build_random", device, seed)

    def module(self, duty: str, *args: object) -> nn.Module:
        """What the adapter's ``duty`` (``build`` or ``build_random``) returns, checked to be a module."""
        model = self.duty(duty)(*args)
        if not isinstance(model, nn.Module):
            raise CKAProbeError(f"{self.spec}: {duty} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        layers = self.duty("default_layers")(tasks)
        if isinstance(layers, str) or not all(isinstance(g, str) for g in layers or [None]):
            raise CKAProbeError(
                f"{self.spec}: default_layers returned {layers!r}, not a list of layer-name globs"
            )
        return list(layers)

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        """The adapter's batches, each checked to be a dict with a non-empty list of ``ids``."""
        made = self.duty("batches")(rows, batch_size, tasks)
        for k, batch in enumerate(guarded_iter(self.spec, self.path, made, "in batches")):
            ids = batch.get("ids") if isinstance(batch, Mapping) else None
            if not isinstance(ids, (list, tuple)) or not ids:
                raise CKAProbeError(
                    f"{self.spec}: batch {k} of batches is {type(batch).__name__} without a list of ids; "
                    "each batch is a dict with ids and the model's inputs"
                )
            yield batch

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """The adapter's valid lengths, checked to be ``{stream: (B,) integers >= 0}``."""
        lengths = self.duty("forward")(model, batch)
        if not isinstance(lengths, Mapping):
            raise CKAProbeError(
                f"{self.spec}: forward returned {type(lengths).__name__}, not {{stream: (B,) valid lengths}}"
            )
        return {
            stream: self.checked_lengths(stream, value, len(batch["ids"]))
            for stream, value in lengths.items()
        }

    def checked_transcribe(self, model: nn.Module, batch: Batch) -> dict[str, list[str]]:
        """The adapter's transcripts, checked to be ``{task: B strings}`` for the batch's B utterances."""
        texts = self.duty("transcribe")(model, batch)
        size = len(batch["ids"])
        fits = isinstance(texts, Mapping) and all(
            isinstance(t, str)
            and isinstance(v, (list, tuple))
            and len(v) == size
            and all(isinstance(x, str) for x in v)
            for t, v in texts.items()
        )
        if not fits:
            raise CKAProbeError(
                f"{self.spec}: transcribe returned {type(texts).__name__}, not {{task: {size} strings}} "
                f"for a batch of {size} utterances"
            )
        return {task: list(v) for task, v in texts.items()}

    def checked_lengths(self, stream: str, value: object, size: int) -> torch.Tensor:
        """``value`` as a ``(size,)`` int64 tensor, refused unless it holds ``size`` integers >= 0."""
        try:
            lengths = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            lengths = None
        integers = lengths is not None and not (
            lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool
        )
        if not integers or lengths.shape != (size,) or bool((lengths < 0).any()):
            shown = tuple(lengths.shape) if lengths is not None else type(value).__name__
            raise CKAProbeError(
                f"{self.spec}: forward returned lengths {shown} for stream {stream!r} in a batch of {size} "
                f"utterances; it must return ({size},) integer valid lengths per stream"
            )
        return lengths.to(torch.int64)

    def attrs(self) -> dict:
        own = self.duty("attrs")() if callable(getattr(self.inner, "attrs", None)) else {}
        if not isinstance(own, Mapping):
            raise CKAProbeError(f"{self.spec}: attrs returned {type(own).__name__}, not a dict")
        return {
            "adapter": self.name,
            "adapter_file": str(self.path.resolve()),
            "adapter_sha256": file_sha256(self.path),
            "tasks": list(self.tasks),
            **own,
        }
