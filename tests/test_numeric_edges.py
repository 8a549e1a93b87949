"""Numerics at the edges of the measures (any scale, few rows, constant layers) and bad .npz inputs.

Every expected mistake is one line naming the culprit (a ``CKAProbeError``; exit 2 from the CLI); every
scale-invariant measure gives the same value for a layer multiplied by any constant from 1e-300 to 1e300.
"""

import errno
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import cka_probe.compare.npz as npz_module
from cka_probe.cli import main
from cka_probe.compare.npz import write_table
from cka_probe.errors import CKAProbeError
from cka_probe.measures import (
    MinibatchCKA,
    StreamingLinearCKA,
    cka_matrix,
    gram_resample,
    kernel_cka,
    linear_cka,
    nystrom_cka_matrix,
    registry,
    similarity,
)
from cka_probe.measures.grouped import grouped_linear_cka
from cka_probe.measures.weighted import weighted_linear_cka

torch.set_num_threads(1)
SCALES = [1e-300, 1e-200, 1e-30, 1e30, 1e200, 1e300]


def related(n: int, dx: int, dy: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, dx) and y (n, dy) sharing a latent part, with a mean offset."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, dx)) + 0.5 * rng.standard_normal((n, dx)) + 2.0
    y = np.tanh(z @ rng.standard_normal((3, dy))) + 0.5 * rng.standard_normal((n, dy)) - 1.0
    return x, y


def reference_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019, Eq. 5, written out in float64: ||Y^T X||^2 / (||X^T X|| ||Y^T Y||)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("n", [60, 8])  # feature space (n > d) and Gram space (n <= d)
def test_cka_is_scale_invariant_from_1e_minus_300_to_1e300(n):
    x, y = related(n, 10, 7)
    expected = reference_linear_cka(x, y)
    for scale in SCALES:
        for xs, ys in (({"x": x * scale}, {"y": y}), ({"x": x}, {"y": y * scale})):
            assert cka_matrix(xs, ys).iloc[0, 0] == pytest.approx(expected, rel=1e-10), scale
    for kwargs in ({"debiased": True}, {"kernel": "rbf"}, {"kernel": "rbf", "debiased": True}):
        at_one = cka_matrix({"x": x}, {"y": y}, **kwargs).iloc[0, 0]
        for scale in SCALES:
            value = cka_matrix({"x": x * scale}, {"y": y / scale}, **kwargs).iloc[0, 0]
            assert value == pytest.approx(at_one, rel=1e-10), (kwargs, scale)


def test_rbf_bandwidth_scales_with_the_layer_and_the_pair_functions_are_scale_invariant():
    x, y = related(40, 6, 5, seed=1)
    for sigma in (0.3, 0.8, 2.0):  # a fraction of the median distance: the same kernel at every scale
        table = cka_matrix({"x": x}, {"y": y}, kernel="rbf", sigma=sigma)
        scaled = cka_matrix({"x": x * 3e40}, {"y": y * 7e-90}, kernel="rbf", sigma=sigma)
        assert scaled.iloc[0, 0] == pytest.approx(table.iloc[0, 0], rel=1e-10)
    for scale in SCALES:
        assert linear_cka(x * scale, y) == pytest.approx(reference_linear_cka(x, y), rel=1e-10)
        assert kernel_cka(x, y * scale) == pytest.approx(kernel_cka(x, y), rel=1e-10)


@pytest.mark.parametrize("measure", registry.names())
def test_every_registered_measure_is_scale_invariant(measure):
    x, y = related(50, 6, 4, seed=2)
    at_one = similarity(x, y, measure=measure)
    for scale in SCALES:
        assert similarity(x * scale, y / scale, measure=measure) == pytest.approx(at_one, rel=1e-9, abs=1e-12)


def test_streaming_minibatch_and_nystrom_are_scale_invariant():
    x, y = related(120, 6, 5, seed=3)
    expected = reference_linear_cka(x, y)
    for scale in SCALES:
        acc = StreamingLinearCKA(["x"], ["y"])
        for rows in (slice(0, 50), slice(50, 120)):
            acc.update({"x": x[rows] * scale}, {"y": y[rows]})
        assert acc.result().iloc[0, 0] == pytest.approx(expected, rel=1e-10)
    for kernel in ("linear", "rbf"):
        values = []
        for scale in [1.0, *SCALES]:
            mb = MinibatchCKA(["x"], ["y"], kernel=kernel)
            for rows in (slice(0, 60), slice(60, 120)):
                mb.update({"x": x[rows] * scale}, {"y": y[rows] / scale})
            values.append(mb.result().iloc[0, 0])
        np.testing.assert_allclose(values, values[0], rtol=1e-10)
    at_one = nystrom_cka_matrix([x], [y], rank=30).iloc[0, 0]
    for scale in SCALES:
        assert nystrom_cka_matrix([x * scale], [y], rank=30).iloc[0, 0] == pytest.approx(at_one, rel=1e-9)


def test_resampling_estimators_are_scale_invariant():
    x, y = related(24, 5, 4, seed=4)
    rng = np.random.default_rng(0)
    weights = rng.multinomial(24, np.ones(24) / 24, size=3).astype(float)
    labels = np.repeat(np.arange(8), 3)
    group_weights = rng.multinomial(8, np.ones(8) / 8, size=3).astype(float)
    index = [rng.integers(0, 24, 24) for _ in range(3)]

    def grids(scale: float) -> list[np.ndarray]:
        a = gram_resample.GramSet({"x": x * scale})
        b = gram_resample.GramSet({"y": y})
        return [
            weighted_linear_cka(x * scale, y, weights),
            grouped_linear_cka(x * scale, y, labels, group_weights),
            gram_resample.point_estimate(a, b, debiased=True),
            gram_resample.bootstrap(a, b, index),
        ]

    at_one = grids(1.0)
    for scale in SCALES:
        for value, expected in zip(grids(scale), at_one):
            np.testing.assert_allclose(value, expected, rtol=1e-10)


def test_float32_inputs_are_scale_invariant_to_their_tolerance():
    x, y = related(200, 8, 6, seed=5)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    expected = reference_linear_cka(x, y)
    for scale in (1e-30, 1e-20, 1e20, 1e30):
        for debiased in (False, True):
            table = cka_matrix({"x": x32 * np.float32(scale)}, {"y": y32}, debiased=debiased)
            assert table.attrs["dtype"] == "float32"
            at_one = cka_matrix({"x": x}, {"y": y}, debiased=debiased).iloc[0, 0]
            assert table.iloc[0, 0] == pytest.approx(at_one, rel=1e-5)
        assert cka_matrix({"x": x32 * np.float32(scale)}, {"y": y32}).iloc[0, 0] == pytest.approx(
            expected, rel=1e-5
        )


def test_tiny_varying_layer_is_not_constant_and_huge_constant_layer_is():
    x, y = related(30, 4, 3, seed=6)
    assert cka_matrix({"x": x * 1e-300}, {"y": y}).iloc[0, 0] == pytest.approx(reference_linear_cka(x, y))
    with pytest.raises(CKAProbeError, match="x layer flat: CKA is undefined for a constant representation"):
        cka_matrix({"flat": np.full((30, 4), 3e300)}, {"y": y})
    offset = np.full((30, 4), 0.1) + 1e-17  # rows identical; their mean is not exactly 0.1 in float64
    with pytest.raises(CKAProbeError, match="constant representation"):
        cka_matrix({"flat": offset}, {"y": y})


@pytest.mark.parametrize("measure", registry.names())
def test_two_rows_is_an_error(measure):
    x, y = related(3, 4, 3)
    for n in (2, 3):
        with pytest.raises(CKAProbeError) as info:
            similarity(x[:n], y[:n], measure=measure)
        assert f"needs at least 4 rows, got n={n}" in str(info.value)


def test_two_rows_is_an_error_on_every_cka_path():
    x, y = related(3, 4, 3)
    calls = [
        lambda: cka_matrix([x[:2]], [y[:2]]),
        lambda: linear_cka(x[:2], y[:2]),
        lambda: kernel_cka(x[:3], y[:3]),
        lambda: nystrom_cka_matrix([x[:3]], [y[:3]], rank=2),
        lambda: MinibatchCKA(["x"]).update({"x": x[:2]}),
    ]
    for call in calls:
        with pytest.raises(CKAProbeError, match="CKA needs at least 4 rows"):
            call()
    acc = StreamingLinearCKA(["x"])
    acc.update({"x": x[:2]})
    with pytest.raises(CKAProbeError, match="CKA needs at least 4 rows, got n=2"):
        acc.result()


def test_constant_layer_is_an_error_naming_it_on_every_path():
    x, y = related(40, 4, 3, seed=7)
    flat = np.full((40, 3), 2.7)
    message = "y layer flat: CKA is undefined for a constant representation (every row identical)"
    for kwargs in ({}, {"kernel": "rbf"}, {"debiased": True}, {"kernel": "poly"}):
        with pytest.raises(CKAProbeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            cka_matrix({"ok": x}, {"ok": y, "flat": flat}, **kwargs)
    with pytest.raises(CKAProbeError, match="y layer flat: CKA is undefined"):
        nystrom_cka_matrix({"ok": x}, {"flat": flat}, rank=10)
    acc = StreamingLinearCKA(["ok"], ["flat"])
    for rows in (slice(0, 20), slice(20, 40)):
        acc.update({"ok": x[rows]}, {"flat": flat[rows]})
    with pytest.raises(CKAProbeError, match="y layer flat: CKA is undefined"):
        acc.result()
    mb = MinibatchCKA(["ok"], ["flat"])
    mb.update({"ok": x[:20]}, {"flat": flat[:20]})
    with pytest.raises(CKAProbeError, match=r"y layer flat \(in every batch\): CKA is undefined"):
        mb.result()
    for measure in registry.names():
        with pytest.raises(CKAProbeError, match="y layer y: .* is undefined for a constant representation"):
            similarity(x, flat, measure=measure)


def test_a_stream_that_is_constant_in_one_chunk_only_is_not_constant():
    x, y = related(40, 4, 3, seed=8)
    x[:20] = 1.5  # every row of the first chunk identical, the layer is not
    acc = StreamingLinearCKA(["x"], ["y"])
    for rows in (slice(0, 20), slice(20, 40)):
        acc.update({"x": x[rows]}, {"y": y[rows]})
    assert acc.result().iloc[0, 0] == pytest.approx(reference_linear_cka(x, y), rel=1e-10)


def test_a_degenerate_resample_stays_nan_for_the_interval_code():
    x, y = related(10, 4, 3, seed=9)
    a, b = gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y})
    grids = gram_resample.bootstrap(a, b, [np.zeros(10, dtype=int), np.arange(10)])
    assert np.isnan(grids[0]).all() and np.isfinite(grids[1]).all()


# ---- .npz inputs through the CLI: exit 2 and one line on stderr naming the file ----


def run_compare(capsys, a: Path, b: Path, out: Path, *extra: str) -> str:
    """The one stderr line of a ``compare`` that must fail with exit status 2."""
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists() and not Path(f"{out}.json").exists()
    return err


@pytest.fixture
def good(tmp_path) -> Path:
    x, _ = related(12, 4, 3, seed=10)
    path = tmp_path / "good.npz"
    np.savez(path, enc0=x, enc1=np.tanh(x))
    return path


def test_truncated_npz_is_one_line(tmp_path, good, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert f"{bad}: not a readable .npz file (not a zip archive, or a truncated one)" in run_compare(
        capsys, good, bad, tmp_path / "t.csv"
    )


def test_npz_that_is_not_a_zip_or_holds_a_pickle_is_one_line(tmp_path, good, capsys):
    text = tmp_path / "text.npz"
    text.write_text("layer,0.1,0.2\n")
    err = run_compare(capsys, text, good, tmp_path / "t.csv")
    assert f"{text}: not a readable .npz file (not a zip" in err
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.ones((5, 2)))
    assert f"{npy}: not a readable .npz file (not a zip" in run_compare(capsys, good, npy, tmp_path / "t.csv")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, enc0=np.array([{"a": 1}, None], dtype=object))
    assert f"{pickled}: not a readable .npz file (" in run_compare(capsys, good, pickled, tmp_path / "t.csv")
    foreign = tmp_path / "foreign.npz"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("notes.txt", "not an array")
    assert f"{foreign}: layer 'notes.txt' is not an .npy array" in run_compare(
        capsys, good, foreign, tmp_path / "t.csv"
    )


@pytest.mark.parametrize(
    "array, words",
    [
        (np.array([["a", "b"]] * 6), "holds <U1 values"),
        (np.ones((6, 2)) + 1j, "holds complex128 values"),
        (np.ones((6, 2), dtype=bool), "holds bool values"),
        (np.float64(3.0), "has shape ()"),
        (np.ones(6), "has shape (6,)"),
        (np.ones((6, 2, 2)), "has shape (6, 2, 2)"),
        (np.ones((0, 3)), "has shape (0, 3)"),
        (np.ones((6, 0)), "has shape (6, 0)"),
    ],
)
def test_bad_npz_array_is_one_line_naming_the_layer(tmp_path, good, capsys, array, words):
    bad = tmp_path / "bad.npz"
    np.savez(bad, enc9=array)
    assert f"{bad}: layer 'enc9' {words}" in run_compare(capsys, good, bad, tmp_path / "t.csv")


def test_npz_rows_must_match_within_and_between_files(tmp_path, good, capsys):
    uneven = tmp_path / "uneven.npz"
    np.savez(uneven, a=np.ones((12, 2)), b=np.ones((11, 2)))
    err = run_compare(capsys, good, uneven, tmp_path / "t.csv")
    assert f"{uneven}: layer 'b' has 11 rows but layer 'a' has 12" in err
    short = tmp_path / "short.npz"
    np.savez(short, a=np.arange(22.0).reshape(11, 2))
    err = run_compare(capsys, good, short, tmp_path / "t.csv")
    assert f"{short} layer a has 11 rows but {good} layer enc0 has 12" in err


def test_constant_layer_is_exit_2_naming_the_file(tmp_path, good, capsys):
    flat = tmp_path / "flat.npz"
    x, _ = related(12, 4, 3, seed=11)
    np.savez(flat, ok=x, dead=np.full((12, 5), 1e-3))
    err = run_compare(capsys, good, flat, tmp_path / "t.csv")
    assert f"{flat} layer dead: CKA is undefined for a constant representation (every row identical)" in err


def test_nan_layer_and_two_rows_are_exit_2_naming_the_file(tmp_path, good, capsys):
    nan = tmp_path / "nan.npz"
    x, _ = related(12, 4, 3, seed=12)
    x[3, 1] = np.nan
    np.savez(nan, enc0=x)
    assert f"{nan} layer enc0: contains NaN or Inf" in run_compare(capsys, nan, good, tmp_path / "t.csv")
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, enc0=np.eye(2))
    np.savez(b, enc0=np.eye(2)[::-1])
    err = run_compare(capsys, a, b, tmp_path / "t.csv")
    assert f"{a}, {b}: CKA needs at least 4 rows, got n=2" in err


def test_integer_npz_is_compared_as_float(tmp_path, capsys):
    rng = np.random.default_rng(13)
    ints = rng.integers(-5, 6, (20, 4))
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, enc0=ints)
    np.savez(b, enc0=ints.astype(np.float64) * 1e250)
    out = tmp_path / "cka.csv"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert float(out.read_text().splitlines()[1].split(",")[1]) == pytest.approx(1.0, rel=1e-12)
    assert Path(f"{out}.json").exists()


def test_full_disk_leaves_no_csv_without_its_json(tmp_path, monkeypatch):
    x, y = related(12, 4, 3, seed=14)
    table = cka_matrix({"a": x}, {"b": y})
    out = tmp_path / "cka.csv"
    real = npz_module.atomic_write_text

    def full_disk(path, text, *, point):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text, point=point)

    monkeypatch.setattr(npz_module, "atomic_write_text", full_disk)
    with pytest.raises(CKAProbeError) as info:
        write_table(table, out)
    message = str(info.value)
    assert message.startswith(f"{out}.json: No space left on device while writing (about ")
    assert "\n" not in message and not out.exists() and not Path(f"{out}.json").exists()
    monkeypatch.setattr(npz_module, "atomic_write_text", real)
    write_table(table, out)
    assert io.StringIO(out.read_text()).readline().strip() == ",b" and Path(f"{out}.json").exists()
