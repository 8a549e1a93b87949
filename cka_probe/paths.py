"""Guards on the paths a command is given: an output never replaces one of its inputs.

:func:`refuse_input_as_output` is called by every command before it writes
anything, with every file it reads (models, manifests, stores, tables): an
``--out`` that resolves to one of them (through ``..``, symbolic links or a
hard link) is a one-line error, so a slip of the shell never destroys an input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cka_probe.errors import CKAProbeError


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (same resolved path, or same inode where both exist)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input_as_output(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *, option: str = "--out"
) -> None:
    """Raise :class:`CKAProbeError` if ``out`` is (or, for a folder output, contains) one of ``inputs``."""
    out = Path(out)
    for given in inputs:
        if given is None:
            continue
        source = Path(given)
        if _same_file(out, source):
            raise CKAProbeError(f"{option} {out} is an input of this command ({source}); choose another path")
