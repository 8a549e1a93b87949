"""Fault injection without timing luck: kill a real command at its k-th crash point, rerun it, compare.

Every writer of cka-probe calls ``cka_probe.faults.crash_point`` before and
after each step that makes output durable. A run with
``CKA_PROBE_CRASH_LOG`` lists the points of an uninterrupted run; a run with
``CKA_PROBE_CRASH_AT=k`` is SIGKILLed at its k-th point. The harness kills a
run at the chosen points, reruns the same command (optionally killing the
rerun too, during its recovery), and hands the finished output to a
comparison with an uninterrupted run.

Each run is a child of one fork server that has imported torch and the CLI
once (``multiprocessing``'s forkserver: the server never runs a torch
operation, so forking it is safe), so a run costs a fork, not a Python
start-up. The child runs ``cka_probe.cli.main(argv)`` (or a function of the
API) exactly as the ``cka-probe`` command does, with one torch thread.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(
    [
        "torch",
        "h5py",
        "pandas",
        "cka_probe.cli",
        "cka_probe.pipeline",
        "cka_probe.extract",
        "cka_probe.asr.train",
        "cka_probe.study.report",
    ]
)
KILLED = -signal.SIGKILL
TIMEOUT_S = 300


def _child(target: Callable | Sequence[str], env: dict[str, str], log: str, cwd: str) -> None:
    """Run ``target`` (argv of the CLI, or a callable) with ``env`` set; exit with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    os.chdir(cwd)
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(1)
    if callable(target):
        target()
        code = 0
    else:
        from cka_probe.cli import main

        code = main(list(target))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Harness:
    """Runs one command (CLI argv or a picklable callable) in fork-server children, in ``workdir``."""

    def __init__(self, target: Callable | Sequence[str], workdir: Path, env: dict[str, str] | None = None):
        self.target, self.workdir = target, Path(workdir)
        # no progress bars: their multiprocessing locks are semaphores that a killed child never releases
        self.env = {
            "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1",
            "CKA_PROBE_CRASH_AT": "",
            "CKA_PROBE_CRASH_LOG": "",
            **(env or {}),
        }
        self.log = self.workdir / "harness.log"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def run(self, crash_at: str | int | None = None, crash_log: Path | None = None) -> int:
        """One run; its exit code (``KILLED`` when a crash point killed it)."""
        env = {
            **self.env,
            "CKA_PROBE_CRASH_AT": "" if crash_at is None else str(crash_at),
            "CKA_PROBE_CRASH_LOG": str(crash_log or ""),
        }
        child = _CONTEXT.Process(target=_child, args=(self.target, env, str(self.log), str(self.workdir)))
        child.start()
        child.join(TIMEOUT_S)
        if child.exitcode is None:
            child.kill()
            raise AssertionError(f"run hung for {TIMEOUT_S} s; see {self.log}")
        code = child.exitcode
        child.close()
        return code

    def points(self) -> list[str]:
        """The crash points of an uninterrupted run (which it leaves in place as the reference)."""
        listing = self.workdir / "points.txt"
        listing.unlink(missing_ok=True)
        assert self.run(crash_log=listing) == 0, self.tail()
        return listing.read_text().split() if listing.exists() else []

    def kill_and_finish(self, k: int, *, then: int | None = None) -> None:
        """Kill a run at its ``k``-th point (and the rerun at its ``then``-th), then finish it with a
        rerun."""
        assert self.run(crash_at=k) == KILLED, f"point {k} was not reached\n{self.tail()}"
        if then is not None:
            code = self.run(crash_at=then)
            assert code in (KILLED, 0), self.tail()
        assert self.run() == 0, f"the rerun after a kill at point {k} failed\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def spread(n: int, k: int) -> list[int]:
    """``k`` crash points (1-based) spread over ``n``, always including the first and the last."""
    return sorted({int(round(x)) for x in np.linspace(1, n, min(k, n))})


def reset(*paths: Path) -> None:
    """Remove outputs (files or folders) before a trial."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def hidden_leftovers(folder: Path) -> list[Path]:
    """Partial files or folders left anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.endswith(".partial") and p.name != "harness.log"]
