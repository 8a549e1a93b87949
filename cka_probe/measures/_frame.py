"""Turn HSIC terms into the layer-by-layer CKA table that every engine function returns."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd
import torch

from cka_probe.measures.hsic import HSICTerms, cka_from_hsic


def undefined_message(labels: Sequence[str]) -> str:
    """One line naming the layers whose CKA is undefined."""
    return (
        f"CKA is undefined for {', '.join(labels)}: constant representation "
        "(every row identical) or non-positive self-HSIC"
    )


def result_frame(
    terms: HSICTerms,
    names_x: Sequence,
    names_y: Sequence,
    *,
    estimator: str,
    kernel: str,
    sigma: float | None,
    dims_x: Sequence[int],
    dims_y: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
) -> pd.DataFrame:
    """CKA ``(Lx, Ly)`` as a DataFrame (rows = ``names_x``, columns = ``names_y``).

    Undefined cells are NaN and one ``RuntimeWarning`` names their layers.
    ``attrs`` records how the numbers were computed.
    """
    cka, bad_x, bad_y = cka_from_hsic(
        terms.cross, terms.self_x, terms.self_y, terms.constant_x, terms.constant_y
    )
    bad = [f"x layer {name}" for name, b in zip(names_x, bad_x.tolist()) if b]
    bad += [f"y layer {name}" for name, b in zip(names_y, bad_y.tolist()) if b]
    if bad:
        warnings.warn(undefined_message(bad) + "; its cells are NaN", RuntimeWarning, stacklevel=3)
    frame = pd.DataFrame(cka.cpu().numpy(), index=list(names_x), columns=list(names_y))
    frame.attrs = {
        "estimator": estimator,
        "kernel": kernel,
        "sigma": sigma,
        "n": terms.n,
        "dims_x": dict(zip(map(str, names_x), map(int, dims_x))),
        "dims_y": dict(zip(map(str, names_y), map(int, dims_y))),
        "space": terms.space,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
    }
    if any(b is not None for b in terms.bandwidth_x):
        frame.attrs["rbf_sq_sigma_x"] = dict(zip(map(str, names_x), terms.bandwidth_x))
        frame.attrs["rbf_sq_sigma_y"] = dict(zip(map(str, names_y), terms.bandwidth_y))
    return frame
