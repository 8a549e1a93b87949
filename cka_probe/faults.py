"""Crash points: where a kill is injected by the crash-safety tests (a test hook, off by default).

Every writer of the toolkit calls :func:`crash_point` just before and after
each step that makes its output durable (a dataset write, a flush, a commit,
a rename). Normally the call does nothing. Two environment variables, read
at each call, turn it into a fault injector:

- ``CKA_PROBE_CRASH_AT=K`` (or ``PREFIX:K``) kills the process with SIGKILL at
  its K-th crash point (counting only the points whose name starts with
  ``PREFIX``), exactly as an out-of-memory kill or a pre-empted node would:
  no ``finally`` block, no flush, no atexit handler runs.
- ``CKA_PROBE_CRASH_LOG=FILE`` appends the name of every point reached to
  ``FILE``, so that a test can count the points of an uninterrupted run and
  then kill a run at each of them (``tests/crash_harness.py``).

Torn writes are simulated by the writers themselves: a point named
``...:torn`` stands after half of a dataset's rows have been written.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Do nothing, unless ``CKA_PROBE_CRASH_AT`` names this point (see the module docstring)."""
    log = os.environ.get("CKA_PROBE_CRASH_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    target = os.environ.get("CKA_PROBE_CRASH_AT")
    if not target:
        return
    prefix, _, k = target.rpartition(":")
    if not name.startswith(prefix):
        return
    _counts[prefix] = _counts.get(prefix, 0) + 1
    if _counts[prefix] == int(k):
        os.kill(os.getpid(), signal.SIGKILL)
