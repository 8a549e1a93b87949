"""The entanglement summary: paired differences of the cross-task diagonals."""

import numpy as np
from helpers import representations

from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.schema import diagonal, pooled
from cka_probe.study.summary import decoder_departure, encoder_entanglement


def test_encoder_lean_and_decoder_pull_follow_the_built_structure():
    rng = np.random.default_rng(0)
    reps = representations(rng, 40)
    reps["do"]["encoder"] = {
        k: v + 0.2 * rng.standard_normal(v.shape) for k, v in reps["sso"]["encoder"].items()
    }
    reps["do"]["decoder/meaning"] = {
        k.replace("surface", "meaning"): v.copy() for k, v in reps["sso"]["decoder/surface"].items()
    }
    result = cross_task_arrays(reps, language="en", n_boot=100, n_perm=0, progress=False)
    enc = pooled(encoder_entanglement({"en": result}))
    diag = pooled(diagonal(result.table)).set_index(["part", "comparison", "index_a"]).sort_index().value
    np.testing.assert_allclose(enc.lean, enc["DO-SSO"] - enc["DO-MSO"])
    np.testing.assert_allclose(enc["DO-SSO"], diag["encoder", "DO-SSO"].to_numpy())
    assert (enc.ci_low > 0.3).all() and (enc.p < 0.02).all()
    assert ((enc.ci_low <= enc.lean) & (enc.lean <= enc.ci_high)).all()
    dec = pooled(decoder_departure({"en": result})).set_index(["decoder", "index"])
    np.testing.assert_allclose(dec.loc["MDO", "cka_other"], 1.0)
    assert (dec.loc["MDO", "pull"] > 0.5).all() and (dec.loc["MDO", "ci_low"] > 0).all()
    assert (dec.loc["SDO", "ci_low"] < 0).all() and (dec.loc["SDO", "ci_high"] > 0).all()
