"""Turn HSIC terms into the layer-by-layer CKA table that every engine function returns."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures.hsic import HSICTerms, cka_from_hsic


def undefined_message(labels: Sequence[str], n: int) -> str:
    """One line naming the layers whose self-HSIC is not positive (CKA undefined) and what to do."""
    return (
        f"{', '.join(labels)}: self-HSIC is not positive at n={n} rows, so CKA is undefined; "
        "use more rows or the biased estimator"
    )


def defined_cka(terms: HSICTerms, labels_x: Sequence[str], labels_y: Sequence[str]) -> torch.Tensor:
    """CKA ``(Lx, Ly)`` of ``terms`` (``cka_from_hsic``); a ``CKAProbeError`` naming the layers where it is
    undefined."""
    cka, bad_x, bad_y = cka_from_hsic(terms.cross, terms.self_x, terms.self_y)
    bad = [label for label, b in zip([*labels_x, *labels_y], bad_x.tolist() + bad_y.tolist()) if b]
    if bad:
        raise CKAProbeError(undefined_message(bad, terms.n))
    return cka


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

    A layer whose self-HSIC is not positive is a ``CKAProbeError`` naming it, so
    no cell is NaN. ``attrs`` records how the numbers were computed.
    """
    cka = defined_cka(terms, [f"x layer {name}" for name in names_x], [f"y layer {name}" for name in names_y])
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
