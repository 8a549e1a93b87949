"""Every input format and option, broken on purpose: each case keeps the README's promise or is reported.

The fast tests run a seeded sample of each format's mutators (one case per
sampled mutator) and of the option values; the slow test runs every mutator
at 3 seeds and every option value. ``benchmarks/bench_fuzz.py`` runs the full
sweep with a table of counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from fuzz.cases import option_cases
from fuzz.oracle import Fuzzer, Outcome
from fuzz.seeds import build_seeds

FORMATS = ["checkpoint", "manifest", "audio", "store", "npz", "adapter", "whisper", "wav2vec2"]
SAMPLE = 5  # mutators per format in the fast tests


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory) -> Fuzzer:
    return Fuzzer(build_seeds(tmp_path_factory.mktemp("seeds")), tmp_path_factory.mktemp("cases"))


def assert_kept(outcomes: list[Outcome], fuzzer: Fuzzer) -> None:
    """No violation among ``outcomes`` nor among the clean runs, every violation listed."""
    bad = [o for o in fuzzer.clean_failures + outcomes if o.verdict in ("violation", "harness error")]
    assert not bad, "\n".join(o.line() for o in bad)


def sampled(names: list[str], k: int, key: str) -> list[str]:
    """``k`` of ``names``, drawn with a generator seeded by ``key``."""
    rng = np.random.default_rng(sum(key.encode()))
    return sorted(str(n) for n in rng.choice(sorted(names), min(k, len(names)), replace=False))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_sample_of_each_format_keeps_the_promise(fuzzer, fmt):
    if fmt not in fuzzer.formats:
        pytest.skip("the Hugging Face formats need transformers and safetensors")
    names = sampled(list(fuzzer.formats[fmt].mutators), SAMPLE, fmt)
    assert_kept([o for i, name in enumerate(names) if (o := fuzzer.case(fmt, name, i)) is not None], fuzzer)


def test_a_sample_of_option_values_keeps_the_promise(fuzzer):
    names = sampled([c.name for c in option_cases() if not c.name.startswith("train")], 8, "options")
    assert_kept(fuzzer.options(names), fuzzer)


@pytest.mark.slow
def test_every_mutator_and_option_keeps_the_promise(fuzzer):
    formats = [f for f in FORMATS if f in fuzzer.formats]
    outcomes = [o for fmt in formats for o in fuzzer.sweep(fmt, range(3))]
    assert_kept(outcomes + fuzzer.options(), fuzzer)
