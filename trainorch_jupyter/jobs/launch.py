"""Plan a distributed job on a pool and ship it."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable

import ipyparallel as ipp
from ipyparallel import serialize

from .. import backends
from ..pool.engine_pool import EnginePool
from ..pool.remote import call
from .job import DEFAULT_GRACE, Job, RankPlan

RUN_CELL = "trainorch_jupyter.runtime.cell:run"
RENDEZVOUS = "trainorch_jupyter.runtime.engine:rendezvous_address"
LOADED = "trainorch_jupyter.runtime.engine:loaded_frameworks"
ASK_TIMEOUT = 10.0  # seconds an idle engine has to answer before launch


class LaunchError(ValueError):
    """The job cannot start as asked; nothing was sent to the engines."""


def check_pushable(namespace: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The values to push, or LaunchError naming the first missing or unpicklable one."""
    values = {}
    for name in names:
        if name not in namespace:
            raise LaunchError(f"--push {name}: no such name in the notebook; define it first")
        value = namespace[name]
        try:
            serialize.serialize_object(value)
        except Exception as e:
            raise LaunchError(
                f"--push {name}: a {type(value).__name__} cannot be sent to the engines "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "create it inside the cell instead"
            ) from None
        values[name] = value
    return values


def push(pool: EnginePool, engine_ids: list[int], values: dict[str, Any]) -> None:
    """Send ``values`` to every engine once, through the broadcast scheduler
    (one copy leaves the kernel, not one per engine)."""
    if values:
        pool.client.broadcast_view(targets=engine_ids).push(values, block=True)


def cell_filename(source: str) -> str:
    """The name tracebacks give the cell: stable for the same source."""
    return f"<distribute-cell {hashlib.sha1(source.encode()).hexdigest()[:8]}>"


def _group_key(pool: EnginePool, framework: str, backend: str, timeout: float, n: int) -> str:
    """Names a framework group: the same key means the engines' group can be reused."""
    ids = ",".join(str(s.engine_id) for s in pool.slots[:n])
    return f"{framework}:{pool.id}:{pool.generation}:{ids}:{backend}:{timeout:g}"


def _fresh_engines(pool: EnginePool, slots: list, backend_mod: Any, log: Callable[[str], None] | None) -> bool:
    """Restart the engines that already imported a framework which sets its cluster up once
    per process (TensorFlow), so they can form a new group.  True when any was restarted."""
    once = getattr(backend_mod, "ONCE_PER_PROCESS", ())
    if not once:
        return False
    loaded = _ask_every_engine(pool, slots, LOADED)
    stale = [s for s, mods in zip(slots, loaded) if set(mods) & set(once)]
    if not stale:
        return False
    if not pool.owned:
        raise LaunchError(
            f"{once[0]} is already set up on engine {stale[0].engine_id} for another worker set and "
            "cannot join a new one; restart the attached engines where they were started"
        )
    if log is not None:
        which = ", ".join(str(s.engine_id) for s in stale)
        log(
            f"Restarting engine{'s' if len(stale) > 1 else ''} {which}: {once[0]} configures its "
            "cluster once per process, and these engines had it set up for another job"
        )
    pool.replace(stale)
    return True


def _ask_every_engine(pool: EnginePool, slots: list, target: str, *args: Any) -> list[Any]:
    """Run an engine-side function on every slot's engine, or LaunchError naming a busy or failing one."""
    ars = [pool.view(s.engine_id).apply_async(call, target, *args) for s in slots]
    out = []
    for s, ar in zip(slots, ars):
        try:
            out.append(ar.get(timeout=ASK_TIMEOUT))
        except ipp.error.TimeoutError:
            for other in ars:
                if not other.ready():
                    try:
                        pool.client.abort(other.msg_ids)
                    except Exception:
                        pass
            raise LaunchError(
                f"engine {s.engine_id} is busy with another task (it did not answer within {ASK_TIMEOUT:g} s); "
                f"wait for it, or %cluster restart --engine {s.engine_id}"
            ) from None
        except ipp.RemoteError as e:
            raise LaunchError(f"engine {s.engine_id}: {e.ename}: {e.evalue}") from None
    return out


def _worker_addresses(pool: EnginePool, slots: list) -> list[str]:
    """``host:port`` of every rank: a free port on each engine's own host, asked of the engine."""
    addrs = [f"{ip}:{port}" for ip, port in _ask_every_engine(pool, slots, RENDEZVOUS, pool.controller_ip)]
    if len(set(addrs)) != len(addrs):  # two engines of a host were handed the same port: ask again
        return _worker_addresses(pool, slots)
    return addrs


def plan(
    pool: EnginePool,
    source: str,
    *,
    n: int | None,
    framework: str | None,
    backend: str | None,
    timeout: float | None,
    pull: list[str],
    gather: list[str],
    log: Callable[[str], None] | None = None,
    slots_at: list[int] | None = None,
) -> tuple[list[RankPlan], str, str | None, dict[str, Any]]:
    """Choose ranks and build every rank's spec.  Returns (plans, backend, group_key, shared).

    The ranks are the first ``n`` slots of the pool, or the slots ``slots_at`` (in that
    order) when a caller runs several jobs on disjoint parts of the pool (``%tune
    --engines-per-trial``).
    """
    size = len(pool.slots)
    if slots_at is not None:
        n = len(slots_at)
    if n is None:
        n = size
    if n < 1 or n > size:
        raise LaunchError(
            f"-n {n}: this pool has {size} engine{'s' if size != 1 else ''}; "
            f"use -n 1..{size}, or %cluster start -n {n}"
        )
    backend_mod = backends.get(framework) if framework else None
    trouble = backend_mod.problem() if hasattr(backend_mod, "problem") else None
    if trouble:
        raise LaunchError(trouble)
    alive = pool.alive_ids()
    slots = pool.slots[:n] if slots_at is None else [pool.slots[k] for k in slots_at]
    dead = [s for s in slots if s.engine_id not in alive]
    if dead and not pool.owned:
        raise LaunchError(
            f"engine {dead[0].engine_id} of the attached cluster is gone; restart it where it was "
            "started, then %cluster stop and %cluster attach again"
        )
    if dead:
        pool.heal()
    ids = [s.engine_id for s in slots]
    per_host: dict[str, int] = {}
    hosts: list[str] = []  # in order of first appearance: GROUP_RANK is a host's index
    for s in slots:
        per_host[s.host] = per_host.get(s.host, 0) + 1
        if s.host not in hosts:
            hosts.append(s.host)
    local: dict[str, int] = {}
    group_key = None
    master_addr, master_port = "", 0
    workers: list[str] = []
    if backend_mod is not None and hasattr(backend_mod, "default_backend"):
        if backend is None:
            backend = backend_mod.default_backend([s.device for s in slots])
        elif backend not in backend_mod.BACKENDS:
            raise LaunchError(f"--backend {backend}: use one of {', '.join(backend_mod.BACKENDS)}")
        timeout = backend_mod.DEFAULT_TIMEOUT if timeout is None else timeout
        group_key = _group_key(pool, framework, backend, timeout, n)
    reuse = group_key is not None and pool.group_key == group_key and pool.group_addr is not None
    every_rank = getattr(backend_mod, "RENDEZVOUS", "rank 0") == "every rank"
    if every_rank and group_key is not None:
        if not reuse and _fresh_engines(pool, slots, backend_mod, log):
            group_key = _group_key(pool, framework, backend, timeout, n)  # new engine ids
        workers = list(pool.group_addr) if reuse else _worker_addresses(pool, slots)
        master_addr, _, port = workers[0].rpartition(":")
        master_port = int(port)
    elif reuse:
        master_addr, master_port = pool.group_addr  # the address the group was formed with
    elif group_key is not None:
        master_addr, master_port = pool.view(ids[0]).apply_sync(call, RENDEZVOUS, pool.controller_ip)
    job_id = uuid.uuid4().hex[:12]
    plans = []
    for rank, s in enumerate(slots):
        lr = local.get(s.host, 0)
        local[s.host] = lr + 1
        env: dict[str, str] = {}
        if backend_mod is not None and group_key is not None:
            extra = {"workers": workers} if every_rank else {}
            env = backend_mod.rank_env(
                rank=rank,
                local_rank=lr,
                world_size=n,
                local_world_size=per_host[s.host],
                group_rank=hosts.index(s.host),
                master_addr=master_addr,
                master_port=master_port,
                **extra,
            )
        spec = {
            "job_id": job_id,
            "rank": rank,
            "world_size": n,
            "local_rank": lr,
            "local_world_size": per_host[s.host],
            "framework": framework,
            "env": env,
            "filename": cell_filename(source),
            "pull": pull,
            "gather": gather,
            "setup": getattr(backend_mod, "SETUP", None) if group_key else None,
            "teardown": getattr(backend_mod, "TEARDOWN", None) if group_key else None,
            "prepare": getattr(backend_mod, "PREPARE", None),
            "group_key": group_key,
            "reuse": reuse,
            "backend": backend,
            "timeout": timeout,
            "master_addr": master_addr,
            "master_port": master_port,
            "workers": workers,
        }
        plans.append(
            RankPlan(rank, s.engine_id, s.host, s.device, lr, per_host[s.host], spec)
        )
    return plans, backend or "", group_key, {"job_id": job_id}


def launch(
    pool: EnginePool,
    source: str,
    *,
    framework: str | None,
    n: int | None = None,
    backend: str | None = None,
    timeout: float | None = None,
    push_values: dict[str, Any] | None = None,
    pull: list[str] | None = None,
    gather: list[str] | None = None,
    grace: float = DEFAULT_GRACE,
    listeners: list | None = None,
    log: Callable[[str], None] | None = None,
    slots_at: list[int] | None = None,
    kind: str | None = None,
    parent_id: str | None = None,
) -> Job:
    plans, backend_name, group_key, shared = plan(
        pool, source, n=n, framework=framework, backend=backend, timeout=timeout,
        pull=pull or [], gather=gather or [], log=log, slots_at=slots_at,
    )
    try:
        push(pool, [p.engine_id for p in plans], push_values or {})
    except ipp.RemoteError as e:
        raise LaunchError(f"--push failed on the engines: {e.ename}: {e.evalue}") from None
    job = Job(
        pool, shared["job_id"], source, plans,
        framework=framework or "", backend=backend_name, group_key=group_key, grace=grace,
        listeners=listeners, **({"kind": kind} if kind else {}), parent_id=parent_id,
    )
    job.group_addr = (plans[0].spec["master_addr"], plans[0].spec["master_port"]) if group_key else None
    if group_key and plans[0].spec["workers"]:
        job.group_addr = tuple(plans[0].spec["workers"])  # every rank's address
    job.submit(call, RUN_CELL)
    return job
