"""Guards on the paths a command is given: an output never replaces one of its inputs.

:func:`refuse_input_as_output` is called by every command before it writes
anything, with every file it reads (models, manifests, stores, tables): an
``--out`` that resolves to one of them (through ``..``, symbolic links or a
hard link) is a one-line error, so a slip of the shell never destroys an input.
:func:`file_sha256` is the content digest provenance records for each input file.
"""

from __future__ import annotations

import hashlib
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


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
