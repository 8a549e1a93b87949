"""One writer per output: an advisory lock (``fcntl.flock``) held for the whole run that writes it.

A run that writes ``OUT`` (a store, a table, a run folder) first takes
:func:`output_lock` on ``OUT``: an exclusive ``flock`` on the hidden file
``.OUT.lock`` beside it, which records the holder's process id and host. A
second run on the same output is refused at once with one line naming the
other process (or, with ``wait=True``, waits for it). The lock is released
when the run ends, however it ends (the kernel drops it with the process, a
SIGKILL included), so a stale lock file never blocks anyone. A run that ends
normally deletes the lock file while it still holds it; a process that took
the lock on a file that was deleted meanwhile finds that the path no longer
names its file and takes the lock again on the new one, so deleting never
lets two writers in.

``flock`` locks are advisory and local: they hold between processes of one
machine and, on most network file systems, not between machines.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cka_probe.errors import CKAProbeError


def lock_file(path: str | os.PathLike) -> Path:
    """The lock file that stands for ``path``: ``dir/.name.lock``."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _holder(lock: Path) -> str:
    """What the lock file says of its holder, e.g. ``"pid 1234 on host-a"``."""
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"


def _take(lock: Path, path: Path, wait: bool) -> int:
    """A descriptor of ``lock`` holding its flock, the file still at ``lock`` (retried if it was deleted)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise CKAProbeError(
                f"{path}: another cka-probe run ({_holder(lock)}) is writing it; "
                "wait for it to finish or stop it, then run again"
            ) from None
        if _names(lock, fd):
            return fd
        os.close(fd)  # the holder deleted it as we waited: lock the file now at that path


def _names(lock: Path, fd: int) -> bool:
    """Whether the path ``lock`` still names the open file ``fd``."""
    try:
        return os.stat(lock).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def output_lock(path: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of ``path`` for the ``with`` block; refuse (or ``wait``) if it is held.

    Yields the lock file. Raises :class:`CKAProbeError` naming ``path`` and the
    holder when another process writes it and ``wait`` is false.
    """
    path = Path(path)
    lock = lock_file(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _take(lock, path, wait)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # still held: a waiter that took the old file retries
        os.close(fd)  # closing the descriptor releases the flock
