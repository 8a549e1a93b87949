"""Coverage of the bootstrap intervals for linear CKA, simulated against a known population CKA.

Each regime draws Gaussian representations whose population linear CKA is
known in closed form (:mod:`cka_probe.inference.simulate`), ``--reps`` times; each
data set gets ``--boot`` group bootstrap resamples (whole utterances), and
every method's nominal 95 % interval is checked against the truth. Methods:

* ``percentile``: tie-corrected biased CKA, percentile interval (the old cross-task one)
* ``pct-plain``: biased CKA without the tie correction, percentile (the old ``bootstrap_ci``)
* ``basic``, ``bc``, ``bca``: tie-corrected biased CKA, basic / bias-corrected / BCa interval
* ``deb-pct``, ``deb-basic``, ``deb-bca``: tie-corrected debiased CKA over rows, percentile / basic / BCa
  interval
  (the cross-task tables' estimator, on one row per utterance)
* ``grp-pct``: debiased CKA over distinct groups (:mod:`cka_probe.measures.grouped`), percentile interval
  (``bootstrap_ci``'s; the same as ``deb-pct``'s estimate where every group is one row)

The methods the analysis does not use (``pct-plain``, ``deb-*``, the hierarchical bootstrap below)
are :mod:`cka_probe.inference.baselines`.

A second table checks the pooled interval of the CKA tables over K seed
replicates (:func:`cka_probe.inference.simulate.draw_seeds`: the utterances' signal
shared, each seed's noises its own and its target noise scaled by e^{τξ}, so
the population CKA varies between seeds; the target is its mean over seeds):
the percentile interval of the hierarchical bootstrap's draws and of the
tables' pooled draws (:func:`cka_probe.inference.seeds.pooled_draws`).

A third table checks the CER-gap intervals of ``cka_probe.study.cer`` (the
DO − SO difference of two corpus CERs over the same utterances, a ratio of
sums) on simulated per-utterance errors with a known population gap
(:mod:`cka_probe.inference.cer_regime`: Poisson errors with a difficulty shared
by both models, heavier tails at ``shape`` 0.5 and with bursts, and K training
seeds whose DO error rates spread by τ). Methods on the same paired bootstrap
draws, pooled over seeds by the hierarchical bootstrap: ``percentile``,
``basic``, ``bca``; and ``student``, the tables' interval
(:func:`cka_probe.inference.effects.student_rows`: Student's t on the bootstrap
s.e.; over seeds, Banerjee's interval on the seed and utterance parts of the variance). It runs ``--cer-reps``
data sets
per regime with ``--cer-boot`` resamples each (the tables' default, 1,000).

Regimes: one CKA (``cka``) or the difference of two CKAs sharing x (``Δ``);
n utterances × frames, within-utterance correlation ρ, width d. The binomial
standard error of a coverage over R data sets is √(0.95 · 0.05 / R) (1.5 points at R = 200).
Usage: python benchmarks/bench_coverage.py [--reps 200] [--boot 200] [--cer-reps 2000]
       [--cer-boot 1000] [--full] [--part all|cka|seeds|cer]
(``--full``: the whole grid, population CKA 0.1–0.95, n = 50–2,000, d = 8–512; hours on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cka_probe.inference import intervals
from cka_probe.inference.baselines import copies_cka, debiased_weighted_cka, hierarchical_draws
from cka_probe.inference.cer_regime import CERRegime, draw_errors
from cka_probe.inference.effects import student_rows
from cka_probe.inference.resampling import bootstrap_counts
from cka_probe.inference.seeds import pooled_draws
from cka_probe.inference.simulate import Regime, draw, draw_seeds, population_cka, seed_mean_cka
from cka_probe.measures.grouped import grouped_linear_cka
from cka_probe.measures.weighted import weighted_linear_cka
from cka_probe.study.cer import gap_draws

QUICK = [
    Regime((0.1,), n=50, d=8),  # the regime of the coverage test
    # frames grouped by utterance, as the old 77 % measurement
    Regime((0.45,), n=100, d=6, frames=12, rho=0.8),
    Regime((0.1,), n=50, d=16, frames=10, rho=0.7),  # weakly related frames of few utterances
    Regime((0.2,), n=150, d=96),  # as the old 82 % cross-task measurement
    Regime((0.8,), n=150, d=96),
    Regime((0.95,), n=400, d=32),
    Regime((0.6, 0.5), n=150, d=32),  # a difference of two CKAs sharing x (the lean)
]
FULL = (
    [Regime((c,), n=n, d=d) for c in (0.1, 0.3, 0.6, 0.95) for n in (50, 400, 2000) for d in (8, 64, 512)]
    + [Regime((c,), n=n, d=16, frames=10, rho=0.7) for c in (0.1, 0.5, 0.9) for n in (50, 400)]
    + [Regime((0.6, 0.5), n=n, d=d) for n in (50, 400) for d in (8, 128)]
)
METHODS = ("percentile", "pct-plain", "basic", "bc", "bca", "deb-pct", "deb-basic", "deb-bca", "grp-pct")


def method_intervals(x, ys, groups, boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(targets, 2) intervals per method for one data set; a difference of two targets is the second row."""
    g = groups.max() + 1

    def stat(weights_g, debiased, tie=True):
        """(B, 1) values of resamples with group multiplicities ``weights_g (B, G)``: the CKA or the
        difference.

        ``debiased="groups"``: the estimator over distinct groups.
        """
        w = weights_g[:, groups]

        def one(y):
            if debiased == "groups":
                return grouped_linear_cka(x, y, groups, weights_g)
            if not tie:
                return copies_cka(x, y, w)
            return debiased_weighted_cka(x, y, w) if debiased else weighted_linear_cka(x, y, w)

        values = [one(y) for y in ys]
        return (values[0] if len(ys) == 1 else values[0] - values[1])[:, None]

    draws_w = bootstrap_counts(rng, g, boot).astype(float)
    ones = np.ones((1, g))
    est, est_d = stat(ones, False)[0], stat(ones, True)[0]
    biased, plain, debiased = stat(draws_w, False), stat(draws_w, False, tie=False), stat(draws_w, True)
    jack, jack_d = stat(1.0 - np.eye(g), False), stat(1.0 - np.eye(g), True)
    return {
        "percentile": intervals.percentile_interval(biased),
        "pct-plain": intervals.percentile_interval(plain),
        "basic": intervals.basic_interval(biased, est),
        "bc": intervals.bca_interval(biased, est),
        "bca": intervals.bca_interval(biased, est, jack),
        "deb-pct": intervals.percentile_interval(debiased),
        "deb-basic": intervals.basic_interval(debiased, est_d),
        "deb-bca": intervals.bca_interval(debiased, est_d, jack_d),
        "grp-pct": intervals.percentile_interval(stat(draws_w, "groups")),
    }


def coverage(regime: Regime, reps: int, boot: int, seed: int) -> dict[str, float]:
    """Share of data sets whose interval holds the population value, per method."""
    truth = population_cka(regime)
    truth = truth if len(truth) == 1 else truth[:1] - truth[1:2]
    hits = dict.fromkeys(METHODS, 0)
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        x, ys, groups = draw(regime, rng)
        for method, (low, high) in method_intervals(x, ys, groups, boot, rng).items():
            hits[method] += int(low[0] <= truth[0] <= high[0])
    return {m: h / reps for m, h in hits.items()}


SEED_REGIMES = [  # (regime, seeds K, training spread τ of the target's noise scale)
    (Regime((0.5,), n=100, d=16), 3, 0.0),
    (Regime((0.5,), n=100, d=16), 3, 0.3),
    (Regime((0.9,), n=100, d=16), 3, 0.3),
    (Regime((0.1,), n=50, d=8), 3, 0.0),
    (Regime((0.95,), n=400, d=32), 3, 0.1),
    (Regime((0.5,), n=100, d=16), 2, 0.1),
]


def seed_coverage(
    regime: Regime, seeds: int, tau: float, reps: int, boot: int, seed: int
) -> dict[str, float]:
    """Coverage of the mean over seeds of debiased CKA (one row per utterance) by the percentile interval
    of the hierarchical bootstrap's draws and of the tables' pooled draws."""
    truth, g = seed_mean_cka(regime, tau), regime.n
    rng = np.random.default_rng(seed)
    hits = {"hierarchical": 0, "pooled": 0}
    for _ in range(reps):
        xs, ys = draw_seeds(regime, seeds, tau, rng)
        w = bootstrap_counts(rng, g, boot).astype(float)
        estimates = np.array([debiased_weighted_cka(x, y, np.ones(g)) for x, y in zip(xs, ys)])
        draws = np.stack([debiased_weighted_cka(x, y, w) for x, y in zip(xs, ys)])
        key = int(rng.integers(2**31))
        for method, pooled in (
            ("hierarchical", hierarchical_draws(draws, seed=key)),
            ("pooled", pooled_draws(draws, estimates, seed=key)),
        ):
            low, high = intervals.percentile_interval(pooled)
            hits[method] += int(low <= truth <= high)
    return {m: h / reps for m, h in hits.items()}


CER_REGIMES = [
    CERRegime(150, 0.08, 0.10),
    CERRegime(300, 0.04, 0.045),
    CERRegime(50, 0.05, 0.08),
    CERRegime(50, 0.05, 0.08, shape=1.0),  # skewness 1.6, kurtosis 6.5: the tiny run's most skewed bins
    CERRegime(50, 0.05, 0.08, shape=0.5),  # skewness 2.6, kurtosis 14: beyond any bin of the tiny run
    CERRegime(100, 0.05, 0.08, shape=0.5),
    CERRegime(50, 0.05, 0.08, shape=0.5, burst=0.05),
    CERRegime(400, 0.05, 0.06, shape=0.5, burst=0.05),
    CERRegime(50, 0.02, 0.03, shape=0.5),  # few errors: most utterances have none
    CERRegime(50, 0.05, 0.08, seeds=3),
    CERRegime(50, 0.05, 0.08, seeds=3, tau=0.01),
    CERRegime(50, 0.05, 0.08, seeds=3, tau=0.03),  # training variance dominates
    CERRegime(50, 0.05, 0.08, shape=1.0, seeds=3, tau=0.01),
    CERRegime(50, 0.05, 0.08, seeds=2, tau=0.01),
]
CER_METHODS = ("percentile", "basic", "bca", "student")


def cer_intervals(regime: CERRegime, boot: int, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Each method's interval of the seed-mean gap for one data set, from the tables' draws."""
    e_so, e_do, length = draw_errors(regime, rng)
    gaps = 100 * (e_do.sum(1) - e_so.sum(1)) / length.sum()  # (K,)
    shared = int(rng.integers(2**32))  # every seed resamples the same utterances, as the tables do
    draws = np.stack(
        [gap_draws(s, d, length, np.random.default_rng(shared), boot) for s, d in zip(e_so, e_do)]
    )
    pooled, gap = hierarchical_draws(draws, seed=shared), gaps.mean()
    mean_d = (e_do - e_so).mean(0)
    jack = 100 * (mean_d.sum() - mean_d) / (length.sum() - length)
    table = student_rows(gaps[:, None], draws[:, :, None], n=regime.n).iloc[-1]
    return {
        "percentile": intervals.percentile_interval(pooled),
        "basic": intervals.basic_interval(pooled, gap),
        "bca": intervals.bca_interval(pooled, gap, jack),
        "student": (table.ci_low, table.ci_high),
    }


def cer_coverage(regime: CERRegime, reps: int, boot: int, seed: int) -> dict[str, float]:
    """Share of data sets whose CER-gap interval holds the population gap, per method."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(CER_METHODS, 0)
    for _ in range(reps):
        for method, (low, high) in cer_intervals(regime, boot, rng).items():
            hits[method] += int(low <= regime.gap <= high)
    return {m: h / reps for m, h in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="data sets per regime (default 200)")
    parser.add_argument(
        "--boot", type=int, default=200, help="bootstrap resamples per data set (default 200)"
    )
    parser.add_argument(
        "--cer-reps", type=int, default=2000, help="data sets per CER-gap regime (default 2000)"
    )
    parser.add_argument(
        "--cer-boot", type=int, default=1000, help="resamples per CER-gap data set (default 1000)"
    )
    parser.add_argument("--full", action="store_true", help="the whole regime grid (long)")
    parser.add_argument(
        "--part",
        choices=("all", "cka", "seeds", "cer"),
        default="all",
        help="one table only: CKA (10 min at --reps 400), CKA over seeds (2 min), CER gap (5 min)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"nominal 95 %, {args.reps} data sets per regime (binomial s.e. "
        f"{100 * np.sqrt(0.95 * 0.05 / args.reps):.1f} points), {args.boot} bootstrap resamples"
    )
    if args.part in ("all", "cka"):
        print(f"\n{'regime':<34}" + "".join(f"{m:>11}" for m in METHODS) + f"{'seconds':>9}")
    for k, regime in enumerate(FULL if args.full else QUICK if args.part in ("all", "cka") else []):
        start = time.perf_counter()
        result = coverage(regime, args.reps, args.boot, args.seed + k)
        kind = f"Δ {regime.ckas[0]}-{regime.ckas[1]}" if len(regime.ckas) > 1 else f"cka {regime.ckas[0]}"
        frames = f" ×{regime.frames} ρ={regime.rho}" if regime.frames > 1 else ""
        label = f"{kind} n={regime.n}{frames} d={regime.d}"
        print(
            f"{label:<34}"
            + "".join(f"{100 * result[m]:>10.1f}%" for m in METHODS)
            + f"{time.perf_counter() - start:>9.1f}",
            flush=True,
        )
    if args.part in ("all", "seeds"):
        print(f"\nCKA over seeds, {args.reps} data sets per regime, {args.boot} bootstrap resamples")
        print(f"{'regime':<34}{'hierarchical':>13}{'pooled':>11}{'seconds':>9}")
        for k, (regime, seeds, tau) in enumerate(SEED_REGIMES):
            start = time.perf_counter()
            result = seed_coverage(regime, seeds, tau, args.reps, args.boot, args.seed + 200 + k)
            label = f"cka {regime.ckas[0]} n={regime.n} d={regime.d} K={seeds} τ={tau}"
            print(
                f"{label:<34}{100 * result['hierarchical']:>12.1f}%{100 * result['pooled']:>10.1f}%"
                f"{time.perf_counter() - start:>9.1f}",
                flush=True,
            )
    if args.part not in ("all", "cer"):
        return
    print(
        f"\nCER gap, {args.cer_reps} data sets per regime (binomial s.e. "
        f"{100 * np.sqrt(0.95 * 0.05 / args.cer_reps):.1f} points), {args.cer_boot} bootstrap resamples"
    )
    print(f"{'regime':<40}" + "".join(f"{m:>11}" for m in CER_METHODS) + f"{'seconds':>9}")
    for k, regime in enumerate(CER_REGIMES):
        start = time.perf_counter()
        result = cer_coverage(regime, args.cer_reps, args.cer_boot, args.seed + 100 + k)
        print(
            f"{regime.label:<40}"
            + "".join(f"{100 * v:>10.1f}%" for v in result.values())
            + f"{time.perf_counter() - start:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
