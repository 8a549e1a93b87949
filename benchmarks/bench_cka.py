"""Benchmark of the CKA engine against the irreducible work, a naive implementation and peer libraries.

Data: random float32 "encoder activations", two models of 12 layers x d=256
sharing a latent, with a few dimensions offset by a large mean and a few
outlier dimensions scaled up, as real activations have. For each n it prints
every method's time as a ratio to the irreducible work (float32 GEMMs of the
concatenated layers: X^T Y plus each layer's X_a^T X_a and Y_b^T Y_b), its max
error against a float64 reference written here from the formulas, and its
peak resident memory above the data. Slow methods time one layer pair and
extrapolate to all 144 (marked "extrap."). Peers missing from the environment
print "not installed" (install: pip install --no-deps torch-cka pytorch-cka ckatorch).

It also times the RBF engine against an in-memory float32 floor, the
Nyström estimator (error against exact kernel CKA, time at large n) and the
other similarity measures (CCA family, Procrustes, RSA).

    python benchmarks/bench_cka.py             # n = 20,000 and 100,000; RBF at n = 4,096
    python benchmarks/bench_cka.py --no-large  # without the n = 100,000 cases
    python benchmarks/bench_cka.py --quick     # n = 1,500; RBF at n = 512
    python benchmarks/bench_cka.py --only rbf nystrom measures
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import threading
import time

import numpy as np
import torch

from cka_probe.measures import StreamingLinearCKA, cka_matrix, nystrom_cka_matrix, similarity_matrix
from cka_probe.measures.kernels import squared_distances

LAYERS, WIDTH = 12, 256
PARTS = ("linear", "rbf", "nystrom", "measures")


def activations(n: int, seed: int) -> list[torch.Tensor]:
    """12 float32 layers ``(n, 256)`` of one model: shared latent + noise, 4 offset and 3 outlier dims."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    layers = []
    for _ in range(LAYERS):
        x = latent @ torch.randn(64, WIDTH, generator=g) / 8 + torch.randn(n, WIDTH, generator=g)
        x[:, :4] += 40.0
        x[:, 4:7] *= 25.0
        layers.append(x)
    return layers


def rss() -> int:
    """Resident memory of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def measured(record: dict):
    """Wall time and peak resident memory above the starting point, by polling every 5 ms."""
    start_rss, peak, done = rss(), [0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss() - start_rss)
            time.sleep(0.005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        record["seconds"] = time.perf_counter() - start
        done.set()
        thread.join()
        record["peak_mib"] = max(peak[0], rss() - start_rss) / 2**20


def interleaved(repeats: int, jobs: dict) -> dict:
    """Time every job once per round, ``repeats`` rounds, keeping each job's fastest time and result.

    Interleaving exposes every job to the same background load; the minimum is the least
    disturbed run. Timed runs are not polled; one more run per job measures its peak memory.
    """
    best = {}
    for _ in range(repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]["seconds"]:
                best[name] = ({"seconds": seconds}, result)
    for name, fn in jobs.items():
        memory = {}
        with measured(memory):
            fn()
        best[name][0]["peak_mib"] = memory["peak_mib"]
    return best


def irreducible(xs, ys) -> None:
    """The float32 GEMMs any exact feature-space method must do (no centring, no reductions)."""
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    x.T @ y
    for a in xs + ys:
        a.T @ a


def augmented(layers, extra: int) -> list[torch.Tensor]:
    """Each layer with ``extra`` more columns (the ones / q columns of an augmented layout: widths d + 1, d +
    2)."""
    return [torch.cat([x, torch.ones(len(x), extra)], 1) for x in layers]


def reference_linear(xs, ys, chunk: int = 8192, debiased: bool = False) -> np.ndarray:
    """float64 linear CKA from centred feature-space sums: Kornblith et al. 2019, Eq. 5, or with
    unbiased HSIC, n(n-3) HSIC_1 = ||X^T Y||^2 - n/(n-2) r_x^T r_y + s_x s_y / ((n-1)(n-2))."""
    n, w = len(xs[0]), WIDTH
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    mx, my = x.sum(0, dtype=torch.float64) / n, y.sum(0, dtype=torch.float64) / n
    cross = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
    own_x = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    own_y = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64)
    rr = {
        k: torch.zeros(a, b, dtype=torch.float64)
        for k, a, b in (("xy", len(xs), len(ys)), ("xx", len(xs), len(xs)), ("yy", len(ys), len(ys)))
    }
    for s in range(0, n, chunk):
        cx, cy = x[s : s + chunk].double() - mx, y[s : s + chunk].double() - my
        cross += cx.T @ cy
        own_x += cx.T @ cx
        own_y += cy.T @ cy
        rx, ry = (cx * cx).reshape(len(cx), -1, w).sum(2), (cy * cy).reshape(len(cy), -1, w).sum(2)
        rr["xy"] += rx.T @ ry
        rr["xx"] += rx.T @ rx
        rr["yy"] += ry.T @ ry

    def hsic(m, i, j, key):
        value = float((m[i * w : (i + 1) * w, j * w : (j + 1) * w] ** 2).sum())
        if not debiased:
            return value
        sa = float(torch.trace((own_x if key[0] == "x" else own_y)[i * w : (i + 1) * w, i * w : (i + 1) * w]))
        sb = float(torch.trace((own_x if key[1] == "x" else own_y)[j * w : (j + 1) * w, j * w : (j + 1) * w]))
        return value - n / (n - 2) * float(rr[key][i, j]) + sa * sb / ((n - 1) * (n - 2))

    hx = [hsic(own_x, i, i, "xx") for i in range(len(xs))]
    hy = [hsic(own_y, j, j, "yy") for j in range(len(ys))]
    return np.array(
        [[hsic(cross, i, j, "xy") / np.sqrt(hx[i] * hy[j]) for j in range(len(ys))] for i in range(len(xs))]
    )


def stream_all(named_x, named_y, rows):
    """Feed the rows to ``StreamingLinearCKA`` in chunks of ``rows``."""
    acc = StreamingLinearCKA(list(named_x), list(named_y))
    for s in range(0, len(named_x[0]), rows):
        acc.update(
            {k: v[s : s + rows] for k, v in named_x.items()}, {k: v[s : s + rows] for k, v in named_y.items()}
        )
    return acc.result()


def naive_gram_pair(x: torch.Tensor, y: torch.Tensor) -> float:
    """Textbook float32 Gram-space CKA of one pair: centred Grams and torch.linalg.norm."""

    def centred(a):
        k = a @ a.T
        row = k.mean(0)
        return k - row[:, None] - row[None, :] + row.mean()

    kc = centred(x)
    lc = centred(y)
    return float((kc * lc).sum() / (torch.linalg.norm(kc) * torch.linalg.norm(lc)))


class Replay(torch.nn.Module):
    """A 'model' whose layer i outputs rows ``idx`` of stored activations, for hook-based peers."""

    def __init__(self, acts):
        super().__init__()
        self.layers = torch.nn.ModuleList(Pick(a) for a in acts)

    def forward(self, idx):
        for layer in self.layers:
            layer(idx)


class Pick(torch.nn.Module):
    def __init__(self, acts):
        super().__init__()
        self.acts = acts

    def forward(self, idx):
        return self.acts[idx]


def loader(n: int, batch: int):
    data = torch.utils.data.TensorDataset(torch.arange(n))
    return torch.utils.data.DataLoader(data, batch_size=batch)


def run_torch_cka(xs, ys, batch):
    import torch_cka

    names = [f"layers.{i}" for i in range(LAYERS)]
    cka = torch_cka.CKA(Replay(xs), Replay(ys), "A", "B", names, names)
    cka.compare(loader(len(xs[0]), batch), loader(len(xs[0]), batch))
    return cka.hsic_matrix.double().numpy()


def run_pytorch_cka(xs, ys, batch):
    from cka import compute_cka

    names = [f"layers.{i}" for i in range(LAYERS)]
    return (
        compute_cka(
            Replay(xs),
            Replay(ys),
            loader(len(xs[0]), batch),
            layers=names,
            model2_layers=names,
            device="cpu",
            progress=False,
        )[0]
        .double()
        .numpy()
    )


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def report(name: str, record: dict, base: float, error: float | None, note: str = "") -> None:
    err = "      -" if error is None else f"{error:8.1e}"
    print(
        f"  {name:<34} {record['seconds']:9.2f} s {record['seconds'] / base:8.2f}x  err {err}  "
        f"peak {record['peak_mib']:8.0f} MiB  {note}"
    )


def linear_section(n: int, peers: bool, batch: int) -> None:
    xs, ys = activations(n, 1), activations(n, 2)
    print(f"\nlinear CKA, 12 x 12 layers, d={WIDTH}, n={n:,} (float32 inputs)")
    ref = reference_linear(xs, ys)
    named_x, named_y = dict(enumerate(xs)), dict(enumerate(ys))
    wide = {extra: (augmented(xs, extra), augmented(ys, extra)) for extra in (1, 2)}
    runs = interleaved(
        3,
        {
            "irreducible": lambda: irreducible(xs, ys),
            "augmented 1": lambda: irreducible(*wide[1]),
            "augmented 2": lambda: irreducible(*wide[2]),
            "biased": lambda: cka_matrix(named_x, named_y),
            "debiased": lambda: cka_matrix(named_x, named_y, debiased=True),
            "stream": lambda: stream_all(named_x, named_y, 4096),
        },
    )
    base = runs["irreducible"][0]
    report("irreducible float32 GEMMs", base, base["seconds"], None, f"widths {LAYERS * WIDTH:,} (aligned)")
    for extra in (1, 2):
        report(
            f"same GEMMs at d + {extra} per layer",
            runs[f"augmented {extra}"][0],
            base["seconds"],
            None,
            f"widths {LAYERS * (WIDTH + extra):,} (the augmented layout)",
        )
    wide.clear()  # the augmented copies are large; the lambdas above have run
    biased, table = runs["biased"]
    report("engine cka_matrix biased", biased, base["seconds"], np.abs(table.values - ref).max())
    rec, table = runs["debiased"]
    report(
        "engine cka_matrix debiased",
        rec,
        base["seconds"],
        np.abs(table.values - reference_linear(xs, ys, debiased=True)).max(),
        f"({rec['seconds'] / biased['seconds']:.2f}x biased)",
    )
    rec, table = runs["stream"]
    report("engine StreamingLinearCKA (4096/chunk)", rec, base["seconds"], np.abs(table.values - ref).max())
    if not peers:
        return
    rec = {}
    with measured(rec):
        value = naive_gram_pair(xs[5], ys[7])
    rec["seconds"] *= LAYERS * LAYERS
    report(
        "naive float32 Gram, per pair", rec, base["seconds"], abs(value - ref[5, 7]), "extrap. from 1 pair"
    )
    for label, module, fn in (
        (f"torch-cka 0.21 (batch {batch})", "torch_cka", run_torch_cka),
        (f"pytorch-cka 1.1.3 minibatch ({batch})", "cka", run_pytorch_cka),
    ):
        if not installed(module):
            print(f"  {label:<34} not installed")
            continue
        rec = {}
        with measured(rec):
            values = fn(xs, ys, batch)
        report(label, rec, base["seconds"], np.abs(values - ref).max())
    if not installed("ckatorch"):
        print(f"  {'ckatorch 1.0.3':<34} not installed")
        return
    from ckatorch.core import cka_base

    m = min(n, 8000)
    sub = reference_linear([xs[5][:m]], [ys[7][:m]])[0, 0]
    rec = {}
    with measured(rec):
        value = float(cka_base(xs[5][:m], ys[7][:m]))
    rec["seconds"] *= LAYERS * LAYERS * (n / m) ** 2
    report(
        "ckatorch 1.0.3 (float64, per pair)",
        rec,
        base["seconds"],
        abs(value - sub),
        f"extrap. from 1 pair at n={m} (its cost grows as n^2)",
    )


def rbf_floor(xs, ys, sigma: float) -> np.ndarray:
    """In-memory float32 RBF CKA: per layer one GEMM for squared distances, the exact median of all n^2
    of them (numpy's definition), in-place exp_ and centring; one (L, n^2) x (n^2, L) GEMM for all pairs."""

    def centred(a):
        a = a - a.mean(0)
        d = squared_distances(a, a)
        m = d.numel()
        middle = np.partition(d.view(-1).numpy(), [(m - 1) // 2, m // 2])
        k = d.mul_(-0.5 / (sigma**2 * (float(middle[(m - 1) // 2]) + float(middle[m // 2])) / 2)).exp_()
        row = k.mean(0)
        return k.sub_(row[:, None]).sub_(row[None, :] - row.mean()).view(-1)

    gx, gy = torch.stack([centred(x) for x in xs]), torch.stack([centred(y) for y in ys])
    inner = (gx @ gy.T).double()
    return (
        inner
        / torch.outer((gx * gx).sum(1, dtype=torch.float64), (gy * gy).sum(1, dtype=torch.float64)).sqrt()
    ).numpy()


def median_sq(a: torch.Tensor) -> float:
    a = a.double()
    sq = (a * a).sum(1)
    return float(np.median((sq[:, None] + sq[None, :] - 2 * a @ a.T).clamp_min(0).numpy()))


def reference_rbf(xs, ys, sigma: float) -> np.ndarray:
    """float64 RBF CKA with numpy's median (Kornblith et al.'s reference bandwidth), one x Gram at a time."""

    def centred(a):
        a = a.double()
        sq = (a * a).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2 * a @ a.T).clamp_min(0)
        k = torch.exp(-dist / (2 * sigma**2 * median_sq(a)))
        row = k.mean(0)
        return k - row[:, None] - row[None, :] + row.mean()

    grams_y = [centred(y) for y in ys]
    norms_y = [float((g * g).sum().sqrt()) for g in grams_y]
    out = np.zeros((len(xs), len(ys)))
    for i, x in enumerate(xs):
        kc = centred(x)
        norm = float((kc * kc).sum().sqrt())
        out[i] = [float((kc * g).sum()) / (norm * ny) for g, ny in zip(grams_y, norms_y)]
    return out


def rbf_section(n: int, peers: bool, sigma: float = 0.8) -> None:
    xs, ys = activations(n, 1), activations(n, 2)
    print(f"\nRBF CKA (sigma={sigma}), 12 x 12 layers, d={WIDTH}, n={n:,} (float32 inputs)")
    ref = reference_rbf(xs, ys, sigma)
    named_x, named_y = dict(enumerate(xs)), dict(enumerate(ys))
    sub = min(1024, n // 4)
    runs = interleaved(
        2,
        {
            "floor": lambda: rbf_floor(xs, ys, sigma),
            "engine": lambda: cka_matrix(named_x, named_y, kernel="rbf", sigma=sigma),
            "subsampled": lambda: cka_matrix(named_x, named_y, kernel="rbf", sigma=sigma, median_rows=sub),
        },
    )
    base, values = runs["floor"]
    report(
        "in-memory float32 floor",
        base,
        base["seconds"],
        np.abs(values - ref).max(),
        "(baseline; holds all 24 Grams)",
    )
    rec, table = runs["engine"]
    report(
        "engine cka_matrix rbf (exact median)",
        rec,
        base["seconds"],
        np.abs(table.values - ref).max(),
        "blocks",
    )
    rec, sub_table = runs["subsampled"]
    exact_sq = np.array(list(table.attrs["rbf_sq_sigma_x"].values()))
    sub_sq = np.array(list(sub_table.attrs["rbf_sq_sigma_x"].values()))
    report(
        f"engine rbf, median of {sub} rows",
        rec,
        base["seconds"],
        np.abs(sub_table.values - ref).max(),
        f"s^2 off by up to {np.abs(sub_sq / exact_sq - 1).max():.1%}",
    )
    if peers and installed("ckatorch"):
        from ckatorch.core import cka_base

        rec = {}
        with measured(rec):
            value = float(cka_base(xs[5], ys[7], kernel="rbf", threshold=sigma))
        rec["seconds"] *= LAYERS * LAYERS
        report(
            "ckatorch 1.0.3 rbf (float64)",
            rec,
            base["seconds"],
            abs(value - ref[5, 7]),
            "extrap. from 1 pair",
        )
    elif peers:
        print(f"  {'ckatorch 1.0.3':<34} not installed")


def nystrom_section(n: int, exact: np.ndarray | None, ranks, sigma: float = 0.8) -> None:
    xs, ys = activations(n, 1), activations(n, 2)
    named_x, named_y = dict(enumerate(xs)), dict(enumerate(ys))
    print(
        f"\nNystrom kernel CKA (RBF, sigma={sigma}), 12 x 12 layers, d={WIDTH}, n={n:,}"
        + ("; errors against the exact engine" if exact is not None else "")
    )
    for rank in ranks:
        rec = {}
        with measured(rec):
            table = nystrom_cka_matrix(named_x, named_y, sigma=sigma, rank=rank)
        err = None if exact is None else np.abs(table.values - exact).max()
        report(
            f"nystrom_cka_matrix rank {rank}",
            rec,
            rec["seconds"],
            err,
            f"median of {table.attrs['rbf_median_rows']:,} rows",
        )


def measures_section(n: int, rsa_n: int) -> None:
    xs, ys = activations(n, 1), activations(n, 2)
    named_x, named_y = dict(enumerate(xs)), dict(enumerate(ys))
    print(
        f"\nother measures, 12 x 12 layers, d={WIDTH}, n={n:,} (float32 inputs; float64 work); ratio to "
        "linear CKA"
    )
    base = {}
    with measured(base):
        cka_matrix(named_x, named_y)
    report("linear CKA (cka_matrix)", base, base["seconds"], None)
    for measure in ("cca", "svcca", "pwcca", "procrustes", "procrustes_angle"):
        rec = {}
        with measured(rec):
            similarity_matrix(named_x, named_y, measure=measure)
        report(f"similarity_matrix {measure}", rec, base["seconds"], None)
    small_x, small_y = {k: v[:rsa_n] for k, v in named_x.items()}, {k: v[:rsa_n] for k, v in named_y.items()}
    for compare in ("spearman", "pearson"):
        rec = {}
        with measured(rec):
            similarity_matrix(small_x, small_y, measure="rsa", compare=compare)
        report(
            f"rsa ({compare}), n={rsa_n:,}",
            rec,
            base["seconds"],
            None,
            "at n=20,000 the 24 RDMs need 18 GiB: over the budget" if rsa_n < n else "",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n, for a smoke run")
    parser.add_argument("--no-large", action="store_true", help="leave out the n = 100,000 cases")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run these parts only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; times as ratios to the first row "
        "of each block"
    )
    large = not (args.quick or args.no_large)
    sizes = [(1500, True)] if args.quick else [(20_000, True)] + ([(100_000, False)] if large else [])
    rbf_n = 512 if args.quick else 4096
    parts = {
        "linear": lambda: [linear_section(n, peers, batch=250 if args.quick else 1000) for n, peers in sizes],
        "rbf": lambda: rbf_section(rbf_n, peers=True),
        "nystrom": lambda: [
            nystrom_section(
                rbf_n,
                cka_matrix(activations(rbf_n, 1), activations(rbf_n, 2), kernel="rbf").values,
                [64, 128] if args.quick else [128, 256, 512, 1024],
            ),
            large and nystrom_section(100_000, None, [256]),
        ],
        "measures": lambda: measures_section(1500 if args.quick else 20_000, 1500 if args.quick else 4096),
    }
    for part in args.only:
        start = time.perf_counter()
        parts[part]()
        print(f"  ({part}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
