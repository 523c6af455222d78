"""Plain-Python entry points: the magics are thin wrappers over these.

    from trainorch_jupyter import api
    api.start_pool(n=2)
    job = api.distribute(source, namespace=globals(), pull=["model"])

Usable from scripts and tests without IPython.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Callable, Sequence

from . import backends
from .backends import UnknownFramework
from .jobs.job import DEFAULT_GRACE, DistributedError, Job  # noqa: F401
from .jobs.launch import LaunchError, check_pushable, launch
from .jobs.source import CellError, detect_framework, parse
from .pool.engine_pool import EnginePool, PoolError
from .pool.leases import GpuLeaseError
from .store.db import RunStore, StoreWriter
from .store.location import database_path
from .views.panel import PanelView, widgets_available
from .views.text import LiveText, status_text

__all__ = [
    "start_pool", "attach_pool", "stop_pool", "restart_pool", "pool_status", "current_pool",
    "distribute", "Job", "DistributedError", "PoolError", "LaunchError", "UsageProblem",
]

_POOL: EnginePool | None = None
_LOCK = threading.RLock()
_JOBS: list[Job] = []
_STORE: RunStore | None = None
_WRITER: StoreWriter | None = None


def store(log: Callable[[str], None] = print) -> RunStore:
    """This kernel's run store (opened on first use; jobs of dead kernels are marked lost)."""
    global _STORE
    with _LOCK:
        if _STORE is None:
            path, note = database_path()
            if note:
                log(note)
            _STORE = RunStore(path)
        return _STORE


def _writer(log: Callable[[str], None] = print) -> StoreWriter:
    """The thread that writes this kernel's jobs into the store (it opens the store itself)."""
    global _WRITER
    with _LOCK:
        if _WRITER is None:
            _WRITER = StoreWriter(
                lambda: store(log), on_error=lambda e: log(f"trainorch: run store write failed: {e}")
            )
        return _WRITER

# Errors that mean "the request was wrong": magics turn them into one-line UsageErrors.
UsageProblem = (LaunchError, CellError, PoolError, GpuLeaseError, UnknownFramework)


def current_pool() -> EnginePool | None:
    with _LOCK:
        if _POOL is not None and _POOL.closed:
            return None
        return _POOL


def start_pool(n: int | None = None, *, launcher: str = "local", config: Any = None,
               timeout: float = 120.0) -> EnginePool:
    """Start this kernel's pool (one engine per free GPU, or ``n`` CPU engines)."""
    global _POOL
    with _LOCK:
        if current_pool() is not None:
            raise PoolError("a pool is already running in this kernel; %cluster stop it first")
        _POOL = EnginePool.start(n, launcher=launcher, config=config, timeout=timeout)
        return _POOL


def attach_pool(*, profile: str | None = None, cluster_id: str | None = None,
                url_file: str | None = None, timeout: float = 30.0, restart: bool = False) -> EnginePool:
    """Use a cluster that is already running; it is left running when we detach."""
    global _POOL
    with _LOCK:
        if current_pool() is not None:
            raise PoolError("a pool is already in use in this kernel; %cluster stop it first")
        _POOL = EnginePool.attach(
            profile=profile, cluster_id=cluster_id, url_file=url_file, timeout=timeout, restart=restart
        )
        return _POOL


def stop_pool() -> bool:
    """Stop (or detach from) the pool; False when there was none."""
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
    if pool is None or pool.closed:
        return False
    for job in list(_JOBS):
        if not job.done:
            job.cancel("pool stopped")
    pool.stop()
    return True


def restart_pool(engine: int | None = None) -> EnginePool:
    pool = _require_pool()
    for job in list(_JOBS):
        if not job.done:
            job.cancel("pool restarted")
    pool.restart(engine)
    return pool


def pool_status() -> list[dict[str, Any]]:
    return _require_pool().status()


def _require_pool() -> EnginePool:
    pool = current_pool()
    if pool is None:
        raise PoolError("no pool is running; start one with %cluster start")
    return pool


def ensure_pool(n: int | None = None, log: Callable[[str], None] = print) -> EnginePool:
    """The running pool, or a freshly started default one (and say so)."""
    with _LOCK:
        pool = current_pool()
        if pool is None:
            # the default size (one engine per free GPU, or 2 CPU engines), grown to -n on CPU
            from .pool.engine_pool import DEFAULT_CPU_ENGINES
            from .pool.gpus import discover

            size = None if discover() else max(n or 0, DEFAULT_CPU_ENGINES)
            pool = start_pool(size)
            log(f"Started the default pool: {pool.describe()} (stop it with %cluster stop)")
        return pool


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def distribute(
    source: str,
    *,
    namespace: dict[str, Any] | None = None,
    framework: str | None = None,
    n: int | None = None,
    push: Sequence[str] = (),
    pull: Sequence[str] = (),
    gather: Sequence[str] = (),
    backend: str | None = None,
    timeout: float | None = None,
    bg: bool = False,
    grace: float = DEFAULT_GRACE,
    show: bool = True,
    log: Callable[[str], None] = print,
) -> Job:
    """Run ``source`` on ``n`` engines (default: the whole pool) as one distributed job.

    Everything that can be checked is checked before anything is shipped.  With
    ``bg=False`` (default) it blocks, showing output as it comes, and raises
    :class:`DistributedError` when a rank fails; ``--pull`` values land in
    ``namespace``.  With ``bg=True`` it returns the running :class:`Job` at once.
    """
    namespace = {} if namespace is None else namespace
    tree = parse(source)
    if framework is not None and framework.strip().lower() in ("none", "python"):
        framework = None  # plain Python: no distributed setup
    elif framework is not None:
        framework = backends.canonical(framework)
    else:
        framework = detect_framework(tree)
    if framework is not None:
        mod = backends.get(framework)
        if not mod.is_available():
            raise LaunchError(f"{framework} is not installed: {mod.install_hint()}")
        trouble = mod.problem() if hasattr(mod, "problem") else None  # e.g. tf_keras missing
        if trouble:
            raise LaunchError(trouble)
    if n is not None and n < 1:
        raise LaunchError(f"-n must be a positive number of engines, got {n}")
    if timeout is not None and not (0 < timeout < 1e7):
        raise LaunchError(f"--timeout must be a positive, finite number of seconds, got {timeout:g}")
    if not (0 <= grace < 1e6):
        raise LaunchError(f"--grace must be a finite number of seconds, zero or more, got {grace:g}")
    both = sorted(set(pull) & set(gather))
    if both:
        raise LaunchError(f"{both[0]} is both pulled and gathered; use --gather (it includes rank 0's value)")
    if framework is None and (backend is not None or timeout is not None):
        flag = "--backend" if backend is not None else "--timeout"
        raise LaunchError(f"{flag} only applies to a framework's process group; add --framework torch")
    values = check_pushable(namespace, list(push))
    running = [j for j in jobs() if not j.done]
    if running:
        raise LaunchError(
            f"job {running[0].id} is still running on the pool; wait for it (job.wait()) "
            "or stop it (job.cancel()) first"
        )
    pool = ensure_pool(n, log=log)
    job = launch(
        pool, source, framework=framework, n=n, backend=backend, timeout=timeout,
        push_values=values, pull=list(pull), gather=list(gather), grace=grace,
        listeners=[_writer(log)], log=log,
    )
    with _LOCK:
        _JOBS[:] = _JOBS[-49:] + [job]  # running jobs and recent history
    in_kernel = _in_kernel()
    panel = None
    if show and in_kernel and widgets_available():
        panel = PanelView(job, background=bg)
        job.panel = panel
    if bg:
        return job
    view = LiveText(printer=log, display=in_kernel and panel is None) if show else None
    if view is not None:
        view.start()

    def tick(j: Job) -> None:
        if view is not None:
            view.lines(j.take_lines(), j.logs.paths)
            if panel is None:
                view.status(j.snapshot)

    try:
        job.wait(on_tick=tick)
    finally:
        if view is not None:
            view.lines(job.take_lines(), job.logs.paths)
            if panel is None:
                view.final(job.snapshot)
        if panel is not None:
            panel.final()
    for (kind, name), value in job.results.items():
        namespace[name] = value
    return job


def runs(limit: int = 20) -> str:
    """Recent jobs of every kernel that used this store, newest first."""
    from .views.runs import jobs_table

    st = store()
    _flush_store()
    listed = st.jobs(limit)
    final = {}
    for j in listed:
        detail = st.job(j["id"])
        final[j["id"]] = (detail["ranks"][0]["metrics"] if detail and detail["ranks"] else {})
    return jobs_table(listed, final)


def run_detail(job_id: str, tail: int = 10) -> str:
    from .store import paths
    from .views.runs import job_detail

    job = _stored_job(job_id)
    tails = {}
    for r in job["ranks"]:
        try:
            with open(paths.rank_log(job["id"], r["rank"]), encoding="utf-8", errors="replace") as f:
                tails[r["rank"]] = f.read().splitlines()[-tail:]
        except FileNotFoundError:
            tails[r["rank"]] = []
    return job_detail(job, tails, paths.job_dir(job["id"], create=False))


def run_log(job_id: str, rank: int = 0) -> str:
    from .store import paths

    job = _stored_job(job_id)
    if rank not in [r["rank"] for r in job["ranks"]]:
        raise LaunchError(f"job {job['id']} has ranks 0..{len(job['ranks']) - 1}; no rank {rank}")
    try:
        with open(paths.rank_log(job["id"], rank), encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run_compare(job_ids: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
    """Final metrics side by side, and each job's rank-0 metric history (for a plot)."""
    from .views.runs import compare_table

    found = [_stored_job(j) for j in job_ids]
    history = [{"id": j["id"], "metrics": store().metrics(j["id"], rank=0)} for j in found]
    return compare_table(found), history


def _stored_job(job_id: str) -> dict[str, Any]:
    st = store()
    _flush_store()
    job = st.job(job_id)
    if job is None:
        raise LaunchError(f"no job {job_id!r} in the run store (or the prefix is ambiguous); %runs lists them")
    return job


def _flush_store() -> None:
    if _WRITER is not None:
        _WRITER.flush()


def jobs() -> list[Job]:
    with _LOCK:
        return list(_JOBS)


def job_text(job: Job) -> str:
    return status_text(job.snapshot)


def _shutdown() -> None:
    stop_pool()
    if _WRITER is not None:
        _WRITER.close()


atexit.register(_shutdown)
