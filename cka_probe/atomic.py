"""Atomic file output: a reader (or a rerun after a kill) sees the old file or the new one, never half of one.

Every file the toolkit writes goes through :func:`atomic_output`: the bytes go
to ``.<name>.partial`` beside the target, are flushed and ``fsync``-ed, and
the partial file is renamed over the target (``os.replace``, atomic on
POSIX). The partial name is fixed, so a write killed half-way leaves one
hidden file that the next write of the same target overwrites; a write that
fails with an exception removes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cka_probe.faults import crash_point


def partial_file(path: str | os.PathLike) -> Path:
    """The hidden file that stands for ``path`` while it is written: ``dir/.name.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike, *, point: str = "file") -> Iterator[Path]:
    """Yield the partial path to write; on success move it over ``path``.

    ``point`` names the crash points of this write (see :mod:`cka_probe.faults`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_file(path)
    try:
        yield tmp
        _fsync(tmp)
        crash_point(f"{point}:written")
        os.replace(tmp, path)
        crash_point(f"{point}:replaced")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, point: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path, point=point) as tmp:
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
