"""A resumable stage runner: stages that read files and write files, each published atomically.

A stage writes into a hidden ``.<name>.partial`` path next to its output and
renames it on success, so an output that exists is complete and its stage is
skipped; an interrupted stage leaves only the partial path, which the next run
removes and starts again (``resumable`` stages keep it, e.g. a training resumes
its ``last.pt``). A partial path left beside a finished output (a kill while it
was being moved into place) is removed. Consecutive stages of one ``parallel``
group run side by side in worker processes that die with the run, the
longest expected first. Each move is a crash point (:mod:`cka_probe.faults`)
of the crash-safety tests. ``stages.csv`` in the run folder logs what each
stage did and how long it took.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.faults import crash_point


@dataclass(frozen=True)
class Stage:
    """One step: ``action(partial, **kwargs)`` writes ``output`` (a file or folder) under ``partial``.

    For a folder output, ``partial`` is the folder to fill; for a file output,
    a folder in which to write a file of the output's name (plus sidecars).
    Consecutive stages of one ``parallel`` group (e.g. "train") may run side
    by side; the next group starts when the last one's stages have all
    finished, since it reads their outputs. ``resumable`` stages keep their
    partial path after an interruption. ``cost`` orders the stages of a group,
    the longest expected first (Graham's 1969 list scheduling).
    """

    name: str
    output: Path
    action: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    parallel: str | None = None
    resumable: bool = False
    cost: Callable[[Stage], float] | None = None

    def expected_cost(self) -> float:
        """``cost(self)``, what the stage's run time grows with (0 without ``cost``): the side-by-side
        order."""
        return self.cost(self) if self.cost else 0.0

    @property
    def partial(self) -> Path:
        return self.output.with_name(f".{self.output.name}.partial")

    @property
    def is_folder(self) -> bool:
        return not self.output.suffix


def _publish(stage: Stage) -> None:
    """Move a finished stage's partial output into place (the output itself last)."""
    crash_point("stage:publish")
    if stage.is_folder:
        os.replace(stage.partial, stage.output)
        return
    main = stage.partial / stage.output.name
    if not main.exists():
        raise CKAProbeError(f"stage {stage.name}: finished without writing {stage.output.name}")
    for extra in stage.partial.iterdir():
        if extra != main:
            os.replace(extra, stage.output.parent / extra.name)
            crash_point("stage:publish")
    os.replace(main, stage.output)
    crash_point("stage:published")
    shutil.rmtree(stage.partial)


def run_stage(stage: Stage, threads: int | None = None) -> dict[str, Any]:
    """Run one stage unless its output exists; returns a row of ``stages.csv``."""
    if stage.output.exists():
        shutil.rmtree(stage.partial, ignore_errors=True)
        return {"stage": stage.name, "status": "skipped", "seconds": 0.0}
    if threads:
        import torch

        torch.set_num_threads(threads)
    if stage.partial.exists() and not stage.resumable:
        shutil.rmtree(stage.partial)
    stage.partial.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stage.action(stage.partial, **stage.kwargs)
    _publish(stage)
    return {"stage": stage.name, "status": "done", "seconds": round(time.perf_counter() - start, 1)}


def _log(run_dir: Path, row: dict[str, Any]) -> None:
    """Add ``row`` to ``stages.csv`` (the whole file rewritten atomically, so a kill never tears a line)."""
    path = run_dir / "stages.csv"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["stage", "status", "seconds"], lineterminator="\n")
    if not path.exists():
        writer.writeheader()
    writer.writerow(row)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, old + text.getvalue(), point="stages")
    print(f"[{row['status']:>7}] {row['stage']} ({row['seconds']} s)", flush=True)


def run_stages(stages: Sequence[Stage], run_dir: Path, *, jobs: int = 1) -> None:
    """Run stages in order; consecutive stages of one ``parallel`` group run ``jobs`` at a time, one thread
    each.

    The stages of a group must not depend on each other (the trainings; the
    evaluations and extractions); a group starts only when the previous one has ended.
    """
    i = 0
    while i < len(stages):
        group = [stages[i]]
        while _same_group(stages[i], stages[i + len(group) :]):
            group.append(stages[i + len(group)])
        if len(group) > 1 and jobs > 1:
            _run_side_by_side(group, run_dir, jobs)
        else:
            for stage in group:
                _log(run_dir, run_stage(stage))
        i += len(group)


def _die_with_parent(parent: int) -> None:
    """Worker initialiser: the worker is killed when the run that started it dies.

    Otherwise a killed ``reproduce`` leaves its workers training on into the
    stages' partial folders, where a rerun's workers would meet them. Linux
    only (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing is set.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the run died before the signal was set
        os._exit(1)


def _run_side_by_side(group: Sequence[Stage], run_dir: Path, jobs: int) -> None:
    """The stages of one group in ``jobs`` worker processes, the longest expected first; a worker that dies is
    a
    one-line error."""
    group = sorted(group, key=Stage.expected_cost, reverse=True)  # stable: equal costs keep the plan's order
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=get_context("spawn"), initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            for row in pool.map(run_stage, group, [1] * len(group)):
                _log(run_dir, row)
    except BrokenProcessPool:
        names = ", ".join(stage.name for stage in group)
        raise CKAProbeError(
            f"a worker process of the stages {names} died (killed, or out of memory); "
            "rerun the same command to resume"
        ) from None


def _same_group(first: Stage, rest: Sequence[Stage]) -> bool:
    """Whether the next of ``rest`` belongs to ``first``'s parallel group."""
    return bool(first.parallel and rest and rest[0].parallel == first.parallel)
