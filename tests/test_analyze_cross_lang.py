"""Per-layer differences between languages, with bootstrap intervals."""

import numpy as np
import pytest
from helpers import representations

from cka_probe.errors import CKAProbeError
from cka_probe.study.cross_lang import DIFF_COLUMNS, language_differences
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.schema import pooled


def analyse(reps, language):
    return cross_task_arrays(reps, language=language, n_boot=100, n_perm=0, progress=False)


def test_entangled_encoder_differs_from_an_independent_one():
    rng = np.random.default_rng(0)
    n = 60
    entangled = representations(rng, n)
    entangled["do"]["encoder"] = {
        k: v + 0.1 * rng.standard_normal(v.shape) for k, v in entangled["sso"]["encoder"].items()
    }
    separate = representations(rng, n)
    diff = pooled(language_differences({"ko": analyse(separate, "ko"), "en": analyse(entangled, "en")}))
    assert list(diff.columns) == list(DIFF_COLUMNS)
    assert (diff.language_a == "en").all() and (diff.language_b == "ko").all()
    do_sso = diff[(diff.part == "encoder") & (diff.comparison == "DO-SSO")]
    assert list(do_sso["index"]) == [0, 1, 2]
    np.testing.assert_allclose(do_sso["diff"], do_sso.cka_a - do_sso.cka_b)
    assert (do_sso.ci_low > 0.3).all() and (do_sso.p < 0.02).all()
    assert ((diff.ci_low <= diff["diff"]) & (diff["diff"] <= diff.ci_high)).all()


def test_identical_data_in_two_languages_differ_by_zero_within_the_interval():
    reps = representations(np.random.default_rng(1), 40)
    diff = pooled(language_differences({"en": analyse(reps, "en"), "ko": analyse(reps, "ko")}))
    np.testing.assert_allclose(diff["diff"], 0.0, atol=1e-12)
    assert ((diff.ci_low <= 0) & (diff.ci_high >= 0)).all()
    assert len(diff) == 3 * 3 + 6 * 2


def test_one_language_is_an_error():
    rng = np.random.default_rng(2)
    with pytest.raises(CKAProbeError, match="needs two languages"):
        language_differences({"en": analyse(representations(rng, 10), "en")})
