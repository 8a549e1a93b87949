"""Crash safety by fault injection: each writer, killed at its crash points, finishes bitwise on a rerun.

Every test kills a real ``cka-probe`` command (or, for the report and the
stage runner, the API function that the pipeline calls) at chosen crash
points (``tests/crash_harness.py``), reruns the same command, and compares
the finished output with an uninterrupted run: stores dataset by dataset,
checkpoints tensor by tensor, text files byte by byte (the per-epoch wall
time of ``log.csv`` aside). The default run kills each writer at a spread of
its points and at the first point of each kind; ``-m slow`` kills it at every
point (the counts are in docs/performance.md, "Crash safety").
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from crash_harness import Harness, hidden_leftovers, reset, spread  # noqa: E402
from helpers import (  # noqa: E402
    NOISE_TEXTS,
    assert_same_store,
    contents,
    random_batches,
    small_config,
    write_batches,
    write_cer,
    write_store,
)

from cka_probe.store import partial_path  # noqa: E402

SWEEPS = ["fast", pytest.param("full", marks=pytest.mark.slow)]


def chosen(points: list[str], sweep: str, k: int = 4) -> list[int]:
    """Crash points to kill at: every one (full, counted on stderr), or a spread plus the first of each
    kind."""
    if sweep == "full":
        print(
            f"\n{sys._getframe(1).f_code.co_name}: killing at each of {len(points)} crash points",
            file=sys.stderr,
        )
        return list(range(1, len(points) + 1))
    firsts = {name: i + 1 for i, name in reversed(list(enumerate(points)))}
    return sorted(set(spread(len(points), k)) | set(firsts.values()))


def files(folder: Path, pattern: str = "*") -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (the harness's own files aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob(pattern))
        if p.is_file() and p.name not in ("harness.log", "points.txt")
    }


# -- the activation store
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def extraction(noise_checkpoint, tmp_path_factory):
    """``cka-probe extract`` of 8 utterances in batches of 2, each batch its own commit."""
    ckpt, manifest, _ = noise_checkpoint
    root = tmp_path_factory.mktemp("crash-extract")
    out = root / "acts.h5"
    harness = Harness(
        ["extract", str(ckpt), "--data", str(manifest), "--out", str(out), "--batch-size", "2"],
        root,
        env={"CKA_PROBE_COMMIT_BYTES": "1"},
    )
    points = harness.points()
    return harness, out, points, contents(out)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_extraction_killed_at_any_crash_point_finishes_bitwise(extraction, sweep):
    harness, out, points, reference = extraction
    assert {"store:write:torn", "store:flush", "store:commit", "store:complete", "store:rename"} <= set(
        points
    )
    for k in chosen(points, sweep):
        reset(out, partial_path(out))
        harness.kill_and_finish(k)
        assert_same_store(out, reference)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_extraction_killed_again_while_recovering_finishes_bitwise(extraction, sweep):
    harness, out, points, reference = extraction
    commits = [i + 1 for i, name in enumerate(points) if name == "store:commit"]
    firsts = [commits[1] + 3, commits[-1] - 2] if sweep == "fast" else commits[1:]
    for k in firsts:
        # the rerun's first points are its recovery: truncating to the last commit, then its flush
        for then in [1, 3, 5] if sweep == "fast" else range(1, 12):
            reset(out, partial_path(out))
            harness.kill_and_finish(k, then=then)
            assert_same_store(out, reference)


def test_a_truncated_partial_store_is_recovered_or_restarted(extraction):
    harness, out, points, reference = extraction
    reset(out, partial_path(out))
    third_commit = [i + 1 for i, name in enumerate(points) if name == "store:commit"][2]
    assert harness.run(crash_at=third_commit + 1) == -9
    torn = partial_path(out).read_bytes()
    rng = np.random.default_rng(0)
    for size in sorted({0, 1, 512, 2048, len(torn) - 1, *rng.integers(1, len(torn), 8).tolist()}):
        reset(out)
        partial_path(out).write_bytes(torn[:size])
        assert harness.run() == 0, harness.tail()
        assert_same_store(out, reference)
    assert "starting the extraction again" in harness.tail()


def test_a_store_killed_while_finishing_stays_complete(extraction):
    harness, out, points, reference = extraction
    for name in ("store:rename", "store:renamed"):
        reset(out, partial_path(out))
        assert harness.run(crash_at=points.index(name) + 1) == -9
        assert out.exists() != partial_path(out).exists()  # one of the two, never both
        assert harness.run() == 0
        assert_same_store(out, reference)
    assert "acts.h5: already complete" in harness.tail()


def merge_small_shards(shards: list[str], out: str) -> None:
    """The merge of ``torchrun`` rank shards, two utterances a block (a harness target)."""
    from cka_probe.store import merge_stores

    merge_stores(shards, out, block=2)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_a_merge_of_rank_shards_killed_at_any_crash_point_finishes_bitwise(tmp_path, sweep):
    from functools import partial

    batches = random_batches(3, batch=2)
    shards = [
        str(write_batches(tmp_path / "s0.h5", batches[:1])),
        str(write_batches(tmp_path / "s1.h5", batches[1:])),
    ]
    out = tmp_path / "merged.h5"
    harness = Harness(
        partial(merge_small_shards, shards, str(out)), tmp_path / "work", env={"CKA_PROBE_COMMIT_BYTES": "1"}
    )
    points = harness.points()
    reference = contents(out)
    for k in chosen(points, sweep, k=3):
        reset(out, partial_path(out))
        harness.kill_and_finish(k)
        assert_same_store(out, reference)


# -- training
# ------------------------------------------------------------------------------------------------------
def checkpoint_state(path: Path) -> dict:
    """A checkpoint's tensors and values, without its wall-clock times."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(torch.load(path, weights_only=True))


def assert_same_values(got, want, where: str = "") -> None:
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_same_values(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_values(g, w, f"{where}[{i}]")
    elif isinstance(want, torch.Tensor):
        assert torch.equal(got, want), where
    else:
        assert got == want, where


def log_without_time(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def training(speech_corpus, tmp_path_factory):
    """``cka-probe train`` of a small SO model for 2 epochs of 2 steps; its uninterrupted outputs."""
    root = tmp_path_factory.mktemp("crash-train")
    config = small_config(epochs=2, batch_size=2)
    (root / "small.json").write_text(json.dumps(config))
    out = root / "so"
    harness = Harness(
        [
            "train",
            "--arch",
            "so",
            "--task",
            "surface",
            "--data",
            str(speech_corpus["train"]),
            "--valid",
            str(speech_corpus["valid"]),
            "--config",
            str(root / "small.json"),
            "--out",
            str(out),
        ],
        root,
    )
    points = harness.points()
    want = {name: checkpoint_state(out / name) for name in ("best.pt", "last.pt")}
    return harness, out, points, want, log_without_time(out / "log.csv")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_training_killed_at_any_crash_point_finishes_bitwise(training, sweep):
    harness, out, points, want, log = training
    assert {"checkpoint:best.pt:written", "train:log:torn", "checkpoint:last.pt:replaced"} <= set(points)
    for k in chosen(points, sweep, k=3):
        reset(out)
        harness.kill_and_finish(k)
        for name in ("best.pt", "last.pt"):
            assert_same_values(checkpoint_state(out / name), want[name], f"{name} after a kill at point {k}")
        assert log_without_time(out / "log.csv") == log
        assert not hidden_leftovers(out)


# -- evaluation, corpus, comparison tables, figures
# ----------------------------------------------------------------
@pytest.mark.parametrize("sweep", SWEEPS)
def test_evaluation_killed_at_any_crash_point_finishes_bitwise(noise_checkpoint, tmp_path, sweep):
    ckpt, manifest, _ = noise_checkpoint
    harness = Harness(
        ["evaluate", str(ckpt), "--data", str(manifest), "--out", str(tmp_path / "out" / "cer.csv")], tmp_path
    )
    points = harness.points()
    want = files(tmp_path / "out")
    for k in chosen(points, sweep, k=2):
        reset(tmp_path / "out")
        harness.kill_and_finish(k)
        assert files(tmp_path / "out") == want


@pytest.mark.parametrize("sweep", SWEEPS)
def test_synthesis_killed_at_any_crash_point_finishes_bitwise(tmp_path, sweep):
    out = tmp_path / "corpus"
    harness = Harness(["synth", "--lang", "en", "--n", "5", "--out", str(out), "--workers", "1"], tmp_path)
    points = harness.points()
    want = files(out)
    assert len(want) == 5 + 4  # the audio, three manifests, summary.json
    for k in chosen(points, sweep, k=3):
        reset(out)
        harness.kill_and_finish(k)
        assert files(out) == want


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Stores of SSO, MSO and DO per language and evaluate CSVs, as ``reproduce`` leaves them."""
    root = tmp_path_factory.mktemp("crash-tables")
    for language in ("en", "ko"):
        (root / "activations" / language).mkdir(parents=True)
        for role, seed in (("sso", 1), ("mso", 2), ("do", 3)):
            write_store(
                root / "activations" / language / f"{role}.h5", role, language, encoder_seed=seed, seed=seed
            )
    (root / "cer").mkdir()
    return root, [str(p) for p in write_cer(root / "cer")]


@pytest.mark.parametrize("sweep", SWEEPS)
def test_tables_figures_and_compare_killed_at_any_crash_point_finish_bitwise(small_run, tmp_path, sweep):
    root, cer = small_run
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    commands = {
        "tables": (
            [
                "compare",
                "--cross-task",
                str(root / "activations"),
                "--cross-lang",
                "--cer",
                *cer,
                "--tables",
                str(tables),
                "--n-boot",
                "20",
                "--n-perm",
                "10",
            ],
            tables,
            "*",
        ),
        "figures": (["figures", str(tables), "--out", str(figures)], figures, "*.png"),
        "compare": (
            [
                "compare",
                str(root / "activations/en/sso.h5"),
                str(root / "activations/en/do.h5"),
                "--out",
                str(tmp_path / "pair" / "cka.csv"),
            ],
            tmp_path / "pair",
            "*",
        ),
    }
    for name, (argv, out, pattern) in commands.items():
        harness = Harness(argv, tmp_path / f"work-{name}")
        points = harness.points()
        want = files(out, pattern)
        for k in chosen(points, sweep, k=1):
            reset(out)
            harness.kill_and_finish(k)
            assert files(out, pattern) == want, f"{name} after a kill at point {k}"
            assert not hidden_leftovers(out)
            assert all(p.read_bytes().rstrip().endswith(b"%%EOF") for p in out.glob("*.pdf"))


# -- the report and the stage runner of reproduce
# ------------------------------------------------------------------
def write_small_report(run_dir: str) -> None:
    """The ``report`` stage's function over a run folder (a harness target)."""
    from cka_probe.study.report import write_report

    write_report(Path(run_dir), Path(run_dir) / "report.md")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_report_killed_at_any_crash_point_finishes_bitwise(small_run, tmp_path, sweep):
    from functools import partial

    from cka_probe.cli import main

    root, cer = small_run
    run_dir = tmp_path / "run"
    shutil.copytree(root, run_dir)
    assert (
        main(
            [
                "compare",
                "--cross-task",
                str(run_dir / "activations"),
                "--cer",
                *cer,
                "--tables",
                str(run_dir / "tables"),
                "--n-boot",
                "20",
                "--n-perm",
                "10",
            ]
        )
        == 0
    )
    harness = Harness(partial(write_small_report, str(run_dir)), tmp_path / "work")
    points = harness.points()
    reports = [run_dir / "report.md", run_dir / "report.html"]
    want = [path.read_bytes() for path in reports]
    for k in chosen(points, sweep):
        reset(*reports)
        harness.kill_and_finish(k)
        assert [path.read_bytes() for path in reports] == want
        assert not hidden_leftovers(run_dir)


def write_file_stage(partial_dir: Path, *, name: str) -> None:
    """A stage action: a CSV and its summary sidecar, as evaluate writes them."""
    from cka_probe.atomic import atomic_write_text

    atomic_write_text(partial_dir / f"{name}.summary.json", "{}\n", point="action")
    atomic_write_text(partial_dir / f"{name}.csv", f"name\n{name}\n", point="action")


def write_folder_stage(partial_dir: Path, *, text: str) -> None:
    """A stage action that fills a folder."""
    from cka_probe.atomic import atomic_write_text

    for i in range(2):
        atomic_write_text(partial_dir / f"part{i}.txt", text, point="action")


def run_small_pipeline(run_dir: str) -> None:
    """Three stages of ``reproduce``'s runner, a folder and two file outputs (a harness target)."""
    from cka_probe import pipeline

    run = Path(run_dir)
    pipeline.run_stages(
        [
            pipeline.Stage("corpus", run / "data" / "en", write_folder_stage, {"text": "corpus"}),
            pipeline.Stage("evaluate sso", run / "cer" / "sso.csv", write_file_stage, {"name": "sso"}),
            pipeline.Stage("evaluate do", run / "cer" / "do.csv", write_file_stage, {"name": "do"}),
        ],
        run,
    )


@pytest.mark.parametrize("sweep", SWEEPS)
def test_reproduce_stages_killed_at_any_crash_point_are_redone(tmp_path, sweep):
    from functools import partial

    run_dir = tmp_path / "run"
    harness = Harness(partial(run_small_pipeline, str(run_dir)), tmp_path / "work")
    points = harness.points()
    assert {"stage:publish", "stage:published", "stages:replaced"} <= set(points)
    want = {k: v for k, v in files(run_dir).items() if k != "stages.csv"}
    for k in chosen(points, sweep, k=len(points) if sweep == "fast" else 4):
        reset(run_dir)
        harness.kill_and_finish(k)
        assert {k: v for k, v in files(run_dir).items() if k != "stages.csv"} == want
        assert not hidden_leftovers(run_dir)
        with open(run_dir / "stages.csv", newline="") as f:
            last_run = list(csv.DictReader(f))[-3:]  # the rerun's rows: each stage skipped or done
        assert [row["stage"] for row in last_run] == ["corpus", "evaluate sso", "evaluate do"]


def noise_data_folder(folder: Path) -> Path:
    """Train/valid/test manifests of short noise recordings with transcripts (a user's data folder)."""
    from scipy.io import wavfile

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("valid", 4), ("test", 6)):
        rows = []
        for i in range(n):
            (surface, meaning), uid = NOISE_TEXTS[i % len(NOISE_TEXTS)], f"{split}{i}"
            audio = rng.normal(size=int(16000 * rng.uniform(0.6, 1.0))) * 3000
            wavfile.write(folder / f"{uid}.wav", 16000, audio.astype(np.int16))
            rows.append(
                {
                    "id": uid,
                    "audio": f"{uid}.wav",
                    "surface": surface,
                    "meaning": meaning,
                    "language": "en",
                    "speaker": f"s{i % 3}",
                }
            )
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run_outputs(run_dir: Path) -> dict[str, object]:
    """What a reproduction computed: tables, figures (PNG), stores, checkpoints, the report before its
    timings.

    Wall-clock fields aside: the checkpoints' ``seconds`` and the stores' ``checkpoint_sha256``.
    """
    found: dict[str, object] = {
        **files(run_dir / "tables"),
        **files(run_dir / "figures", "*.png"),
        **files(run_dir / "cer"),
    }
    for store in sorted((run_dir / "activations").rglob("*.h5")):
        # a checkpoint retrained after a kill differs in its wall-clock fields, hence in its sha256
        found[str(store.relative_to(run_dir))] = contents(store)
        del found[str(store.relative_to(run_dir))]["attrs"]["checkpoint_sha256"]
    found |= {
        str(p.relative_to(run_dir)): checkpoint_state(p)["model_state"]
        for p in sorted((run_dir / "checkpoints").rglob("*.pt"))
    }
    found["report.md"] = (run_dir / "report.md").read_text().split("## Stages")[0]
    return found


@pytest.mark.slow
def test_a_reproduction_killed_at_crash_points_throughout_finishes_bitwise(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    noise_data_folder(data)
    run_dir = tmp_path / "run"
    harness = Harness(
        [
            "reproduce",
            "--lang",
            "en",
            "--data",
            f"en={data}",
            "--scale",
            "tiny",
            "--epochs",
            "1",
            "--jobs",
            "1",
            "--out",
            str(run_dir),
        ],
        tmp_path / "work",
    )
    points = harness.points()
    want = run_outputs(run_dir)
    print(f"\nreproduce: killing at 8 of its {len(points)} crash points", file=sys.stderr)
    for k in spread(len(points), 8):
        reset(run_dir)
        harness.kill_and_finish(k)
        got = run_outputs(run_dir)
        assert got.keys() == want.keys()
        for key in want:
            assert_same_values(got[key], want[key], f"{key} after a kill at point {k}")
        assert not hidden_leftovers(run_dir)
