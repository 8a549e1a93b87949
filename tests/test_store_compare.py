"""compare_stores: alignment by id, mean and frame pooling, streamed linear CKA against independent
formulas."""

from __future__ import annotations

import cka_reference as ref
import numpy as np
import pytest

from cka_probe.compare.stores import compare_stores, streamed_linear_cka
from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore, StoreWriter


def centred_gram(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    return x @ x.T


def reference_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T
    return ref.hsic(k, l, True) / np.sqrt(ref.hsic(k, k, True) * ref.hsic(l, l, True))


def reference_rbf_cka(x: np.ndarray, y: np.ndarray, frac: float) -> float:
    """RBF CKA with σ² = frac² · median of all n² squared distances (docs/design.md, "The measures")."""

    def gram(z):
        d2 = np.sum((z[:, None] - z[None]) ** 2, -1)
        return np.exp(-d2 / (2 * frac**2 * np.median(d2)))

    h = np.eye(len(x)) - 1 / len(x)
    k, l = h @ gram(x) @ h, h @ gram(y) @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def make_stores(tmp_path, n_utts: int = 24, seed: int = 0):
    """Store A (layers a0, a1) and store B (layers b0, b1, b2): B reversed, with extra ids, rows derived from
    A.

    Returns the paths and the utterances' float32 rows ``{(store, layer): {id: (L, D)}}``.
    """
    rng = np.random.default_rng(seed)
    ids = [f"u{i:02d}" for i in range(n_utts)]
    lengths = {u: int(rng.integers(1, 6)) for u in ids + ["x0", "x1"]}
    base = {u: rng.normal(size=(lengths[u], 6)) for u in lengths}
    maps = {
        name: rng.normal(size=(6, d)) for name, d in (("a0", 4), ("a1", 6), ("b0", 5), ("b1", 3), ("b2", 4))
    }
    rows = {
        name: {
            u: np.tanh(base[u] @ m + 0.3 * rng.normal(size=(lengths[u], m.shape[1]))).astype(np.float32)
            for u in lengths
        }
        for name, m in maps.items()
    }
    order = {"a": ids, "b": ["x0", *ids[::-1], "x1"]}
    paths = {}
    for store, layers in (("a", ["a0", "a1"]), ("b", ["b0", "b1", "b2"])):
        with StoreWriter(tmp_path / f"{store}.h5") as writer:
            for lo in range(0, len(order[store]), 5):
                batch = order[store][lo : lo + 5]
                lens = [lengths[u] for u in batch]
                writer.append(
                    batch,
                    {
                        ("encoder", name): (np.concatenate([rows[name][u] for u in batch]), lens)
                        for name in layers
                    },
                )
            paths[store] = writer.finish()
    return paths, rows, ids


def frames_of(rows, name, ids):
    return np.concatenate([rows[name][u] for u in ids]).astype(np.float64)


@pytest.mark.parametrize(
    "debiased, dtype, rel", [(False, "float64", 1e-6), (True, "float64", 1e-6), (False, None, 1e-5)]
)
def test_frames_pool_streams_exact_linear_cka(tmp_path, debiased, dtype, rel):
    paths, rows, ids = make_stores(tmp_path)
    with pytest.warns(
        UserWarning, match="24 in common, dropped 0 only in the first and 2 only in the second"
    ):
        table = compare_stores(paths["a"], paths["b"], pool="frames", debiased=debiased, dtype=dtype)
    assert list(table.index) == ["a0", "a1"] and list(table.columns) == ["b0", "b1", "b2"]
    assert table.attrs["n_utterances"] == 24 and table.attrs["pool"] == "frames"
    reference = reference_debiased_cka if debiased else ref.feature_space_cka
    for x in table.index:
        for y in table.columns:
            want = reference(frames_of(rows, x, ids), frames_of(rows, y, ids))
            assert table.loc[x, y] == pytest.approx(want, rel=rel, abs=1e-12)


def test_streamed_result_does_not_depend_on_chunk_size(tmp_path):
    paths, _, _ = make_stores(tmp_path)
    with ActivationStore(paths["a"]) as a, ActivationStore(paths["b"]) as b:
        ids = a.ids
        small = streamed_linear_cka(a, "encoder", b, "encoder", ids, dtype="float64", chunk_rows=7)
        whole = streamed_linear_cka(a, "encoder", b, "encoder", ids, dtype="float64", chunk_rows=10_000)
    np.testing.assert_allclose(small.to_numpy(), whole.to_numpy(), rtol=1e-6)


def test_mean_pool_compares_per_utterance_means(tmp_path):
    paths, rows, ids = make_stores(tmp_path)
    with pytest.warns(UserWarning):
        table = compare_stores(paths["a"], paths["b"], pool="mean")
    for x in table.index:
        for y in table.columns:
            mx = np.stack([rows[x][u].astype(np.float64).mean(0) for u in ids])
            my = np.stack([rows[y][u].astype(np.float64).mean(0) for u in ids])
            assert table.loc[x, y] == pytest.approx(ref.feature_space_cka(mx, my), rel=1e-6)


def test_rbf_on_frames_loads_rows_aligned_by_id(tmp_path):
    paths, rows, ids = make_stores(tmp_path)
    with pytest.warns(UserWarning):
        table = compare_stores(paths["b"], paths["a"], pool="frames", kernel="rbf", sigma=0.8)
    b_ids = ["x0", *ids[::-1], "x1"]
    common = [u for u in b_ids if u in ids]
    want = reference_rbf_cka(frames_of(rows, "b1", common), frames_of(rows, "a0", common), 0.8)
    assert table.loc["b1", "a0"] == pytest.approx(want, rel=1e-6)


def test_frames_pool_needs_equal_rows_per_utterance(tmp_path):
    paths, _, _ = make_stores(tmp_path)
    (tmp_path / "other").mkdir()
    other, _, _ = make_stores(tmp_path / "other", seed=1)
    with (
        pytest.warns(UserWarning),
        pytest.raises(CKAProbeError, match="utterance u.. has . rows in .*a.h5 encoder/a0 but . in .*b.h5"),
    ):
        compare_stores(paths["a"], other["b"], pool="frames")
    with pytest.raises(CKAProbeError, match="pool must be mean, frames or words"):
        compare_stores(paths["a"], paths["a"], pool="max")


def test_compare_command_reads_stores(tmp_path, capsys):
    import pandas as pd

    from cka_probe.cli import main

    paths, _, _ = make_stores(tmp_path)
    out = tmp_path / "cka.csv"
    assert main(["compare", str(paths["a"]), str(paths["b"]), "--pool", "frames", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 only in the second" in captured.err and "2 only in the second" not in captured.out
    with pytest.warns(UserWarning):
        want = compare_stores(paths["a"], paths["b"], pool="frames")
    pd.testing.assert_frame_equal(pd.read_csv(out, index_col=0), want, check_names=False)
    assert main(["compare", str(paths["a"]), str(paths["b"]), "--stream", "decoder/surface"]) == 2
    assert "no stream 'decoder/surface'" in capsys.readouterr().err
