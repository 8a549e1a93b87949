"""A probe fitted on one training fold, its regulariser chosen by an inner grouped cross-validation.

The estimator is ``Pipeline(StandardScaler, model)``, so the features are
standardised with the training fold's means and deviations only; scikit-learn's
``GridSearchCV`` picks the regulariser on ``GroupKFold`` splits of the
training fold's own groups (nested cross-validation: the held-out fold never
chooses it) and refits on the whole training fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cka_probe.probe.groups import inner_splitter

INNER_SPLITS = 3
"""Folds of the inner cross-validation."""


def nested_fit(
    model: Any, grid: dict[str, list[float]], x: np.ndarray, y: np.ndarray, groups: np.ndarray, scoring: str
) -> GridSearchCV:
    """``GridSearchCV`` over ``grid`` (``{model parameter: values}``) of ``StandardScaler`` + ``model``,
    fitted on ``x (n, D)``, ``y (n,)`` or ``(n, K)`` with inner folds grouped by ``groups (n,)``."""
    pipeline = make_pipeline(StandardScaler(), model)
    step = pipeline.steps[-1][0]
    search = GridSearchCV(
        pipeline,
        {f"{step}__{name}": values for name, values in grid.items()},
        cv=inner_splitter(groups, INNER_SPLITS),
        scoring=scoring,
    )
    return search.fit(x, y, groups=groups)


def chosen(search: GridSearchCV, name: str) -> float:
    """The value of parameter ``name`` that the inner cross-validation chose."""
    return float(next(v for k, v in search.best_params_.items() if k.endswith(f"__{name}")))
