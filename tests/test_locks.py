"""The output lock: one writer per output, refusals naming the holder, no lock file left behind."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.locks import lock_file, output_lock
from cka_probe.paths import refuse_input_as_output

_FORK = multiprocessing.get_context("fork")


def _hold(path, held, release) -> None:
    with output_lock(path):
        held.set()
        release.wait(30)


def _wait_and_log(path, log, started) -> None:
    started.set()
    with output_lock(path, wait=True):
        with open(log, "a") as f:
            f.write(f"in {time.monotonic()}\n")
        time.sleep(0.2)
        with open(log, "a") as f:
            f.write(f"out {time.monotonic()}\n")


def test_second_holder_is_refused_naming_the_first_process(tmp_path):
    out = tmp_path / "acts.h5"
    held, release = _FORK.Event(), _FORK.Event()
    holder = _FORK.Process(target=_hold, args=(out, held, release))
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(CKAProbeError, match=rf"acts.h5: another cka-probe run \(pid {holder.pid} on "):
            with output_lock(out):
                pass
    finally:
        release.set()
        holder.join(30)
    with output_lock(out):  # released with the holder
        assert lock_file(out).exists()


def test_a_released_lock_leaves_no_file(tmp_path):
    out = tmp_path / "cka.csv"
    with output_lock(out) as lock:
        assert lock == tmp_path / ".cka.csv.lock"
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holder_does_not_block_the_next_run(tmp_path):
    out = tmp_path / "acts.h5"
    held, release = _FORK.Event(), _FORK.Event()
    holder = _FORK.Process(target=_hold, args=(out, held, release))
    holder.start()
    assert held.wait(30)
    holder.kill()
    holder.join(30)
    assert lock_file(out).exists()  # a kill leaves the file, not the lock
    with output_lock(out):
        pass


def test_waiting_writers_never_overlap_while_the_file_is_deleted_and_made_again(tmp_path):
    out, log = tmp_path / "run", tmp_path / "log.txt"
    started = [_FORK.Event() for _ in range(8)]
    workers = [_FORK.Process(target=_wait_and_log, args=(out, log, s)) for s in started]
    for w in workers:  # staggered: some wait on the file that the holder deletes, some arrive after
        w.start()
        time.sleep(0.07)
    for w in workers:
        w.join(60)
    kinds = log.read_text().split()[0::2]
    assert kinds == ["in", "out"] * 8  # each writer leaves before the next one enters
    assert not lock_file(out).exists()


def test_an_output_that_is_an_input_is_refused_through_any_spelling(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("{}\n")
    os.link(manifest, tmp_path / "hard.jsonl")
    for spelling in (tmp_path / ".." / tmp_path.name / "m.jsonl", tmp_path / "hard.jsonl"):
        with pytest.raises(CKAProbeError, match=r"--out .* is an input of this command"):
            refuse_input_as_output(spelling, [manifest, None])
    refuse_input_as_output(tmp_path / "other.jsonl", [manifest])


def test_a_second_training_into_one_folder_is_refused_before_it_reads_anything(tmp_path):
    from cka_probe.asr.train import train

    out = tmp_path / "sso"
    with output_lock(out):  # another run holds it (a flock conflicts between descriptors of one process too)
        with pytest.raises(CKAProbeError, match=r"sso: another cka-probe run \(pid \d+ on "):
            train(
                arch="so",
                task="surface",
                train_manifest=tmp_path / "missing-train.jsonl",
                valid_manifest=tmp_path / "missing-valid.jsonl",
                config="tiny",
                out_dir=out,
            )
