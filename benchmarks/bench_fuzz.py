"""The full fuzz sweep: every mutator of every input format at seeds 0..N-1, and every option value.

    python benchmarks/bench_fuzz.py --cases 30            # the full sweep
    python benchmarks/bench_fuzz.py --cases 3 --formats npz store --no-options

Prints, per format, the inputs run (identical mutations are run once), the
successes the oracle accepts, the one-line refusals, the violations and the
harness errors, then one repro line per violation, grouped by reason. The
seed inputs are built from scratch in a temporary folder (or ``--work``).
Exit status 1 when there is any violation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.oracle import Fuzzer, Outcome  # noqa: E402
from fuzz.seeds import build_seeds  # noqa: E402

COLUMNS = ["inputs", "exit 0 ok", "exit 2 one-line", "violation", "harness error"]


def table(outcomes: list[Outcome]) -> str:
    """Counts of each verdict per format, and their totals."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        for key in (o.format, "all"):
            counts[key]["inputs"] += 1
            counts[key][o.verdict] += 1
    width = max(len(k) for k in counts) + 2
    lines = ["format".ljust(width) + "".join(c.rjust(17) for c in COLUMNS)]
    for fmt in sorted(counts, key=lambda k: (k == "all", k)):
        lines.append(fmt.ljust(width) + "".join(str(counts[fmt][c]).rjust(17) for c in COLUMNS))
    return "\n".join(lines)


def violations(outcomes: list[Outcome]) -> str:
    """Each violation's repro line, grouped by format and reason (the reason up to its first colon)."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.verdict in ("violation", "harness error"):
            groups[o.format, o.reason.split(":")[0]].append(o)
    parts = []
    for (fmt, reason), found in sorted(groups.items()):
        parts.append(f"\n[{fmt}] {reason} ({len(found)})")
        parts += [f"  {o.line()}" for o in found]
    return "\n".join(parts)


def sweep(fuzzer: Fuzzer, formats: list[str], cases: int, options: bool) -> list[Outcome]:
    """Every case of the sweep, the clean runs' failures included."""
    outcomes = []
    for fmt in formats:
        start = time.perf_counter()
        outcomes += fuzzer.sweep(fmt, range(cases))
        print(f"{fmt}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if options:
        start = time.perf_counter()
        outcomes += fuzzer.options()
        print(f"options: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return fuzzer.clean_failures + outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30, help="seeds per mutator (default 30)")
    parser.add_argument("--formats", nargs="*", help="formats to fuzz (default: all)")
    parser.add_argument("--no-options", action="store_true", help="skip the option cases")
    parser.add_argument("--work", type=Path, help="folder for the seeds and the failing cases (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = args.work or Path(tmp)
        fuzzer = Fuzzer(build_seeds(work / "seeds"), work / "cases")
        formats = args.formats or sorted(fuzzer.formats)
        start = time.perf_counter()
        outcomes = sweep(fuzzer, formats, args.cases, not args.no_options)
        print(table(outcomes))
        print(violations(outcomes))
        print(f"\n{len(outcomes)} inputs in {time.perf_counter() - start:.0f} s")
    return int(any(o.verdict == "violation" for o in outcomes))


if __name__ == "__main__":
    sys.exit(main())
