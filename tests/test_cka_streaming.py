"""Streaming and minibatch accumulators against in-memory results."""

import cka_reference as ref
import numpy as np
import pytest
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures import MinibatchCKA, StreamingLinearCKA, cka_matrix

torch.set_num_threads(1)


def latent_layers(seed=0, n=240):
    """Layers x0..x2 (offset by 50) and y0, y1 of n rows, all from one 3-d latent."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    xs = {
        f"x{i}": z @ rng.standard_normal((3, 6 + i)) + rng.standard_normal((n, 6 + i)) + 50 for i in range(3)
    }
    ys = {
        f"y{i}": np.tanh(z @ rng.standard_normal((3, 5))) + 0.5 * rng.standard_normal((n, 5))
        for i in range(2)
    }
    return xs, ys


def stream(xs, ys, sizes, debiased):
    acc = StreamingLinearCKA(list(xs), None if ys is None else list(ys), debiased=debiased)
    start = 0
    for size in sizes:
        acc.update(
            {k: v[start : start + size] for k, v in xs.items()},
            None if ys is None else {k: v[start : start + size] for k, v in ys.items()},
        )
        start += size
    return acc.result()


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_streaming_equals_in_memory_for_any_chunking(debiased, symmetric):
    xs, ys = latent_layers()
    ys = None if symmetric else ys
    expected = cka_matrix(xs, ys, debiased=debiased)
    for sizes in ([240], [1] * 10 + [230], [7] * 34 + [2], [100, 3, 137]):
        result = stream(xs, ys, sizes, debiased)
        np.testing.assert_allclose(result.values, expected.values, atol=1e-12)
        assert result.attrs["n"] == 240 and result.attrs["estimator"] == expected.attrs["estimator"]


def test_merged_accumulators_equal_one_pass():
    xs, ys = latent_layers(1)
    parts = []
    for rows in (slice(0, 90), slice(90, 240)):
        acc = StreamingLinearCKA(list(xs), list(ys), debiased=True)
        acc.set_reference({k: v[:16] for k, v in xs.items()}, {k: v[:16] for k, v in ys.items()})
        acc.update({k: v[rows] for k, v in xs.items()}, {k: v[rows] for k, v in ys.items()})
        parts.append(acc)
    parts[0].merge(parts[1])
    np.testing.assert_allclose(parts[0].result().values, cka_matrix(xs, ys, debiased=True).values, atol=1e-12)


def test_merge_refuses_different_references():
    xs, _ = latent_layers(2)
    a, b = StreamingLinearCKA(list(xs)), StreamingLinearCKA(list(xs))
    a.update({k: v[:50] for k, v in xs.items()})
    b.update({k: v[50:] for k, v in xs.items()})
    with pytest.raises(CKAProbeError, match="reference rows"):
        a.merge(b)


def test_streaming_chunk_errors_name_the_layer():
    xs, _ = latent_layers(3)
    acc = StreamingLinearCKA(list(xs))
    acc.update({k: v[:10] for k, v in xs.items()})
    with pytest.raises(CKAProbeError, match="x layer x1: chunk has 3 columns"):
        acc.update({k: v[10:20, :3] if k == "x1" else v[10:20] for k, v in xs.items()})
    with pytest.raises(CKAProbeError, match="missing layers \\['x2'\\]"):
        acc.update({k: v[:5] for k, v in xs.items() if k != "x2"})
    bad = {k: v[20:30].copy() for k, v in xs.items()}
    bad["x0"][3, 1] = np.inf
    with pytest.raises(CKAProbeError, match="x layer x0: contains NaN or Inf"):
        acc.update(bad)


def test_streaming_refuses_a_constant_layer_naming_it():
    xs, _ = latent_layers(4)
    xs["flat"] = np.full((240, 4), 2.7, dtype=np.float32)
    with pytest.raises(CKAProbeError, match="x layer flat: CKA is undefined for a constant"):
        stream(xs, None, [100, 140], debiased=False)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_is_the_sum_of_unbiased_hsic_over_batches(kernel):
    xs, ys = latent_layers(5)
    gram = ref.linear_gram if kernel == "linear" else (lambda a: ref.rbf_gram(a, 0.8))
    mb = MinibatchCKA(list(xs), list(ys), kernel=kernel)
    batches = [slice(0, 80), slice(80, 200), slice(200, 240)]  # 120 rows > d: feature space; 40, 80: either
    for rows in batches:
        mb.update({k: v[rows] for k, v in xs.items()}, {k: v[rows] for k, v in ys.items()})
    table = mb.result()
    assert table.attrs["estimator"] == "minibatch" and table.attrs["batches"] == 3
    for i, x in enumerate(xs.values()):
        for j, y in enumerate(ys.values()):
            grams = [(gram(x[r]), gram(y[r])) for r in batches]
            cross = sum(ref.hsic(k, l, True) for k, l in grams)
            own = sum(ref.hsic(k, k, True) for k, _ in grams) * sum(ref.hsic(l, l, True) for _, l in grams)
            assert table.iloc[i, j] == pytest.approx(cross / np.sqrt(own), abs=1e-9)


def test_minibatch_rejects_batches_below_four_rows():
    xs, _ = latent_layers(6)
    with pytest.raises(CKAProbeError, match="at least 4 rows"):
        MinibatchCKA(list(xs)).update({k: v[:3] for k, v in xs.items()})
