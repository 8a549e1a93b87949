"""A full disk while writing a store: one line naming the file, the committed part kept, a rerun finishes it.

``CKA_PROBE_FAIL_AT=store:K`` makes the K-th store crash point raise ENOSPC
(:mod:`cka_probe.faults`), so the failure is tried at every write, flush,
commit and rename of a run; one test fills a real 3 MiB tmpfs instead.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from cka_probe import faults
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore, StoreWriter, partial_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import assert_same_store, contents, random_batches  # noqa: E402

ATTRS = {"arch": "do", "tasks": ["surface", "meaning"]}


def write_resuming(out: Path, batches) -> Path:
    """Write ``batches`` to ``out`` a commit per batch, skipping those an interrupted run committed (as
    ``extract`` does)."""
    with StoreWriter(out, attrs=ATTRS, commit_bytes=0, keep_complete=True) as writer:
        if writer.done:
            return writer.path
        for ids, acts, meta in batches[writer.n_batches :]:
            writer.append(ids, acts, metadata=meta)
        return writer.finish()


def store_points(out: Path, batches, monkeypatch) -> list[str]:
    """The store crash points of an uninterrupted run (which leaves ``out`` in place)."""
    log = out.with_name("points.txt")
    monkeypatch.setenv("CKA_PROBE_CRASH_LOG", str(log))
    write_resuming(out, batches)
    monkeypatch.delenv("CKA_PROBE_CRASH_LOG")
    return [name for name in log.read_text().split() if name.startswith("store:")]


@pytest.mark.filterwarnings("error::UserWarning")  # no rerun finds an unreadable partial to discard
def test_a_write_failing_at_every_store_point_is_one_line_and_the_rerun_finishes_equal(tmp_path, monkeypatch):
    batches = random_batches(4)
    reference_path = tmp_path / "reference.h5"
    points = store_points(reference_path, batches, monkeypatch)
    reference = contents(reference_path)
    assert {"store:write:torn", "store:flush", "store:commit", "store:complete", "store:rename"} <= set(
        points
    )
    out = tmp_path / "acts.h5"
    for k, name in enumerate(points, start=1):
        out.unlink(missing_ok=True)
        partial_path(out).unlink(missing_ok=True)
        monkeypatch.setattr(faults, "_counts", {})
        monkeypatch.setenv("CKA_PROBE_FAIL_AT", f"store:{k}")
        with pytest.raises(CKAProbeError) as failed:
            write_resuming(out, batches)
        assert "No space left on device while writing" in str(failed.value), (k, name)
        named = out if name.startswith("store:rename") else partial_path(out)  # a rename names its target
        assert str(failed.value).startswith(f"{named}: "), (k, name)
        assert out.exists() == (name == "store:renamed"), (k, name)  # never a complete-looking output
        monkeypatch.delenv("CKA_PROBE_FAIL_AT")
        write_resuming(out, batches)
        assert_same_store(out, reference)


def test_a_failed_commit_keeps_the_committed_batches(tmp_path, monkeypatch):
    batches = random_batches(4)
    out = tmp_path / "acts.h5"
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("CKA_PROBE_FAIL_AT", "store:commit:3")
    with pytest.raises(CKAProbeError, match=r"about .* more is needed"):
        write_resuming(out, batches)
    monkeypatch.delenv("CKA_PROBE_FAIL_AT")
    with ActivationStore(out, allow_incomplete=True) as partial:
        assert partial.ids == batches[0][0] + batches[1][0]
    with StoreWriter(out, attrs=ATTRS) as writer:
        assert writer.n_batches == 2


def test_extract_failing_on_a_full_disk_exits_2_with_one_line(
    noise_checkpoint, tmp_path, monkeypatch, capsys
):
    ckpt, manifest, _ = noise_checkpoint
    out = tmp_path / "acts.h5"
    argv = ["extract", str(ckpt), "--data", str(manifest), "--out", str(out), "--batch-size", "2"]
    monkeypatch.setenv("CKA_PROBE_COMMIT_BYTES", "1")
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("CKA_PROBE_FAIL_AT", "store:commit:2")
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith("extract ")]
    assert len(err) == 1, err  # the progress bar aside
    assert err[0].startswith(
        f"cka-probe extract: error: {partial_path(out)}: No space left on device while writing"
    )
    assert not out.exists()
    monkeypatch.delenv("CKA_PROBE_FAIL_AT")
    assert main(["info", str(out)]) == 0
    assert "INCOMPLETE (1 batches written), 2 utterances" in capsys.readouterr().out
    assert main(argv) == 0
    with ActivationStore(out) as store:
        assert len(store.ids) == 8


# -- a real full disk


@pytest.fixture
def small_disk():
    """A 3 MiB tmpfs (root only); yields its folder and a function that resizes it."""
    folder = Path("/tmp") / f"cka-probe-full-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)

    try:
        yield folder, resize
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()


def big_batches(n: int = 24) -> list:
    """Batches of 4 utterances x 1000 rows x 16 dims (250 KiB each), seeded."""
    rng = np.random.default_rng(0)
    return [
        (
            [f"u{b}-{i}" for i in range(4)],
            {("encoder", "l0"): (rng.normal(size=(4000, 16)).astype(np.float32), np.full(4, 1000))},
            {"speaker": ["s"] * 4},
        )
        for b in range(n)
    ]


def test_a_store_filling_a_real_disk_is_one_line_and_resumes_equal(small_disk, tmp_path, capsys):
    folder, resize = small_disk
    batches = big_batches()
    reference = contents(write_resuming(tmp_path / "reference.h5", batches))
    out = folder / "acts.h5"
    with pytest.raises(CKAProbeError, match=rf"^{partial_path(out)}: No space left on device while writing"):
        write_resuming(out, batches)
    assert not out.exists()
    assert main(["info", str(out)]) == 0  # the committed part is a readable, resumable partial
    assert "INCOMPLETE" in capsys.readouterr().out
    with ActivationStore(out, allow_incomplete=True) as partial:
        committed = len(partial.ids)
    assert committed > 0
    with pytest.raises(
        CKAProbeError, match=r"No space left on device while writing \(about .* more is needed\)"
    ):
        write_resuming(out, batches)  # a rerun on the still full disk: one line, the committed part kept
    with ActivationStore(out, allow_incomplete=True) as partial:
        assert len(partial.ids) == committed
    resize("40m")
    write_resuming(out, batches)
    assert_same_store(out, reference)
