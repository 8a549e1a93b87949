"""Crash points: where a kill or a failed write is injected by the fault tests (a test hook, off by default).

Every writer of the toolkit calls :func:`crash_point` just before and after
each step that makes its output durable (a dataset write, a flush, a commit,
a rename). Normally the call does nothing. Three environment variables, read
at each call, turn it into a fault injector:

- ``CKA_PROBE_CRASH_AT=K`` (or ``PREFIX:K``) kills the process with SIGKILL at
  its K-th crash point (counting only the points whose name starts with
  ``PREFIX``), exactly as an out-of-memory kill or a pre-empted node would:
  no ``finally`` block, no flush, no atexit handler runs.
- ``CKA_PROBE_FAIL_AT=K`` (or ``PREFIX:K``) makes its K-th crash point (counted
  the same way) raise ``OSError(ENOSPC, "No space left on device")``, as a
  write on a full disk does, so that a test can check the one-line error and
  the resumable output of a write that fails at each point.
- ``CKA_PROBE_CRASH_LOG=FILE`` appends the name of every point reached to
  ``FILE``, so that a test can count the points of an uninterrupted run and
  then kill a run at each of them (``tests/crash_harness.py``).

Torn writes are simulated by the writers themselves: a point named
``...:torn`` stands after half of a dataset's rows have been written.
"""

from __future__ import annotations

import errno
import os
import signal

_counts: dict[tuple[str, str], int] = {}


def _reached(variable: str, name: str) -> bool:
    """Whether ``name`` is the K-th point that ``variable`` (``K`` or ``PREFIX:K``) asks for."""
    target = os.environ.get(variable)
    if not target:
        return False
    prefix, _, k = target.rpartition(":")
    if not name.startswith(prefix):
        return False
    key = (variable, prefix)
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key] == int(k)


def crash_point(name: str) -> None:
    """Do nothing, unless ``CKA_PROBE_CRASH_AT`` or ``CKA_PROBE_FAIL_AT`` names this point (see the module
    docstring)."""
    log = os.environ.get("CKA_PROBE_CRASH_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if _reached("CKA_PROBE_CRASH_AT", name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _reached("CKA_PROBE_FAIL_AT", name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
