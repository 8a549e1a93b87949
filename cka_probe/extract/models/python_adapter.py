"""``FILE.py:FUNCTION``: an adapter written in Python for any other framework (ESPnet, WeNet, ...).

``FUNCTION()`` (no arguments) returns an object with at least the four duties
of :mod:`cka_probe.extract.models.base`: ``build(device)``,
``default_layers(tasks)``, ``batches(rows, batch_size, tasks)`` and
``forward(model, batch)``; any of ``name``, ``tasks``, ``streams_of``, ``stream_order``,
``required_fields``, ``select``, ``padding_tolerance`` and ``attrs`` it also
has replace the defaults. ``examples/wenet_style_adapter.py`` is a worked example.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter, file_sha256

SPEC = re.compile(r"(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)\Z")
DUTIES = ("build", "default_layers", "batches", "forward")
OPTIONAL = ("name", "tasks", "streams_of", "stream_order", "required_fields", "select", "padding_tolerance")


def is_python_adapter(model: str) -> bool:
    return SPEC.match(str(model)) is not None


def load_python_adapter(spec: str) -> Adapter:
    """Import ``FILE.py`` and call its ``FUNCTION`` to get the adapter."""
    match = SPEC.match(spec)
    path = Path(match["file"])
    if not path.is_file():
        raise CKAProbeError(f"{spec}: no such adapter file {path}")
    module_spec = importlib.util.spec_from_file_location(f"cka_probe_adapter_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    factory = getattr(module, match["function"], None)
    if not callable(factory):
        raise CKAProbeError(f"{spec}: {path} has no function {match['function']}")
    return PythonAdapter(factory(), spec, path)


class PythonAdapter(Adapter):
    """The user's object, with the protocol's defaults for what it leaves out."""

    def __init__(self, inner: object, spec: str, path: Path):
        missing = [duty for duty in DUTIES if not callable(getattr(inner, duty, None))]
        if missing:
            raise CKAProbeError(
                f"{spec}: the adapter lacks {', '.join(missing)} (the protocol: {', '.join(DUTIES)})"
            )
        self.inner, self.name, self.path = inner, spec, path
        for name in DUTIES + OPTIONAL:
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def attrs(self) -> dict:
        own = self.inner.attrs() if callable(getattr(self.inner, "attrs", None)) else {}
        return {
            "adapter": self.name,
            "adapter_file": str(self.path.resolve()),
            "adapter_sha256": file_sha256(self.path),
            "tasks": list(self.tasks),
            **own,
        }
