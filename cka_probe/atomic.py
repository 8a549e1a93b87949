"""Atomic file output: a reader (or a rerun after a kill) sees the old file or the new one, never half of one.

Every file the toolkit writes goes through :func:`atomic_output`: the bytes go
to ``.<name>.partial`` beside the target, are flushed and ``fsync``-ed, and
the partial file is renamed over the target (``os.replace``, atomic on
POSIX). The partial name is fixed, so a write killed half-way leaves one
hidden file that the next write of the same target overwrites; a write that
fails with an exception removes it. An ``OSError`` met on the way (a full
disk, an I/O error, a folder where the file should go) becomes the one-line
:func:`cka_probe.errors.write_error` naming the target, never the hidden file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cka_probe.errors import CKAProbeError, write_error
from cka_probe.faults import crash_point


def partial_file(path: str | os.PathLike) -> Path:
    """The hidden file that stands for ``path`` while it is written: ``dir/.name.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents if missing; one line naming the path that stands in the way."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CKAProbeError(f"{folder}: is a file, not a folder; choose another output path") from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise CKAProbeError(f"{err.filename or folder}: cannot create the folder ({reason})") from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike, *, point: str = "file", size: int | None = None) -> Iterator[Path]:
    """Yield the partial path to write; on success move it over ``path``.

    ``point`` names the crash points of this write (see :mod:`cka_probe.faults`).
    Raises :class:`~cka_probe.errors.CKAProbeError` naming ``path`` when an
    ``OSError`` stops the write (with ``size``, the bytes of the output where
    known, as the space a full disk needs); the partial file is removed.
    """
    path = Path(path)
    tmp = partial_file(path)
    make_folder(path.parent)
    try:
        yield tmp
        _fsync(tmp)
        crash_point(f"{point}:written")
        os.replace(tmp, path)
        crash_point(f"{point}:replaced")
    except OSError as err:
        _remove(tmp)
        raise write_error(err, path, needed=size) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    """Remove ``path`` if it is there; a failure to remove it leaves it for the next write to overwrite."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, point: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path, point=point, size=len(data)) as tmp:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            crash_point(f"{point}:torn")
            f.write(data[half:])
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, point: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), point=point)
