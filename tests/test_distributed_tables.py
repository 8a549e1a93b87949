"""``cka-probe compare --cross-task`` under ``torchrun``: 2 gloo ranks split the resamples and give the
one-process tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cka_probe.cli import main
from cka_probe.ranks import split_over_ranks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import write_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cross_task_stores(folder: Path) -> Path:
    """SSO, MSO and DO stores of one language (DO's encoder close to SSO's)."""
    for role, seed, encoder_seed in (("sso", 1, 1), ("mso", 2, 2), ("do", 3, 1)):
        write_store(folder / f"{role}.h5", role, "en", encoder_seed=encoder_seed, seed=seed)
    return folder


def torchrun_tables(stores: Path, out: Path, options: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m cka_probe compare --cross-task``: 2 ranks on CPU, one thread each."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launch, "-m", "cka_probe", "compare", "--cross-task", str(stores), "--tables", str(out)]
    return subprocess.run([*command, *options], env=env, capture_output=True, text=True, timeout=180)


def test_two_gloo_ranks_give_the_one_process_tables(tmp_path, capsys):
    stores = cross_task_stores(tmp_path / "stores")
    options = ["--n-boot", "21", "--n-perm", "17"]  # odd counts: the ranks' blocks differ in size
    assert main(["compare", "--cross-task", str(stores), "--tables", str(tmp_path / "one"), *options]) == 0
    reported = capsys.readouterr().out.count("wrote")
    two = torchrun_tables(stores, tmp_path / "two", options)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote") == reported  # rank 0 alone writes and reports
    written = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == written
    for name in (n for n in written if n.endswith(".csv")):
        want, got = pd.read_csv(tmp_path / "one" / name), pd.read_csv(tmp_path / "two" / name)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        numbers = want.select_dtypes("number").columns
        pd.testing.assert_frame_equal(got.drop(columns=numbers), want.drop(columns=numbers))
        np.testing.assert_allclose(
            got[numbers].to_numpy(float), want[numbers].to_numpy(float), rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("count", [0, 1, 5])
def test_one_rank_computes_every_item(count):
    items = list(range(count))
    (rows,) = split_over_ranks(items, lambda block: [np.array([[i, i * i] for i in block]).reshape(-1, 2)])
    np.testing.assert_array_equal(rows, np.array([[i, i * i] for i in items]).reshape(-1, 2))
