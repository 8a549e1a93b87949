"""``cka-probe compare`` of two stores under ``torchrun``: 2 gloo ranks on CPU give the one-process table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cka_probe.cli import main
from cka_probe.store import StoreWriter

REPO = Path(__file__).resolve().parents[1]


def write_pair(folder: Path, lengths: list[int], seed: int = 0) -> tuple[Path, Path]:
    """Stores ``a.h5`` (layers a0, a1) and ``b.h5`` (layers b0, b1, b2) of the same utterances, with
    ``lengths[i]`` rows for utterance i in both, B's rows a noisy function of A's."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(sum(lengths), 5))
    widths = {"a0": 3, "a1": 4, "b0": 2, "b1": 3, "b2": 4}
    rows = {
        name: np.tanh(base @ rng.normal(size=(5, d)) + 0.3 * rng.normal(size=(len(base), d))).astype(
            np.float32
        )
        for name, d in widths.items()
    }
    ids = [f"u{i}" for i in range(len(lengths))]
    paths = []
    for store, layers in (("a", ["a0", "a1"]), ("b", ["b0", "b1", "b2"])):
        with StoreWriter(folder / f"{store}.h5") as writer:
            writer.append(ids, {("encoder", name): (rows[name], lengths) for name in layers})
            paths.append(writer.finish())
    return paths[0], paths[1]


def torchrun_compare(a: Path, b: Path, out: Path, options: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m cka_probe compare A B``: 2 ranks on CPU (gloo), one thread each."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launch, "-m", "cka_probe", "compare", str(a), str(b), "--out", str(out), *options]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def assert_same_outputs(one: Path, two: Path) -> None:
    """The CSVs hold the same layers and values within 1e-12, and the JSON sidecars (how each table was
    computed: n, dims, dtype, stores, pooling, ...) are equal."""
    want, got = pd.read_csv(one, index_col=0), pd.read_csv(two, index_col=0)
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)
    assert json.loads(Path(f"{two}.json").read_text()) == json.loads(Path(f"{one}.json").read_text())


def check_two_ranks_equal_one_process(folder: Path, lengths: list[int], options: list[str]) -> None:
    """``compare`` of two stores of utterances of ``lengths`` rows in this process, then under 2 gloo ranks:
    the same outputs, written once."""
    a, b = write_pair(folder, lengths)
    options = [*options, "--dtype", "float64"]
    assert main(["compare", str(a), str(b), "--out", str(folder / "one.csv"), *options]) == 0
    two = torchrun_compare(a, b, folder / "two.csv", options)
    assert two.returncode == 0, two.stderr
    assert_same_outputs(folder / "one.csv", folder / "two.csv")
    assert two.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["a.h5", "b.h5", "one.csv", "one.csv.json", "two.csv", "two.csv.json"]
    )


@pytest.mark.parametrize(
    "lengths, options",
    [
        # uneven: rank 0 holds 1 utterance of 1 row (a constant layer on its own), rank 1 two
        ([1, 4, 3], ["--pool", "frames", "--debiased"]),
        ([2, 5, 1, 3, 3, 6, 1, 2, 4], ["--pool", "mean"]),  # utterance means, 4 and 5 a rank
    ],
)
def test_two_gloo_ranks_equal_one_process(tmp_path, lengths, options):
    check_two_ranks_equal_one_process(tmp_path, lengths, options)


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_on_an_even_split(tmp_path):
    check_two_ranks_equal_one_process(tmp_path, [6, 4, 4, 2, 2, 1, 1, 1], ["--pool", "frames"])


def test_means_of_few_utterances_are_compared_whole_on_every_rank(tmp_path, monkeypatch):
    """No more utterances than the widest layer: one process compares the means in Gram space, and so
    does every rank (no process group needed); rank 0 alone writes the table."""
    a, b = write_pair(tmp_path, [2, 1, 3, 2])  # 4 utterances, layers up to 4 wide
    compare = ["compare", str(a), str(b), "--pool", "mean", "--dtype", "float64", "--out"]
    assert main([*compare, str(tmp_path / "one.csv")]) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main([*compare, str(tmp_path / f"rank{rank}.csv")]) == 0
    assert_same_outputs(tmp_path / "one.csv", tmp_path / "rank0.csv")
    assert json.loads((tmp_path / "rank0.csv.json").read_text())["space"] == "gram"
    assert not (tmp_path / "rank1.csv").exists() and not (tmp_path / "rank1.csv.json").exists()


@pytest.mark.parametrize(
    "options, unsplit",
    [
        (["--pool", "frames", "--kernel", "rbf"], "--kernel rbf"),
        (["--pool", "mean", "--measure", "cca"], "--measure cca"),
        (["--pool", "words"], "--pool words"),
    ],
)
def test_what_ranks_cannot_split_is_refused_under_torchrun(tmp_path, monkeypatch, capsys, options, unsplit):
    a, b = write_pair(tmp_path, [2, 3, 1, 4, 2, 3])
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "cka.csv"
    assert main(["compare", str(a), str(b), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{unsplit} needs all rows in one process" in err
    assert not out.exists() and not Path(f"{out}.json").exists()


def test_npz_inputs_are_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    x = tmp_path / "x.npz"
    np.savez(x, layer=np.random.default_rng(0).normal(size=(6, 2)))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["compare", str(x), str(x), "--out", str(tmp_path / "cka.csv")]) == 2
    assert "under torchrun compare splits two activation stores (.h5) only" in capsys.readouterr().err
