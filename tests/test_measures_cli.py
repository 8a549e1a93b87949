"""``compare --measure`` on .npz files and ``cross_task_arrays(measure=...)`` of the comparison set."""

import json

import numpy as np
import pandas as pd
import pytest

from cka_probe import similarity_matrix
from cka_probe.cli import main
from cka_probe.study.cross_task import COMPARISONS, cross_task_arrays
from cka_probe.study.schema import diagonal, pooled


@pytest.fixture
def npz_pair(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5))
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, l0=x, l1=x**2)
    np.savez(
        b, l0=x @ rng.standard_normal((5, 4)) + rng.standard_normal((60, 4)), l1=rng.standard_normal((60, 7))
    )
    return a, b


@pytest.mark.parametrize(
    "measure, extra, options",
    [
        ("pwcca", ["--ridge", "0.05"], {"ridge": 0.05}),
        ("procrustes_angle", [], {}),
        (
            "rsa",
            ["--rdm", "euclidean", "--rsa-compare", "pearson"],
            {"rdm": "euclidean", "compare": "pearson"},
        ),
    ],
)
def test_compare_measure_writes_the_measure_table(npz_pair, tmp_path, measure, extra, options):
    a, b = npz_pair
    out = tmp_path / "t.csv"
    assert main(["compare", str(a), str(b), "--measure", measure, *extra, "--out", str(out)]) == 0
    with np.load(a) as fa, np.load(b) as fb:
        expected = similarity_matrix(dict(fa), dict(fb), measure=measure, **options)
    np.testing.assert_allclose(pd.read_csv(out, index_col=0).values, expected.values, atol=1e-12)
    attrs = json.loads((tmp_path / "t.csv.json").read_text())
    assert attrs["measure"] == measure and attrs["options"] == {k: str(v) for k, v in options.items()}


def test_compare_rejects_cka_options_for_another_measure(npz_pair, tmp_path, capsys):
    a, b = npz_pair
    assert (
        main(["compare", str(a), str(b), "--measure", "cca", "--debiased", "--out", str(tmp_path / "t.csv")])
        == 2
    )
    err = capsys.readouterr().err
    assert "--debiased and --kernel apply to --measure cka" in err and err.count("\n") == 1


def test_compare_dtype_sets_the_working_dtype_of_the_measures_that_take_it(npz_pair, tmp_path, capsys):
    a, b = npz_pair  # float64 arrays: float64 products unless --dtype says otherwise
    out = tmp_path / "t.csv"
    assert main(["compare", str(a), str(b), "--dtype", "float32", "--out", str(out)]) == 0
    assert json.loads((tmp_path / "t.csv.json").read_text())["dtype"] == "float32"
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--measure", "cca", "--dtype", "float64", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--dtype applies to --measure cka or rsa, not cca" in err and err.count("\n") == 1


def model(rng, n, names, d=4):
    return {name: rng.standard_normal((n, d)) for name in names}


def test_cross_task_with_a_distance_measure_counts_smaller_as_more_similar():
    rng = np.random.default_rng(2)
    n, enc, dec = 30, ["e0", "e1"], ["d0"]
    sso_enc = model(rng, n, enc)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    reps = {
        "sso": {"encoder": sso_enc, "decoder/surface": model(rng, n, dec)},
        "mso": {"encoder": model(rng, n, enc), "decoder/meaning": model(rng, n, dec)},
        "do": {
            "encoder": {k: 2 * v @ q for k, v in sso_enc.items()},  # the SSO encoder rotated and scaled
            "decoder/surface": model(rng, n, dec),
            "decoder/meaning": model(rng, n, dec),
        },
    }
    table = pooled(
        cross_task_arrays(
            reps, language="en", n_boot=5, n_perm=19, progress=False, measure="procrustes"
        ).table
    )
    assert (table.estimator == "procrustes").all() and (table.kernel == "-").all()
    do_sso = table[(table.part == "encoder") & (table.comparison == "DO-SSO")]
    np.testing.assert_allclose(diagonal(do_sso).value, 0.0, atol=1e-9)
    assert (diagonal(do_sso).p == 1 / 20).all()
    for comp in COMPARISONS:
        got = table[(table.part == comp.part) & (table.comparison == comp.name)].value.to_numpy()
        expected = similarity_matrix(
            reps[comp.role_a][comp.stream_a], reps[comp.role_b][comp.stream_b], measure="procrustes"
        ).values.ravel()
        np.testing.assert_allclose(got, expected, atol=1e-12)
