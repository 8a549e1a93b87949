"""The entanglement summary: what the cross-task tables say, layer by layer, per language.

Encoder: how much the shared DO encoder resembles each single-output encoder,
CKA(DO, SSO) and CKA(DO, MSO) at layer i, and the lean
CKA(DO, SSO) − CKA(DO, MSO) (positive: the shared encoder is closer to the
surface model). Decoder: how much each DO decoder keeps of its SO counterpart,
CKA(SSO, SDO) and CKA(MSO, MDO) at layer j, against how much it resembles the
other task's SO decoder; the pull CKA(other) − CKA(own) is positive where a
DO decoder has moved toward the other task.

Every difference is paired: the comparisons of one language share their
bootstrap resamples of utterances, so the difference of the draws is the
bootstrap distribution of the difference (percentile interval, two-sided p).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cka_probe.cka import resample
from cka_probe.analyze.cross_task import CrossTaskResult, diagonal


def _difference(result: CrossTaskResult, part: str, first: str, second: str, level: float) -> pd.DataFrame:
    """Diagonal CKA of ``first`` and ``second`` and their paired difference with interval and p."""
    table = diagonal(result.table[result.table["part"] == part]).set_index(["comparison", "index_a"])["cka"]
    a, b = table[first], table[second]
    layers = a.index.intersection(b.index).to_numpy()
    delta = result.draws[part, first][:, layers, layers] - result.draws[part, second][:, layers, layers]
    low, high = resample.percentile_interval(delta, level) if len(delta) else (np.nan, np.nan)
    names = diagonal(result.table[(result.table["part"] == part) & (result.table["comparison"] == first)])
    a, b = a[layers].to_numpy(), b[layers].to_numpy()
    return pd.DataFrame({
        "language": result.table["language"].iloc[0], "index": layers,
        "layer": names.set_index("index_a").loc[layers, "layer_a"].to_numpy(), first: a, second: b, "difference": a - b,
        "ci_low": low, "ci_high": high, "p": resample.bootstrap_pvalue(delta) if len(delta) else np.nan,
    })  # fmt: skip


def encoder_entanglement(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language and encoder layer: CKA(DO, SSO), CKA(DO, MSO) and the lean (their difference)."""
    frames = [_difference(r, "encoder", "DO-SSO", "DO-MSO", level) for r in results.values()]
    return pd.concat(frames, ignore_index=True).rename(columns={"difference": "lean"})


def decoder_departure(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language, DO decoder and layer: CKA to its own SO decoder, to the other one, and the pull."""
    frames = []
    for result in results.values():
        for decoder, other, own in (("SDO", "MSO-SDO", "SSO-SDO"), ("MDO", "SSO-MDO", "MSO-MDO")):
            frame = _difference(result, "decoder", other, own, level)
            frames.append(frame.rename(columns={other: "cka_other", own: "cka_own", "difference": "pull"})
                          .assign(decoder=decoder))  # fmt: skip
    columns = ["language", "decoder", "index", "layer", "cka_own", "cka_other", "pull", "ci_low", "ci_high", "p"]
    return pd.concat(frames, ignore_index=True)[columns]
