"""``cka-probe compare`` on .npz files: table, CSV, sidecar and one-line errors."""

import json

import numpy as np
import pandas as pd
import pytest

from cka_probe.cli import main
from cka_probe.measures import cka_matrix


@pytest.fixture
def npz_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, enc0=x, enc1=np.tanh(x))
    np.savez(b, enc0=x[:, :2] + 0.1 * rng.standard_normal((50, 2)), enc1=rng.standard_normal((50, 3)))
    return a, b


def test_compare_writes_the_engine_table(npz_files, tmp_path, capsys):
    a, b = npz_files
    out = tmp_path / "out" / "table.csv"
    assert main(["compare", str(a), str(b), "--debiased", "--out", str(out)]) == 0
    table = pd.read_csv(out, index_col=0)
    with np.load(a) as fa, np.load(b) as fb:
        expected = cka_matrix(dict(fa), dict(fb), debiased=True)
    np.testing.assert_allclose(table.values, expected.values, atol=1e-12)
    assert json.loads((tmp_path / "out" / "table.csv.json").read_text())["estimator"] == "debiased"
    assert "enc1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make_b, message",
    [
        (lambda p: np.savez(p, enc0=np.zeros((49, 2))), "b.npz layer enc0 has 49 rows"),
        (lambda p: np.savez(p, enc0=np.full((50, 2), np.nan)), "b.npz layer enc0: contains NaN or Inf"),
        (lambda p: p.write_bytes(b"not a zip"), "b.npz: not a readable .npz file"),
    ],
)
def test_compare_errors_are_one_line(npz_files, tmp_path, capsys, make_b, message):
    a, b = npz_files
    make_b(b)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "t.csv").exists()
