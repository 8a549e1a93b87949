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
bootstrap distribution of the difference (the interval of
:meth:`~cka_probe.inference.resample_measures.ResampledMeasure.interval`: for CKA
:func:`~cka_probe.inference.intervals.cka_interval`; two-sided p, BH-adjusted over the
layers). Rows per seed and pooled over seeds (:mod:`cka_probe.inference.effects`).

:func:`reference_gaps`: per layer, how far DO~SSO and DO~MSO lie from the
seed-to-seed ceiling SSO~SSO′ and above the random-initialisation floor
SSO~RAND (pooled draws; an interval that includes 0 means indistinguishable).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cka_probe.inference.effects import effect_rows
from cka_probe.study.cross_task import CrossTaskResult
from cka_probe.study.schema import CEILING, EFFECT_COLUMNS, FLOOR_NAME, VALUE, diagonal, pooled


def interval_of(result: CrossTaskResult, level: float):
    """The interval of the result's measure and estimator at ``level``, for differences of its draws."""
    return lambda draws, estimate: result.statistics.interval(draws, estimate, level)


def _difference(result: CrossTaskResult, part: str, first: str, second: str, level: float) -> pd.DataFrame:
    """Diagonal CKA of ``first`` and ``second`` and their paired difference, per seed and pooled."""
    table = pooled(diagonal(result.table[result.table["part"] == part])).set_index(["comparison", "index_a"])
    layers = table.loc[first].index.intersection(table.loc[second].index).to_numpy()
    a, b = (part, first), (part, second)
    cka_a, cka_b = (result.seed_estimates[k][:, layers, layers] for k in (a, b))
    if len(cka_a) == len(cka_b):  # the same seeds on both sides: a difference per seed
        estimates = cka_a - cka_b
        draws = result.seed_draws[a][:, :, layers, layers] - result.seed_draws[b][:, :, layers, layers]
        sides = [(cka_a[k], cka_b[k]) for k in range(len(estimates))]
    else:  # e.g. against the ceiling's K − 1 seed pairs: only the pooled draws pair
        estimates = (cka_a.mean(0) - cka_b.mean(0))[None]
        draws = (result.draws[a] - result.draws[b])[None][:, :, layers, layers]
        sides = [(np.full(len(layers), np.nan),) * 2]
    out = effect_rows(estimates, draws, interval=interval_of(result, level), key=f"{part}/{first}-{second}")
    sides.append((cka_a.mean(0), cka_b.mean(0)))
    out[first], out[second] = (np.concatenate(side) for side in zip(*sides))
    names = table.loc[first].loc[layers, "layer_a"].to_numpy()
    return out.assign(
        language=result.table["language"].iloc[0],
        index=layers[out["cell"]],
        layer=names[out["cell"]],
        n=int(result.table["n"].iloc[0]),
    ).rename(columns={"estimate": "difference"})


def encoder_entanglement(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language and encoder layer: CKA(DO, SSO), CKA(DO, MSO) and the lean (their difference)."""
    frames = [_difference(r, "encoder", "DO-SSO", "DO-MSO", level) for r in results.values()]
    columns = [
        "language",
        "seed",
        "seeds",
        "index",
        "layer",
        "DO-SSO",
        "DO-MSO",
        "lean",
        *EFFECT_COLUMNS,
        "n",
    ]
    return pd.concat(frames, ignore_index=True).rename(columns={"difference": "lean"})[columns]


def decoder_departure(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language, DO decoder and layer: CKA to its own SO decoder, to the other one, and the pull."""
    frames = []
    for result in results.values():
        for decoder, other, own in (("SDO", "MSO-SDO", "SSO-SDO"), ("MDO", "SSO-MDO", "MSO-MDO")):
            frame = _difference(result, "decoder", other, own, level)
            frames.append(
                frame.rename(columns={other: "cka_other", own: "cka_own", "difference": "pull"}).assign(
                    decoder=decoder
                )
            )
    columns = [
        "language",
        "decoder",
        "seed",
        "seeds",
        "index",
        "layer",
        "cka_own",
        "cka_other",
        "pull",
        *EFFECT_COLUMNS,
        "n",
    ]
    return pd.concat(frames, ignore_index=True)[columns]


def reference_gaps(results: Mapping[str, CrossTaskResult], *, level: float = 0.95) -> pd.DataFrame:
    """Per language, part and layer: comparison − ceiling (SSO~SSO′) and comparison − floor (SSO~RAND),
    pooled.

    Comparisons: DO-SSO and DO-MSO (encoder), SSO-SDO and MSO-MDO (decoder),
    for the references that the run has. Columns ``language, part, comparison,
    reference, index, layer, value, cka_reference, difference, ci_low, ci_high, p, p_adj, n``.
    """
    frames = []
    for result in results.values():
        present = set(result.draws)
        for part, names in (("encoder", ("DO-SSO", "DO-MSO")), ("decoder", ("SSO-SDO", "MSO-MDO"))):
            for name in names:
                for reference in (CEILING, FLOOR_NAME):
                    if (part, reference) in present:
                        rows = _difference(result, part, name, reference, level)
                        frames.append(
                            pooled(rows)
                            .rename(columns={name: VALUE, reference: "cka_reference"})
                            .assign(part=part, comparison=name, reference=reference)
                        )
    columns = [
        "language",
        "part",
        "comparison",
        "reference",
        "index",
        "layer",
        VALUE,
        "cka_reference",
        "difference",
        "ci_low",
        "ci_high",
        "p",
        "p_adj",
        "n",
    ]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
