"""Run a case's command in a fork-server child and judge it against the README's promise.

A case passes when either

- it exits 0 and its output is what the mutation allows: the clean run's output (``SAME``, or ``BAD``
  when the command never read the damage), the clean CKA within 1e-6 (``SCALED``), or finite numbers in
  an output the next command accepts (``CHANGED``); or
- it exits 2 with exactly one non-empty stderr line, no traceback, naming the culprit (the mutated file,
  its folder, or the option), and leaves no output that a later command accepts (``SAME`` inputs must
  not be refused).

Anything else is a violation: another exit status or a signal, a hang, a changed input file. Children
come from a fork server that has imported torch and cka_probe once, and run one torch thread.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import sys
import traceback
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fuzz.cases import Format, OptionCase, formats, option_cases
from fuzz.mutate import CHANGED, SAME, SCALED

_CONTEXT = multiprocessing.get_context("forkserver")
_HF = [
    "whisper.modeling_whisper",
    "whisper.tokenization_whisper",
    "whisper.tokenization_whisper_fast",
    "whisper.feature_extraction_whisper",
    "wav2vec2.modeling_wav2vec2",
    "wav2vec2.feature_extraction_wav2vec2",
]
PRELOAD = [
    "torch",
    "h5py",
    "pandas",
    "soundfile",
    "cka_probe.cli",
    "cka_probe.extract",
    "cka_probe.compare",
    "cka_probe.asr.evaluate",
    "cka_probe.asr.train",
    "cka_probe.study",
    "transformers",
    "safetensors.torch",
    "fuzz.oracle",
    *(f"transformers.models.{m}" for m in _HF),
]
ENV = {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TIMEOUT_S = 120
MEMORY_LIMIT = 6 << 30  # address space of a child: a runaway case must not starve the machine
SCALED_TOLERANCE = 1e-6


def _child(argv: Sequence[str], cwd: str, out: str, err: str) -> None:
    """Run ``cka-probe argv`` in ``cwd`` with stdout and stderr to files and at most ``MEMORY_LIMIT`` of
    address space; exit with its status."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    for fd, name in ((1, out), (2, err)):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.environ.update(ENV)
    os.environ.pop("CKA_PROBE_DEBUG", None)
    os.chdir(cwd)
    import torch

    torch.set_num_threads(1)
    from cka_probe.cli import main

    try:
        code = main(list(argv))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(bool(done.code))
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass(frozen=True)
class Run:
    """A finished child: its exit status (None when it hung, negative for a signal) and its output."""

    rc: int | None
    stdout: str
    stderr: str


def run_cli(argv: Sequence[str], cwd: Path) -> Run:
    """``cka-probe argv`` in a fork-server child in ``cwd``."""
    if not multiprocessing.parent_process():
        _CONTEXT.set_forkserver_preload(PRELOAD)  # before the server starts; a no-op afterwards
    out, err = cwd / ".stdout", cwd / ".stderr"
    child = _CONTEXT.Process(target=_child, args=(list(argv), str(cwd), str(out), str(err)))
    child.start()
    child.join(TIMEOUT_S)
    hung = child.exitcode is None
    if hung:
        child.kill()
        child.join()
    rc = None if hung else child.exitcode
    child.close()
    texts = [p.read_text(errors="replace") if p.exists() else "" for p in (out, err)]
    for p in (out, err):
        p.unlink(missing_ok=True)
    return Run(rc, *texts)


# -- what a command writes, read as named arrays and strings


def _out_paths(argv: Sequence[str]) -> list[str]:
    """The outputs of a command line (relative paths)."""
    flags = {"--out": [], "--tables": []}
    for i, word in enumerate(argv):
        for flag in flags:
            if word == flag:
                flags[flag].append(argv[i + 1])
            elif word.startswith(flag + "="):
                flags[flag].append(word.split("=", 1)[1])
    if argv[0] == "compare" and "--cross-task" in argv:
        return flags["--tables"][-1:] or ["tables"]
    if argv[0] == "compare":
        return flags["--out"][-1:] or ["cka.csv"]
    if argv[0] == "evaluate":
        return [flags["--out"][-1], flags["--out"][-1] + ".summary.json"]
    return flags["--out"][-1:]


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _read_store(path: Path) -> dict[str, object]:
    found = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = list(obj.asstr()[()]) if obj.dtype.kind == "O" else obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _read_csv(path: Path) -> dict[str, object]:
    frame = pd.read_csv(path, keep_default_na=False)
    numeric = lambda c: frame[c].dtype.kind in "iuf"  # noqa: E731
    return {
        f"{path.name}:{c}": frame[c].to_numpy(float) if numeric(c) else list(frame[c].astype(str))
        for c in frame.columns
    }


def _read_file(path: Path) -> dict[str, object]:
    """A CSV's columns, a JSON file's numbers, a store's datasets (other files: nothing)."""
    if path.suffix == ".csv":
        return _read_csv(path)
    if path.suffix == ".json":
        return {f"{path.name}:numbers": np.array(_numbers(json.loads(path.read_text())))}
    return _read_store(path) if path.suffix == ".h5" else {}


def _relative(value: object, cwd: Path) -> object:
    """``value`` with the case folder's absolute path, in any string of it, written as ``.``."""
    if isinstance(value, str):
        return value.replace(str(cwd), ".")
    return [_relative(v, cwd) for v in value] if isinstance(value, list) else value


def read_output(cwd: Path, argv: Sequence[str], run: Run) -> dict[str, object]:
    """Everything a finished command produced: ``info``'s stdout, or its output files' contents, with
    the case folder's path written as ``.``."""
    if argv[0] == "info":
        return {"stdout": _relative(run.stdout, cwd)}
    found = {}
    for name in _out_paths(argv):
        path = cwd / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            found |= {f"{file.relative_to(cwd)}|{k}": _relative(v, cwd) for k, v in _read_file(file).items()}
    return found


def _is_number_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "iuf"


def differences(got: dict[str, object], want: dict[str, object], tolerance: float = 0.0) -> list[str]:
    """The names whose values differ (numbers beyond ``tolerance``), plus missing and extra names."""
    names = sorted(set(got) ^ set(want))
    for name in sorted(set(got) & set(want)):
        a, b = got[name], want[name]
        if _is_number_array(a) and _is_number_array(b):
            same = a.shape == b.shape and np.allclose(a, b, rtol=0, atol=tolerance, equal_nan=False)
        else:
            same = a.__class__ is b.__class__ and np.array_equal(np.asarray(a, object), np.asarray(b, object))
        names += [] if same else [name]
    return names


def non_finite(got: dict[str, object]) -> list[str]:
    """The names of number arrays holding NaN or infinity."""
    return [k for k, v in got.items() if _is_number_array(v) and not np.isfinite(v.astype(float)).all()]


# -- the verdict


@dataclass(frozen=True)
class Outcome:
    """One judged case."""

    format: str
    mutator: str
    seed: int
    argv: tuple[str, ...]
    rc: int | None
    verdict: str  # "exit 0 ok", "exit 2 one-line", "violation", "harness error"
    reason: str
    stderr: str

    def line(self) -> str:
        """A one-line repro of the case."""
        tail = " | ".join(self.stderr.strip().splitlines()[-2:])[-300:]
        cmd = "cka-probe " + " ".join(self.argv)
        case = f"{self.format} / {self.mutator} / seed {self.seed}"
        return f"{case}: {self.reason} (rc {self.rc}) [{cmd}] {tail}"


def _next_command(argv: Sequence[str], name: str) -> list[str] | None:
    """The command that reads output ``name`` next: ``info`` for a store, ``layers`` for a trained model."""
    if name.endswith(".h5"):
        return ["info", name]
    return ["layers", f"{name}/best.pt"] if argv[0] == "train" else None


def _accepted(cwd: Path, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(outputs that exist and a later command accepts, outputs a next command refuses)."""
    accepted, refused = [], []
    for name in _out_paths(argv):
        path, after = cwd / name, _next_command(argv, name)
        if after is not None:
            ok = path.exists() and run_cli(after, cwd).rc == 0
            (accepted if ok else refused).append(name)
        elif path.is_dir():
            accepted += [str(p.relative_to(cwd)) for p in path.rglob("*.csv")]
        elif path.exists():
            accepted.append(name)
    return accepted, refused


def _refusal(run: Run, culprits: Sequence[str], left: list[str], expect: str) -> str:
    """Why an exit 2 breaks the promise ('' when it keeps it)."""
    lines = run.stderr.strip("\n").split("\n")
    if "Traceback" in run.stderr:
        return "exit 2 with a traceback"
    if len(lines) != 1 or not lines[0].strip():
        bar = any("%|" in line or "\r" in line for line in lines[:-1])
        return f"exit 2 with {len(lines)} stderr lines" + (" (progress bar lines first)" if bar else "")
    if not any(c in lines[0] for c in culprits):
        return f"exit 2 without naming {' or '.join(culprits)}"
    if left:
        return f"exit 2 but left an accepted output: {', '.join(left)}"
    return "a valid input refused" if expect == SAME else ""


def _success(got: dict[str, object], clean: dict[str, object] | None, expect: str, accepted: bool) -> str:
    """Why an exit 0 breaks the promise ('' when it keeps it)."""
    if not accepted:
        return "exit 0 over an output the next command refuses"
    if expect == CHANGED:
        bad = non_finite(got)
        return f"exit 0 with non-finite numbers in {bad[0]}" if bad else ""
    if clean is None:
        return "exit 0 but the clean run failed"
    tolerance = SCALED_TOLERANCE if expect == SCALED else 0.0
    off = differences(got, clean, tolerance)
    if not off:
        return ""
    what = {SAME: "a no-op changed the output", SCALED: "CKA of scaled input off by more than 1e-6"}
    return f"{what.get(expect, 'exit 0 on damaged input with another output')}: {off[0]}"


def judge(
    run: Run,
    cwd: Path,
    argv: Sequence[str],
    expect: str,
    culprits: Sequence[str],
    clean: dict[str, object] | None,
    changed_inputs: list[str],
) -> tuple[str, str]:
    """(verdict, reason) of one finished run."""
    if changed_inputs:
        return "violation", f"input changed: {changed_inputs[0]}"
    if run.rc is None:
        return "violation", f"hung for {TIMEOUT_S} s"
    if run.rc == 2:
        reason = _refusal(run, culprits, _accepted(cwd, argv)[0], expect)
        return ("violation", reason) if reason else ("exit 2 one-line", "")
    if run.rc != 0:
        return "violation", f"exit {run.rc}" + (" (signal)" if run.rc < 0 else "")
    try:
        got = read_output(cwd, argv, run)
    except Exception as err:  # an output that cannot even be read is refused by any next command
        return "violation", f"exit 0 over an unreadable output: {type(err).__name__}: {err}"[:300]
    reason = _success(got, clean, expect, not _accepted(cwd, argv)[1])
    return ("violation", reason) if reason else ("exit 0 ok", "")


# -- cases


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _changed(folder: Path, before: dict[str, str]) -> list[str]:
    after = _digests(folder)
    return [name for name, digest in before.items() if after.get(name) != digest]


def _copy(seeds: Path, names: Sequence[str], cwd: Path) -> None:
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir(parents=True)
    for name in names:
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (seeds / name).is_dir() else shutil.copy2
        copy(seeds / name, cwd / name)


def case_rng(fmt: str, mutator: str, seed: int) -> np.random.Generator:
    """The generator of case ``(fmt, mutator, seed)``."""
    return np.random.default_rng([seed, zlib.crc32(fmt.encode()), zlib.crc32(mutator.encode())])


class Fuzzer:
    """Builds, runs and judges cases over the seed inputs in ``seeds``, in folders under ``work``."""

    def __init__(self, seeds: Path, work: Path):
        self.seeds, self.work = Path(seeds), Path(work)
        self.formats = formats()
        self._clean: dict[tuple[str, ...], dict[str, object] | None] = {}
        self._seen: set[tuple[str, tuple, int]] = set()
        self.clean_failures: list[Outcome] = []

    def clean(self, fmt: str, copies: Sequence[str], argv: Sequence[str]) -> dict[str, object] | None:
        """The clean run's output of ``argv`` (None, recorded as a violation, when it does not exit 0)."""
        key = tuple(argv)
        if key not in self._clean:
            cwd = self.work / "clean" / hashlib.sha1(" ".join(key).encode()).hexdigest()[:12]
            _copy(self.seeds, copies, cwd)
            run = run_cli(argv, cwd)
            self._clean[key] = read_output(cwd, argv, run) if run.rc == 0 else None
            if run.rc != 0:
                self.clean_failures.append(
                    Outcome(fmt, "clean", 0, key, run.rc, "violation", "the clean run failed", run.stderr)
                )
        return self._clean[key]

    def case(self, fmt: str, mutator: str, seed: int) -> Outcome | None:
        """Run and judge ``(fmt, mutator, seed)``; None when an earlier case already ran the same bytes."""
        spec: Format = self.formats[fmt]
        mutation = spec.mutators[mutator]
        argv = spec.consumers[seed % len(spec.consumers)]
        cwd = self.work / fmt / f"{mutator.replace(':', '-')}-{seed}"
        _copy(self.seeds, spec.copies, cwd)
        try:
            mutation.fn(cwd / spec.target, case_rng(fmt, mutator, seed))
        except Exception as err:
            reason = f"mutator failed: {err!r}"[:200]
            return Outcome(fmt, mutator, seed, argv, None, "harness error", reason, "")
        key = (fmt, tuple(_digests(cwd).items()), seed % len(spec.consumers))
        if key in self._seen:
            shutil.rmtree(cwd)
            return None
        self._seen.add(key)
        return self._judged(
            fmt,
            mutator,
            seed,
            argv,
            cwd,
            mutation.expect,
            spec.culprits + mutation.culprits,
            self.clean(fmt, spec.copies, argv),
        )

    def option(self, case: OptionCase) -> Outcome:
        """Run and judge one option case."""
        cwd = self.work / "options" / hashlib.sha1(case.name.encode()).hexdigest()[:12]
        _copy(self.seeds, case.copies, cwd)
        culprits = (case.option, case.option.lstrip("-"), case.option.lstrip("-").replace("-", "_"))
        return self._judged("options", case.name, 0, case.argv, cwd, CHANGED, culprits, None)

    def _judged(
        self,
        fmt: str,
        mutator: str,
        seed: int,
        argv: Sequence[str],
        cwd: Path,
        expect: str,
        culprits: Sequence[str],
        clean: dict[str, object] | None,
    ) -> Outcome:
        before = _digests(cwd)
        run = run_cli(argv, cwd)
        verdict, reason = judge(run, cwd, argv, expect, culprits, clean, _changed(cwd, before))
        if verdict != "violation":
            shutil.rmtree(cwd, ignore_errors=True)
        return Outcome(fmt, mutator, seed, tuple(argv), run.rc, verdict, reason, run.stderr)

    def sweep(self, fmt: str, seeds: Sequence[int], mutators: Sequence[str] | None = None) -> list[Outcome]:
        """Every mutator (or ``mutators``) of ``fmt`` at every seed; the clean runs' failures first."""
        names = mutators or sorted(self.formats[fmt].mutators)
        found = [self.case(fmt, name, seed) for name in names for seed in seeds]
        return [o for o in found if o is not None]

    def options(self, names: Sequence[str] | None = None) -> list[Outcome]:
        """Every option case (or those named)."""
        return [self.option(c) for c in option_cases() if names is None or c.name in names]
