"""Run a validation's work on the engine pool, as a job of kind ``validate``.

Built from the same pieces as ``%%distribute`` (plan, push, Job): the job is in
the run store, its ranks' output is logged, a failing rank or an interrupt ends
it cleanly, and the pool is usable afterwards.  Each rank gets its own inputs
(its contiguous shard, or its folds) pushed to its engine alone.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ipyparallel as ipp

from .. import model
from ..jobs.job import Job
from ..jobs.launch import LaunchError, RUN_CELL, plan
from ..jobs.launch import push as broadcast
from ..pool.engine_pool import EnginePool
from ..pool.remote import call

RESULT = "_trainorch_validation"
INSPECT = "trainorch_jupyter.runtime.validate:inspect_name"


BATCH = 256  # rows per forward pass, counted from sample 0 whatever the sharding


def shard_bounds(n: int, world: int, batch: int = BATCH) -> list[tuple[int, int]]:
    """Contiguous shards [lo, hi) in rank order, nothing padded.

    Shards are cut at multiples of ``batch``, so each forward pass sees exactly
    the rows it sees in a single-process evaluation (batches start at sample 0,
    256, 512, ...): per-sample outputs are then bitwise the same however the data
    is sharded, even for kernels whose rounding depends on the batch shape.
    A rank may get nothing when there are fewer batches than ranks.
    """
    batches = -(-n // batch)
    cuts = [min(n, (r * batches // world) * batch) for r in range(world + 1)]
    cuts[-1] = n
    return [(cuts[r], cuts[r + 1]) for r in range(world)]


def engine_ids(pool: EnginePool, n: int | None) -> list[int]:
    size = len(pool.slots)
    if n is not None and not 1 <= n <= size:
        raise LaunchError(f"-n {n}: this pool has {size} engine{'s' if size != 1 else ''}; use -n 1..{size}")
    return [s.engine_id for s in pool.slots[: n or size]]


def inspect(pool: EnginePool, name: str, n: int | None) -> list[dict[str, Any]]:
    """What ``name`` is on each of the first ``n`` engines (present, kind, type, hash)."""
    ids = engine_ids(pool, n)
    ars = [pool.view(eid).apply_async(call, INSPECT, name) for eid in ids]
    return [ar.get(timeout=120) for ar in ars]


def run(
    pool: EnginePool,
    source: str,
    *,
    n: int | None,
    per_rank: Sequence[dict[str, Any]] = (),
    shared: dict[str, Any] | None = None,
    framework: str = "",
    line: str = "",
    listeners: list[Callable[[model.Event], None]] | None = None,
    register: Callable[[Job], None] | None = None,
) -> Job:
    """Run ``source`` on the first ``n`` engines; rank k first gets ``per_rank[k]``
    pushed into its namespace, every rank gets ``shared``.  Blocks until the job
    ends (raising its DistributedError) and returns it; each rank's value of
    ``_trainorch_validation`` is in ``job.result(RESULT)``."""
    plans, _backend, _key, ids = plan(
        pool, source, n=n, framework=None, backend=None, timeout=None, pull=[], gather=[RESULT],
    )
    engines = [p.engine_id for p in plans]
    try:
        broadcast(pool, engines, shared or {})
        ars = [pool.view(eid).push(values, block=False) for eid, values in zip(engines, per_rank) if values]
        for ar in ars:
            ar.get(timeout=600)
    except ipp.RemoteError as e:
        raise LaunchError(f"sending the data to the engines failed: {e.ename}: {e.evalue}") from None
    # the job is recorded with the %validate line as its source (what %runs shows);
    # the engines run the generated cell
    job = Job(
        pool, ids["job_id"], line or source, plans, framework=framework, backend="", group_key=None,
        kind=model.VALIDATE, listeners=listeners,
    )
    job.source = source
    if register is not None:
        register(job)
    job.submit(call, RUN_CELL)
    job.wait()
    return job


def predict_source(spec: dict[str, Any]) -> str:
    return (
        "from trainorch_jupyter.runtime.validate import predict_shard as _trainorch_predict\n"
        f"{RESULT} = _trainorch_predict({spec!r})\n"
        "del _trainorch_predict\n"
    )


def folds_source(spec: dict[str, Any]) -> str:
    cleanup = ", ".join(repr(k) for k in (spec.get("cleanup") or []))
    return (
        "from trainorch_jupyter.runtime.validate import run_folds as _trainorch_folds\n"
        f"{RESULT} = _trainorch_folds({spec!r})\n"
        f"for _trainorch_k in ({cleanup}{',' if cleanup else ''}):\n"
        "    globals().pop(_trainorch_k, None)\n"
        "del _trainorch_folds\n"
    )


def drop(pool: EnginePool, names: Sequence[str], n: int | None) -> None:
    """Remove temporary names from the engines (best effort)."""
    if not names:
        return
    src = "".join(f"globals().pop({k!r}, None)\n" for k in names)
    try:
        pool.client[engine_ids(pool, n)].execute(src, block=False).get(timeout=10)
    except Exception:
        pass
