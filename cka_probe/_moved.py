"""Old import paths (``cka_probe.cka.*``, ``cka_probe.analyze.*``, ...) of modules that have moved.

For one release, ``import cka_probe.cka.stats`` and ``from cka_probe.cka import
linear_cka`` keep working: a finder on ``sys.meta_path`` answers an old name
with a module whose attributes are looked up in the module(s) at the new path
(two where one module was split), and warns with a ``DeprecationWarning``
naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

MOVED: dict[str, tuple[str, ...]] = {
    "cka_probe.cka": ("cka_probe.measures", "cka_probe.inference"),
    "cka_probe.cka.resample": ("cka_probe.measures.gram_resample", "cka_probe.inference.intervals"),
    "cka_probe.cka.stats": ("cka_probe.inference.bootstrap",),
    "cka_probe.cka.hierarchical": ("cka_probe.inference.seeds", "cka_probe.inference.baselines"),
    "cka_probe.cka.adjust": ("cka_probe.inference.adjust",),
    "cka_probe.cka.simulate": ("cka_probe.inference.simulate",),
    "cka_probe.cka.resample_measure": (
        "cka_probe.inference.resample_measures",
        "cka_probe.measures.registry",
    ),
    **{
        f"cka_probe.cka.{name}": (f"cka_probe.measures.{name}",)
        for name in (
            "cca",
            "gram",
            "grouped",
            "hsic",
            "kernels",
            "matrix",
            "minibatch",
            "moments",
            "nystrom",
            "pair",
            "procrustes",
            "rsa",
            "similarity",
            "streaming",
            "weighted",
        )
    },
    "cka_probe.cka.similarity": ("cka_probe.measures.similarity", "cka_probe.measures"),
    "cka_probe.cka.weighted": ("cka_probe.measures.weighted", "cka_probe.inference.baselines"),
    "cka_probe.analyze": ("cka_probe.study", "cka_probe.compare"),
    "cka_probe.analyze.compare_npz": ("cka_probe.compare.npz",),
    "cka_probe.analyze.compare_stores": ("cka_probe.compare.stores",),
    "cka_probe.analyze.compare_words": ("cka_probe.compare.words",),
    "cka_probe.analyze.word_pooling": ("cka_probe.compare.word_pooling",),
    "cka_probe.analyze.word_alignment": ("cka_probe.text.word_alignment",),
    "cka_probe.analyze.effects": ("cka_probe.inference.effects",),
    "cka_probe.analyze.cer_regime": ("cka_probe.inference.cer_regime",),
    **{
        f"cka_probe.analyze.{name}": (f"cka_probe.study.{name}",)
        for name in (
            "cer",
            "cross_lang",
            "cross_task",
            "load",
            "mitigation",
            "roles",
            "summary",
            "tables",
            "word_cer",
            "word_cross_task",
        )
    },
    "cka_probe.report": ("cka_probe.study.report",),
    "cka_probe.asr.cer": ("cka_probe.text.cer",),
    "cka_probe.asr.word_spans": ("cka_probe.extract.word_spans",),
}
"""Old module name -> the module(s) that now hold its names."""


class MovedModule(types.ModuleType):
    """An old module name whose attributes are found in the module(s) now holding them."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package, so that old submodule paths resolve too
        self._targets = targets

    def __getattr__(self, attr: str) -> object:
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(
            f"module {self.__name__!r} (moved to {', '.join(self._targets)}) has no {attr!r}"
        )


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of :data:`MOVED` and loads each as a :class:`MovedModule`, with a warning."""

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} has moved to {' and '.join(targets)}; the old path will be removed in the next "
            "release",
            DeprecationWarning,
            stacklevel=2,
        )
        return MovedModule(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the new module is already executed."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the standard finders, which no longer find these)."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
