"""A resumable stage runner: stages that read files and write files, each published atomically.

A stage writes into a hidden ``.<name>.partial`` path next to its output and
renames it on success. ``stages.json`` in the run folder records, for each
output, what it was made from (its recipe: the stage's options and the
fingerprints of its inputs) and the sidecar files published beside it. An
output whose recorded recipe is the plan's is skipped; one made from another
recipe, or of which there is no record, is redone: it is moved aside and
deleted first, a one-line note says why, and since a stage's fingerprint
includes those of the stages whose outputs it reads, everything downstream is
redone with it. The recipe is recorded before the stage runs (so that a kept
partial path is known to be of this recipe) and before the output is
published, so a kill at any point leaves a state the next run mends: an
interrupted stage leaves only its partial path, which the next run removes and
starts again (``resumable`` stages keep it, e.g. a training resumes its
``last.pt``); a partial path left beside a finished output (a kill while it
was being moved into place) is removed. Consecutive stages of one ``parallel``
group run side by side in worker processes that die with the run, the longest
expected first; the run itself (the only writer of ``stages.json``) records
and publishes. Each move is a crash point (:mod:`cka_probe.faults`) of the
crash-safety tests. ``stages.csv`` in the run folder logs what each stage did,
how long it took and its recipe's fingerprint. One run at a time writes a run
folder (:func:`cka_probe.locks.output_lock`).

A stage's fingerprint is the SHA-256 of its name, its options (its keyword
arguments as JSON: paths relative to the run folder where they lie inside it,
dataclasses as dicts) and the fingerprints of its inputs: for an input inside
another stage's output, that stage's fingerprint; for one that no stage makes
(a model or a data folder the user brings), a cheap content fingerprint,
:func:`content_fingerprint`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.faults import crash_point
from cka_probe.locks import output_lock

RECORDS = "stages.json"
RECORDS_FORMAT = "cka-probe stage records"
MIB = 1 << 20
LOG_FIELDS = ["stage", "status", "seconds", "fingerprint"]


@dataclass(frozen=True)
class Stage:
    """One step: ``action(partial, **kwargs)`` writes ``output`` (a file or folder) under ``partial``.

    For a folder output, ``partial`` is the folder to fill; for a file output,
    a folder in which to write a file of the output's name (plus sidecars).
    ``inputs`` are the files and folders it reads: other stages' outputs (or
    paths inside them) and anything no stage makes; with ``kwargs`` they are
    its recipe. Consecutive stages of one ``parallel`` group (e.g. "train")
    may run side by side; the next group starts when the last one's stages
    have all finished, since it reads their outputs. ``resumable`` stages keep
    their partial path after an interruption. ``cost`` orders the stages of a
    group, the longest expected first (Graham's 1969 list scheduling).
    """

    name: str
    output: Path
    action: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    parallel: str | None = None
    resumable: bool = False
    cost: Callable[[Stage], float] | None = None
    inputs: tuple[Path, ...] = ()

    def expected_cost(self) -> float:
        """``cost(self)``, what the stage's run time grows with (0 without ``cost``): the side-by-side
        order."""
        return self.cost(self) if self.cost else 0.0

    @property
    def partial(self) -> Path:
        return self.output.with_name(f".{self.output.name}.partial")

    @property
    def aside(self) -> Path:
        """Where an output made from another recipe is moved before it is deleted."""
        return self.output.with_name(f".{self.output.name}.old")

    @property
    def is_folder(self) -> bool:
        return not self.output.suffix


# -- recipes and fingerprints
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """What a stage's output is made from: its options and, by path, its inputs' fingerprints."""

    stage: str
    options: dict[str, Any]
    inputs: dict[str, str]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the stage's name, options and inputs' fingerprints."""
        return _digest([self.stage, self.options, self.inputs])


def _digest(value: Any) -> str:
    """SHA-256 (hex) of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _relative(path: Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when it lies inside it, else as given."""
    return path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else str(path)


def _stable(value: Any, run_dir: Path) -> Any:
    """``value`` as plain JSON: paths relative to ``run_dir`` where inside it, dataclasses as dicts."""
    if isinstance(value, Path):
        return _relative(value, run_dir)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _stable(dataclasses.asdict(value), run_dir)
    if isinstance(value, dict):
        return {str(key): _stable(item, run_dir) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_stable(item, run_dir) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a stage option of type {type(value).__name__} has no stable form: {value!r}")


def _file_facts(path: Path) -> list[Any]:
    """Size, mtime (ns) and SHA-256 of a file: of all of it up to 2 MiB, of its first and last MiB beyond."""
    info = path.stat()
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        sha.update(f.read(2 * MIB if info.st_size <= 2 * MIB else MIB))
        if info.st_size > 2 * MIB:
            f.seek(-MIB, os.SEEK_END)
            sha.update(f.read())
    return [info.st_size, info.st_mtime_ns, sha.hexdigest()]


def _folder_facts(folder: Path) -> list[Any]:
    """(relative path, size, mtime in ns) of each file under ``folder``, sorted: a stat per file, no reads."""
    facts = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            info = (Path(root) / name).stat()
            facts.append([(Path(root) / name).relative_to(folder).as_posix(), info.st_size, info.st_mtime_ns])
    return facts


def content_fingerprint(path: Path) -> str:
    """A cheap fingerprint of a file or folder that no stage makes (a model or data the user brings).

    A file: its size, mtime and SHA-256 (of its first and last MiB when it is
    over 2 MiB, so that a many-GB checkpoint is not read whole). A folder: the
    sorted relative path, size and mtime of each of its files, without reading
    them (a corpus of thousands of recordings costs a stat each). So a file or
    folder rewritten, or copied without keeping its times, counts as changed;
    a missing path has a fingerprint of its own.
    """
    if path.is_file():
        return _digest(["file", _file_facts(path)])
    if path.is_dir():
        return _digest(["folder", _folder_facts(path)])
    return _digest(["missing"])


def recipes(stages: Sequence[Stage], run_dir: Path) -> dict[Path, Recipe]:
    """Each stage's recipe by output; an input inside an earlier stage's output takes that stage's
    fingerprint."""
    made: dict[Path, Recipe] = {}
    outside: dict[Path, str] = {}
    for stage in stages:
        inputs = {}
        for path in map(Path, stage.inputs):
            maker = next((made[p] for p in (path, *path.parents) if p in made), None)
            if maker is None and path not in outside:
                outside[path] = content_fingerprint(path)
            inputs[_relative(path, run_dir)] = maker.fingerprint if maker else outside[path]
        made[stage.output] = Recipe(stage.name, _stable(stage.kwargs, run_dir), inputs)
    return made


# -- the record of what each output was made from
# -------------------------------------------------------------------
class Records:
    """``stages.json``: for each output (by path relative to the run folder), its stage, fingerprint, recipe
    and the sidecar files published beside it (``extras``); rewritten atomically at each change."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / RECORDS
        self.outputs: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != RECORDS_FORMAT:
                raise ValueError(f"its format is not {RECORDS_FORMAT!r}")
            return data["outputs"]
        except (ValueError, KeyError, AttributeError) as err:
            raise CKAProbeError(
                f"{self.path}: not a record of this run's stages ({err}); delete it to redo every stage"
            ) from None

    def key(self, stage: Stage) -> str:
        return _relative(stage.output, self.run_dir)

    def get(self, stage: Stage) -> dict[str, Any]:
        """The record of ``stage``'s output (empty when there is none)."""
        return self.outputs.get(self.key(stage), {})

    def record(self, stage: Stage, recipe: Recipe, extras: Sequence[str] = ()) -> None:
        """Record that ``stage``'s output is (being) made from ``recipe``, with ``extras`` beside it."""
        self.outputs[self.key(stage)] = {
            "stage": recipe.stage,
            "fingerprint": recipe.fingerprint,
            "options": recipe.options,
            "inputs": recipe.inputs,
            "extras": sorted(extras),
        }
        text = json.dumps({"format": RECORDS_FORMAT, "outputs": self.outputs}, indent=1, sort_keys=True)
        atomic_write_text(self.path, text + "\n", point="records")


def why_redone(old: dict[str, Any], new: Recipe) -> str:
    """Why an output recorded as ``old`` is redone for ``new``, in a few words."""
    if not old:
        return "no record of what it was made from (made before stages.json was kept)"
    reasons = [
        f"its {what} changed ({changes})"
        for what, changes in (
            ("options", _option_changes(old.get("options", {}), new.options)),
            ("inputs", _input_changes(old.get("inputs", {}), new.inputs)),
        )
        if changes
    ]
    return "; ".join(reasons) or "its recipe changed"


def _flat(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested options as ``{"scale.epochs": 3, ...}``."""
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _option_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"word_level: unset -> true, seed: 0 -> 1"``; a list shows the items it gained and lost."""
    old, new = _flat(old), _flat(new)
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after and (key in old) == (key in new):
            continue
        if isinstance(before, list) and isinstance(after, list):
            gained = [f"+{item}" for item in after if item not in before]
            lost = [f"-{item}" for item in before if item not in after]
            changes.append(f"{key}: {' '.join(gained + lost)}")
        else:
            changes.append(f"{key}: {_shown(old, key)} -> {_shown(new, key)}")
    return _few(changes)


def _shown(options: dict[str, Any], key: str) -> str:
    return json.dumps(options[key]) if key in options else "unset"


def _input_changes(old: dict[str, str], new: dict[str, str]) -> str:
    """``"new: a, b; changed: c; gone: d"``."""
    parts = {
        "new": [path for path in new if path not in old],
        "changed": [path for path in new if path in old and old[path] != new[path]],
        "gone": [path for path in old if path not in new],
    }
    return "; ".join(f"{what}: {_few(paths)}" for what, paths in parts.items() if paths)


def _few(items: Sequence[str], most: int = 3) -> str:
    """The first ``most`` items, and how many more."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


# -- running stages
# -------------------------------------------------------------------------------------------------
def _remove(path: Path) -> None:
    """Delete a file or folder (nothing if absent)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _discard(stage: Stage, extras: Sequence[str]) -> None:
    """Delete an output made from another recipe and its ``extras``: moved aside first, so a kill never
    leaves half of it where the output belongs."""
    _remove(stage.aside)
    for name in extras:
        (stage.output.parent / name).unlink(missing_ok=True)
    if stage.output.exists():
        os.replace(stage.output, stage.aside)
        crash_point("stage:discard")
        _remove(stage.aside)


def _extras(stage: Stage) -> list[str]:
    """The sidecar files a finished file stage wrote beside its output; an error if it wrote no output."""
    if stage.is_folder:
        return []
    if not (stage.partial / stage.output.name).exists():
        raise CKAProbeError(f"stage {stage.name}: finished without writing {stage.output.name}")
    return sorted(p.name for p in stage.partial.iterdir() if p.name != stage.output.name)


def _publish(stage: Stage) -> None:
    """Move a finished stage's partial output into place (the output itself last)."""
    crash_point("stage:publish")
    if stage.is_folder:
        os.replace(stage.partial, stage.output)
        return
    for name in _extras(stage):
        os.replace(stage.partial / name, stage.output.parent / name)
        crash_point("stage:publish")
    os.replace(stage.partial / stage.output.name, stage.output)
    crash_point("stage:published")
    shutil.rmtree(stage.partial)


def _act(stage: Stage, threads: int | None = None) -> float:
    """Run the stage's action into its partial path (a ``resumable`` one's kept partial path is resumed);
    returns the seconds it took. What a worker process runs."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    if stage.partial.exists() and not stage.resumable:
        shutil.rmtree(stage.partial)
    stage.partial.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stage.action(stage.partial, **stage.kwargs)
    return round(time.perf_counter() - start, 1)


def run_stage(stage: Stage, threads: int | None = None) -> dict[str, Any]:
    """Run one stage unless its output exists, keeping no record (:func:`run_stages` keeps them); returns a
    row of ``stages.csv``."""
    if stage.output.exists():
        shutil.rmtree(stage.partial, ignore_errors=True)
        return {"stage": stage.name, "status": "skipped", "seconds": 0.0}
    seconds = _act(stage, threads)
    _publish(stage)
    return {"stage": stage.name, "status": "done", "seconds": seconds}


def _log(run_dir: Path, row: dict[str, Any]) -> None:
    """Add ``row`` to ``stages.csv`` (the whole file rewritten atomically, so a kill never tears a line)."""
    path = run_dir / "stages.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))) if path.exists() else []
    text = io.StringIO()
    writer = csv.DictWriter(text, LOG_FIELDS, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([*rows, row])
    atomic_write_text(path, text.getvalue(), point="stages")
    print(f"[{row['status']:>7}] {row['stage']} ({row['seconds']} s)", flush=True)


class _Run:
    """One run of a plan in ``run_dir``: its recipes, the records, and what each stage does."""

    def __init__(self, stages: Sequence[Stage], run_dir: Path):
        self.run_dir = run_dir
        self.recipes = recipes(stages, run_dir)
        self.records = Records(run_dir)

    def row(self, stage: Stage, status: str, seconds: float) -> dict[str, Any]:
        """A row of ``stages.csv``, with the recipe's short fingerprint."""
        fingerprint = self.recipes[stage.output].fingerprint[:12]
        return {"stage": stage.name, "status": status, "seconds": seconds, "fingerprint": fingerprint}

    def is_current(self, stage: Stage) -> bool:
        """Whether ``stage``'s output exists and was made from the plan's recipe."""
        fingerprint = self.recipes[stage.output].fingerprint
        return stage.output.exists() and self.records.get(stage).get("fingerprint") == fingerprint

    def skip(self, stage: Stage) -> None:
        shutil.rmtree(stage.partial, ignore_errors=True)
        _remove(stage.aside)
        _log(self.run_dir, self.row(stage, "skipped", 0.0))

    def prepare(self, stage: Stage) -> None:
        """Clear what another recipe made (with a note why), then record the plan's recipe."""
        recipe, old = self.recipes[stage.output], self.records.get(stage)
        if old.get("fingerprint") != recipe.fingerprint:
            if stage.output.exists() or (stage.resumable and stage.partial.exists()):
                print(f"[{'redo':>7}] {stage.name}: {why_redone(old, recipe)}", flush=True)
            _remove(stage.partial)
        _discard(stage, old.get("extras", []))
        self.records.record(stage, recipe)

    def finish(self, stage: Stage, seconds: float) -> None:
        """Record the sidecars of a finished stage, publish it and log it."""
        extras = _extras(stage)
        if extras:
            self.records.record(stage, self.recipes[stage.output], extras)
        _publish(stage)
        _log(self.run_dir, self.row(stage, "done", seconds))

    def group(self, group: Sequence[Stage], jobs: int) -> None:
        """Skip the current stages of ``group`` and run the others, ``jobs`` at a time."""
        todo = []
        for stage in group:
            if self.is_current(stage):
                self.skip(stage)
            else:
                self.prepare(stage)
                todo.append(stage)
        if len(todo) > 1 and jobs > 1:
            self.side_by_side(todo, jobs)
        else:
            for stage in todo:
                self.finish(stage, _act(stage))

    def side_by_side(self, group: Sequence[Stage], jobs: int) -> None:
        """The stages of one group in ``jobs`` worker processes, the longest expected first; a worker that
        dies is a one-line error."""
        group = sorted(group, key=Stage.expected_cost, reverse=True)  # stable: equal costs keep plan order
        try:
            with ProcessPoolExecutor(
                jobs, mp_context=get_context("spawn"), initializer=_die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                for stage, seconds in zip(group, pool.map(_act, group, [1] * len(group)), strict=True):
                    self.finish(stage, seconds)
        except BrokenProcessPool:
            names = ", ".join(stage.name for stage in group)
            raise CKAProbeError(
                f"a worker process of the stages {names} died (killed, or out of memory); "
                "rerun the same command to resume"
            ) from None


def run_stages(stages: Sequence[Stage], run_dir: Path, *, jobs: int = 1) -> None:
    """Run stages in order, skipping those whose output was made from the plan's recipe and redoing the
    others; consecutive stages of one ``parallel`` group run ``jobs`` at a time, one thread each.

    The stages of a group must not depend on each other (the trainings; the
    evaluations and extractions); a group starts only when the previous one
    has ended. A stage reads only outputs of stages before it. The run holds
    the lock of ``run_dir`` (:func:`cka_probe.locks.output_lock`): a second run
    on it is refused in one line.
    """
    run_dir = Path(run_dir)
    with output_lock(run_dir.resolve()):
        run = _Run(stages, run_dir)
        for group in _groups(stages):
            run.group(group, jobs)


def _groups(stages: Sequence[Stage]) -> Iterator[list[Stage]]:
    """Consecutive stages of one ``parallel`` group together; any other stage alone."""
    group: list[Stage] = []
    for stage in stages:
        if group and not (stage.parallel and stage.parallel == group[0].parallel):
            yield group
            group = []
        group.append(stage)
    if group:
        yield group


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
