"""Intervals of the probes: the grouped bootstrap, seed pooling and differences between models."""

from __future__ import annotations

import numpy as np
import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.probe.intervals import Outcome, StoreProbe, grouped_draws, probe_differences, summarise


def outcome(values, groups) -> Outcome:
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    return Outcome(values, np.array([f"w{i}" for i in range(len(values))]), groups)


def test_grouped_draws_are_means_of_whole_groups_drawn_with_replacement():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 7, 40)
    values = rng.random(40)
    draws = grouped_draws(outcome(values, groups), 50, seed=3)
    labels = np.unique(groups)
    picks = np.random.default_rng(3).integers(0, len(labels), (50, len(labels)))
    by_hand = [np.concatenate([values[groups == labels[g]] for g in pick]).mean() for pick in picks]
    np.testing.assert_allclose(draws, by_hand, rtol=1e-12)


def store(values_by_layer: dict[str, np.ndarray], groups: np.ndarray, name: str = "s") -> StoreProbe:
    return StoreProbe(
        name, "encoder", {layer: {"p": outcome(v, groups)} for layer, v in values_by_layer.items()}
    )


def test_differences_find_a_planted_gap_and_adjust_over_layers():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(60), 4)
    same = (rng.random(240) < 0.5).astype(float)
    a = store({"l0": same, "l1": (rng.random(240) < 0.9).astype(float)}, groups, "a")
    b = store({"l0": same, "l1": (rng.random(240) < 0.3).astype(float)}, groups, "b")
    table = probe_differences([a], [b], n_boot=500).set_index("layer")
    assert table.loc["l0", "estimate"] == 0 and table.loc["l0", "p"] == 1
    gap = table.loc["l1"]
    assert gap["ci_low"] <= 0.6 <= gap["ci_high"] and gap["ci_low"] > 0.4
    assert gap["p"] <= 2 / 500 and gap["p_adj"] == pytest.approx(min(1, 2 * gap["p"]))


def test_seeds_pool_to_their_mean_with_a_wider_interval():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(50), 3)
    seeds = [store({"l": (rng.random(150) < q).astype(float)}, groups) for q in (0.4, 0.6, 0.8)]
    pooled = summarise(seeds, n_boot=400).iloc[0]
    single = summarise(seeds[:1], n_boot=400).iloc[0]
    assert pooled["p"] == pytest.approx(np.mean([s.layers["l"]["p"].estimate for s in seeds]))
    assert pooled["seeds"] == 3 and pooled["p_hi"] - pooled["p_lo"] > single["p_hi"] - single["p_lo"]


def test_probes_of_different_words_are_not_compared():
    a = store({"l": np.ones(8)}, np.arange(8))
    b = StoreProbe(
        "b", "encoder", {"l": {"p": Outcome(np.ones(8), np.array([f"x{i}" for i in range(8)]), np.arange(8))}}
    )
    with pytest.raises(CKAProbeError, match="different words"):
        probe_differences([a], [b])
