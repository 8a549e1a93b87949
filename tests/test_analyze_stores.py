"""The cross-task set read from activation stores written with the store's own writer."""

import numpy as np
import pytest
from helpers import N_UTT, write_store

from cka_probe.errors import CKAProbeError
from cka_probe.study.cross_lang import cross_lang
from cka_probe.study.cross_task import cross_task
from cka_probe.study.schema import diagonal, pooled


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """en: DO encoder identical to SSO's, utterances stored in reverse order; ko: all independent."""
    root = tmp_path_factory.mktemp("acts")
    for language, do_seed in (("en", 1), ("ko", 4)):
        (root / language).mkdir()
        write_store(root / language / "sso.h5", "sso", language, encoder_seed=1, seed=1)
        write_store(root / language / "mso.h5", "mso", language, encoder_seed=2, seed=2)
        write_store(
            root / language / "do.h5",
            "do",
            language,
            encoder_seed=do_seed,
            order=np.arange(N_UTT)[::-1],
            seed=3,
        )
    return root


def test_roles_and_alignment_by_id_give_cka_one_where_encoders_are_identical(run_dir):
    table = cross_task([run_dir], n_boot=20, n_perm=20, progress=False)
    assert set(table.language) == {"en", "ko"} and (table.n == N_UTT).all()
    en = pooled(diagonal(table.query("language == 'en' and part == 'encoder' and comparison == 'DO-SSO'")))
    np.testing.assert_allclose(en.value, 1.0, atol=1e-6)
    ko = diagonal(table.query("language == 'ko' and part == 'encoder' and comparison == 'DO-SSO'"))
    assert (ko.value < 0.9).all()
    assert list(en.layer_a) == ["encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]


def test_cross_lang_differences_show_the_entangled_language(run_dir):
    table, diff = cross_lang([run_dir], n_boot=50, n_perm=0, progress=False)
    do_sso = pooled(diff.query("part == 'encoder' and comparison == 'DO-SSO'"))
    assert (do_sso.language_a == "en").all() and (do_sso.ci_low > 0).all()
    assert len(table) == len(cross_task([run_dir], n_boot=0, n_perm=0, progress=False))


def test_missing_role_names_the_language(tmp_path, run_dir):
    for role in ("sso", "mso"):
        (tmp_path / f"{role}.h5").write_bytes((run_dir / "en" / f"{role}.h5").read_bytes())
    with pytest.raises(CKAProbeError, match="language 'en': no DO model"):
        cross_task([tmp_path], progress=False)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(CKAProbeError, match="no .h5 stores"):
        cross_task([tmp_path], progress=False)
    with pytest.raises(CKAProbeError, match="nothing.h5: no such store"):
        cross_task([tmp_path / "nothing.h5"], progress=False)
