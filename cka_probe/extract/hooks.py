"""Capture the outputs of selected modules with plain forward hooks.

Layers are chosen by glob patterns over ``model.named_modules()`` names, where
``*`` matches within one dotted component and ``**`` across components:
``encoder.layers.*`` selects ``encoder.layers.0``, ``encoder.layers.1``, ...
but not their submodules. A module that returns a tuple is reduced to one
tensor by an output selector (default: the first tensor). A module called
more than once in one forward is an error unless ``allow_repeats`` is set;
then each call is named ``name@k`` (k = 0, 1, ...). A module selected for
several streams (one decoder teacher-forced once per task) is hooked once and
must be called once per stream; its k-th call belongs to the k-th of those
streams, in stream order (the order the forward runs them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from cka_probe.errors import CKAProbeError

OutputSelector = Callable[[str, object], torch.Tensor]


def glob_regex(pattern: str) -> re.Pattern:
    """``*`` = one dotted component (or part of one), ``**`` = any number, ``?`` = one character."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": r".*", "*": r"[^.]*", "?": r"[^.]"}
    return re.compile("".join(wild.get(p, re.escape(p)) for p in parts) + r"\Z")


def select_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the modules matching any pattern, in ``named_modules()`` (model) order."""
    names = [name for name, _ in model.named_modules() if name]
    regexes = [glob_regex(p) for p in patterns]
    for pattern, regex in zip(patterns, regexes):
        if not any(regex.match(name) for name in names):
            raise CKAProbeError(
                f"layer pattern {pattern!r} matches no module "
                "(list the names with `cka-probe layers` or model.named_modules())"
            )
    return [name for name in names if any(r.match(name) for r in regexes)]


def first_tensor(name: str, output: object) -> torch.Tensor:
    """Default output selector: the output itself, or the first tensor of a tuple/list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise CKAProbeError(
        f"layer {name} returns {type(output).__name__}, not a tensor; pass an output selector"
    )


class LayerCapture:
    """Forward hooks on the modules of each stream; a context manager.

    ``layers`` maps a stream name to glob patterns. After a forward pass,
    :meth:`pop` returns ``{stream: {layer: output (B, T, D) or (B, D)}}`` and clears.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str, Sequence[str]],
        *,
        select: OutputSelector = first_tensor,
        allow_repeats: bool = False,
    ):
        self.model, self.select, self.allow_repeats = model, select, allow_repeats
        self.streams = {stream: select_modules(model, patterns) for stream, patterns in layers.items()}
        self._owners: dict[str, list[str]] = defaultdict(list)  # module -> its streams, in order
        for stream, names in self.streams.items():
            for name in names:
                self._owners[name].append(stream)
        if allow_repeats and any(len(owners) > 1 for owners in self._owners.values()):
            raise CKAProbeError("a module selected for several streams cannot also allow repeated calls")
        self._calls: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._handles: list = []

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            self._calls[name].append(self.select(name, output))

        return hook

    def __enter__(self) -> LayerCapture:
        modules = dict(self.model.named_modules())
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self._owners]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._calls.clear()

    def pop(self) -> dict[str, dict[str, torch.Tensor]]:
        """Outputs captured since the last call, by stream and layer (``name@k`` for repeats)."""
        captured: dict[str, dict[str, torch.Tensor]] = {stream: {} for stream in self.streams}
        for name, owners in self._owners.items():
            calls = self._calls.pop(name, [])
            if len(owners) == 1:
                captured[owners[0]].update(self._named_calls(name, calls))
            elif len(calls) != len(owners):
                raise CKAProbeError(
                    f"layer {name} is selected for streams {', '.join(owners)} but was called "
                    f"{len(calls)} times in the forward pass, not once per stream"
                )
            else:
                for stream, output in zip(owners, calls):
                    captured[stream][name] = output
        self._calls.clear()
        return {
            stream: {n: captured[stream][n] for n in self._stream_names(stream, captured[stream])}
            for stream in self.streams
        }

    def _stream_names(self, stream: str, outputs: Mapping[str, torch.Tensor]) -> list[str]:
        """The captured names of ``stream`` in model order (``name@k`` after its name)."""
        order = {name: i for i, name in enumerate(self.streams[stream])}
        return sorted(outputs, key=lambda n: order[n.split("@")[0]])

    def _named_calls(self, name: str, calls: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if not calls:
            raise CKAProbeError(f"layer {name} was not called in the forward pass")
        if len(calls) == 1:
            return {name: calls[0]}
        if not self.allow_repeats:
            raise CKAProbeError(
                f"layer {name} was called {len(calls)} times in one forward pass; "
                f"allow repeats to store each call as {name}@k"
            )
        return {f"{name}@{k}": out for k, out in enumerate(calls)}
