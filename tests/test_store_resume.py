"""A run killed with SIGKILL resumes from the last committed batch and ends bitwise identical.

Run as a script, this file is the extraction that kills itself:
``python test_store_resume.py OUT forward K C`` dies in the model's forward of
batch K; ``python test_store_resume.py OUT write J C`` dies at the J-th dataset
write, in the middle of a commit. ``C`` is the writer's ``commit_bytes``
(0: every batch is committed on its own; the default holds all of these
small batches until the end).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import pytest
import torch

from cka_probe.store import partial_path
from cka_probe.store.writer import COMMIT_BYTES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from helpers import (  # noqa: E402
    TOY_LAYERS,
    ToyEncoderDecoders,
    assert_same_store,
    contents,
    teacher_forced,
    toy_asr_batches,
)

N_BATCHES = 6
CHILD_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])),
}


class CountingModel(ToyEncoderDecoders):
    """The toy model; counts its forward passes and can kill its own process at pass ``kill_at``."""

    def __init__(self, kill_at: int | None = None):
        super().__init__()
        self.calls, self.kill_at = 0, kill_at

    def encode(self, x: torch.Tensor, lengths: torch.Tensor):
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.calls += 1
        return super().encode(x, lengths)


def extract_toy(out: Path, model: CountingModel, **kwargs) -> Path:
    """The toy model's store of ``N_BATCHES`` batches at ``out``; ``kwargs`` go to :func:`extract`."""
    from cka_probe.extract import extract

    return extract(
        model,
        toy_asr_batches(N_BATCHES),
        layers=TOY_LAYERS,
        out=out,
        forward=teacher_forced,
        attrs={"arch": "do"},
        progress=False,
        **kwargs,
    )


def kill_at_write(j: int) -> None:
    """Make the store writer's ``j``-th dataset write kill the process."""
    from cka_probe.store import writer

    grow, count = writer._grow, [0]

    def dying_grow(ds, at, values):
        count[0] += 1
        if count[0] == j:
            ds.resize(at + len(values), axis=0)
            ds[at : at + len(values) // 2 + 1] = values[: len(values) // 2 + 1]
            os.kill(os.getpid(), signal.SIGKILL)
        grow(ds, at, values)

    writer._grow = dying_grow


def committed_batches(partial: Path) -> int:
    """``n_batches`` of a killed run's file; 0 when it died before its first flush (an unreadable file)."""
    try:
        f = h5py.File(partial, "r")
    except OSError:
        return 0
    with f:
        assert not f.attrs["complete"]
        return int(f.attrs["n_batches"])


# 19 dataset writes per commit of one batch: the ids, then offsets, data and mean of 6 layers.
@pytest.mark.parametrize(
    "where, at, commit_bytes, done",
    [
        ("forward", 2, 0, 2),  # killed between batches
        ("write", 3 * 19 + 10, 0, 3),  # killed in the middle of the 4th batch's writes
        ("forward", 4, COMMIT_BYTES, 0),  # killed before the first block was committed
    ],
)
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, where, at, commit_bytes, done):
    torch.set_num_threads(1)
    reference = extract_toy(tmp_path / "reference.h5", CountingModel())
    out = tmp_path / "acts.h5"
    child = subprocess.run(
        [sys.executable, __file__, str(out), where, str(at), str(commit_bytes)],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert partial_path(out).exists() and not out.exists()
    assert committed_batches(partial_path(out)) == done

    model = CountingModel()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unreadable.*starting the extraction again")
        extract_toy(out, model)
    assert model.calls == N_BATCHES - done
    assert_same_store(out, contents(reference))


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "acts.h5"
    child = subprocess.run(
        [sys.executable, __file__, str(out), "forward", "1", "0"],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    from cka_probe.errors import CKAProbeError

    with pytest.raises(
        CKAProbeError,
        match="acts.h5.partial: an interrupted extraction with other settings "
        r"\(dtype: 'float32' there, 'float16' now\)",
    ):
        extract_toy(out, CountingModel(), dtype="float16")
    model = CountingModel()
    extract_toy(out, model, dtype="float16", overwrite=True)
    assert model.calls == N_BATCHES


if __name__ == "__main__":
    torch.set_num_threads(1)
    target, mode, when, commit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "write":
        kill_at_write(when)
    extract_toy(target, CountingModel(kill_at=when if mode == "forward" else None), commit_bytes=commit)
