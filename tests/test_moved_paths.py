"""Old import paths (cka_probe.cka.*, cka_probe.analyze.*) keep working for one release, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from cka_probe import _moved
from cka_probe.inference import bootstrap, intervals
from cka_probe.measures import gram_resample, pair
from cka_probe.study.cross_task import COMPARISONS, cross_task_arrays


def fresh(name: str):
    """Import ``name`` as if for the first time (the old names are cached like any module)."""
    for cached in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[cached]
    return importlib.import_module(name)


@pytest.mark.parametrize(
    ("old", "attr", "new"),
    [
        ("cka_probe.cka", "linear_cka", pair.linear_cka),
        ("cka_probe.cka", "bootstrap_ci", bootstrap.bootstrap_ci),
        ("cka_probe.cka.stats", "permutation_test", bootstrap.permutation_test),
        ("cka_probe.cka.resample", "GramSet", gram_resample.GramSet),
        ("cka_probe.cka.resample", "cka_interval", intervals.cka_interval),
        ("cka_probe.analyze", "cross_task_arrays", cross_task_arrays),
        ("cka_probe.analyze.cross_task", "COMPARISONS", COMPARISONS),
    ],
)
def test_an_old_path_gives_the_new_object_and_a_deprecation_warning(old, attr, new):
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to"):
        module = fresh(old)
    assert getattr(module, attr) is new


def test_from_import_of_an_old_path_works_in_a_fresh_interpreter():
    """``from cka_probe.cka import linear_cka`` as a user's script has it, warnings as errors except ours."""
    code = (
        "import warnings; warnings.simplefilter('error');"
        "warnings.filterwarnings('always', category=DeprecationWarning, module='importlib');"
        "import numpy as np\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from cka_probe.cka import linear_cka\n"
        "x = np.arange(20.0).reshape(10, 2) ** 2\n"
        "print(round(linear_cka(x, x), 12), [str(w.message).split(';')[0] for w in caught])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1.0 ['cka_probe.cka has moved to cka_probe.measures and cka_probe.inference']"


def test_every_old_path_resolves_to_modules_that_exist():
    for old, targets in _moved.MOVED.items():
        for target in targets:
            assert importlib.util.find_spec(target) is not None, f"{old} -> {target}"


def test_an_unknown_name_on_an_old_path_is_an_attribute_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = fresh("cka_probe.cka.resample")
    with pytest.raises(AttributeError, match="no 'not_there'"):
        module.not_there  # noqa: B018


def test_old_resample_path_computes_what_the_new_one_does():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = fresh("cka_probe.cka.resample")
    a, b = old.GramSet({"x": x}), old.GramSet({"y": y})
    np.testing.assert_array_equal(
        old.point_estimate(a, b, debiased=True),
        gram_resample.point_estimate(
            gram_resample.GramSet({"x": x}), gram_resample.GramSet({"y": y}), debiased=True
        ),
    )


def test_old_names_that_became_the_registry_or_baselines_still_resolve():
    from cka_probe.inference.baselines import hierarchical_draws
    from cka_probe.measures.registry import names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert fresh("cka_probe.cka").MEASURES == names()
        assert fresh("cka_probe.cka.similarity").MEASURES == names()
        assert fresh("cka_probe.cka.hierarchical").hierarchical_draws is hierarchical_draws
    assert {"cka", "cca", "svcca", "pwcca", "procrustes", "procrustes_angle", "rsa"} <= set(names())
    with pytest.warns(DeprecationWarning, match="registry.names"):
        import cka_probe.measures

        cka_probe.measures.MEASURES  # noqa: B018
