"""Scale-out with ``torchrun``: shard the utterances by rank, one store per rank, then merge.

``torchrun --nproc_per_node K -m cka_probe extract ...`` starts K processes;
rank r extracts the r-th contiguous block of the utterances into
``<out stem>.rank<r>-of-<K><suffix>``; after a barrier, rank 0 merges the
shards in rank order into ``<out>`` (the order of a one-process run) and
removes them. Ranks synchronise over the gloo backend, which needs no GPU.
A rank that is killed leaves its ``.partial`` shard; rerunning resumes it and
reuses the shards that finished. The rank helpers (``world``, ``shard_bounds``,
``rank_device``) live in :mod:`cka_probe.ranks` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from cka_probe.errors import CKAProbeError
from cka_probe.ranks import process_group, rank_device, shard_bounds, world
from cka_probe.store import merge_stores

__all__ = ["ShardFn", "rank_device", "run_sharded", "shard_bounds", "shard_path", "world"]

ShardFn = Callable[[int, int, Path, bool], Path]
"""``extract_shard(start, stop, path, progress)`` writes utterances ``[start, stop)`` to ``path``."""


def shard_path(out: str | Path, rank: int, size: int) -> Path:
    """``acts.h5`` -> ``acts.rank0-of-2.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}-of-{size}{out.suffix}")


def run_sharded(n: int, out: str | Path, extract_shard: ShardFn, *, overwrite: bool = False) -> Path:
    """Extract ``n`` utterances into ``out``: directly in one process, by rank under ``torchrun``."""
    rank, size = world()
    out = Path(out)
    if size == 1:
        return extract_shard(0, n, out, True)
    if n < size:
        raise CKAProbeError(f"{n} utterances cannot be shared among {size} ranks")
    if out.exists() and not overwrite:
        raise CKAProbeError(f"{out}: already exists; pass --overwrite to replace it")
    with process_group("gloo"):
        mine = shard_path(out, rank, size)
        if overwrite or not mine.exists():
            extract_shard(*shard_bounds(n, rank, size), mine, rank == 0)
        dist.barrier()
        if rank == 0:
            shards = [shard_path(out, r, size) for r in range(size)]
            merge_stores(shards, out, overwrite=overwrite)
            for shard in shards:
                shard.unlink()
        dist.barrier()
    return out
