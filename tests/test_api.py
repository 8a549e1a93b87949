"""The top-level API of docs/design.md: ``from cka_probe import linear_cka, kernel_cka, cka_matrix,
ActivationStore, extract``."""

from __future__ import annotations

import numpy as np
from helpers import IntegerLinearStack, integer_batches

import cka_probe
from cka_probe import ActivationStore, cka_matrix, extract, kernel_cka, linear_cka


def test_extract_name_is_callable_and_keeps_the_subpackage_importable(tmp_path):
    from cka_probe.extract import asr as bundled

    model = IntegerLinearStack()
    batches, utterances = integer_batches(n_batches=2)
    out = extract(model, batches, layers=["net.0"], out=tmp_path / "acts.h5", progress=False)
    with ActivationStore(out) as store:
        assert store.ids == list(utterances)
    assert callable(bundled.extract_checkpoint)


def test_top_level_engine_names_agree_with_the_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = x @ rng.normal(size=(4, 3)) + rng.normal(size=(50, 3))
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = np.sum((yc.T @ xc) ** 2) / np.sqrt(np.sum((xc.T @ xc) ** 2) * np.sum((yc.T @ yc) ** 2))
    assert abs(linear_cka(x, y) - want) < 1e-12
    assert abs(cka_matrix({"x": x}, {"y": y}).loc["x", "y"] - want) < 1e-12
    assert abs(kernel_cka(x, y, kernel="linear") - want) < 1e-10
    assert set(cka_probe.__all__) >= {"linear_cka", "kernel_cka", "cka_matrix", "ActivationStore", "extract"}
