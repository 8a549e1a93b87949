"""The cross-task tables hold one batch's Grams at a time (one seed replicate of one part): their peak memory
does not grow with the number of seed replicates."""

import subprocess
import sys

PEAK = """
import resource, sys
import numpy as np
from cka_probe.study.cross_task import cross_task_arrays
n, depth, seeds = 1000, 4, int(sys.argv[1])
rng = np.random.default_rng(0)
streams = {"sso": ("encoder", "decoder/surface"), "mso": ("encoder", "decoder/meaning"),
           "do": ("encoder", "decoder/surface", "decoder/meaning")}
reps = {role: [{s: {f"l{i}": rng.standard_normal((n, 16)) for i in range(depth)} for s in names}
               for _ in range(seeds)] for role, names in streams.items()}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cross_task_arrays(reps, language="en", n_boot=8, n_perm=8, progress=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def peak_bytes(seeds: int) -> int:
    """Growth of the peak resident memory of a fresh process over the tables of ``seeds`` replicates."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(seeds)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_the_number_of_seeds():
    one, three = peak_bytes(1), peak_bytes(3)
    # holding every seed's float32 Grams at once would add at least the 2 · 7 sides · 4·L·n² = 224 MB of the
    # two further replicates; one batch more or less is the ceiling's second SSO side, 4·L·n² = 16 MB
    assert three - one < 48 * 2**20, (one, three)
