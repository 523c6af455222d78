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
from .jobs.kernel_job import KernelJob, launch_kernel
from .jobs.launch import LaunchError, check_pushable, launch
from .jobs.source import CellError, detect_framework, parse
from .pool.engine_pool import EnginePool, PoolError
from .pool.leases import GpuLeaseError
from .store.db import RunStore, StoreWriter
from .store.location import database_path
from .tuning.options import TuneProblem  # light: Optuna is imported only when a study runs
from .validation.errors import PROBLEMS as VALIDATION_PROBLEMS
from .validation.errors import ValidationFailed  # noqa: F401
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
UsageProblem = (LaunchError, CellError, PoolError, GpuLeaseError, UnknownFramework, TuneProblem,
                *VALIDATION_PROBLEMS)


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
        _publish_pool(_POOL)
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
        _publish_pool(_POOL)
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
    _unpublish_pool(pool)
    return True


def restart_pool(engine: int | None = None) -> EnginePool:
    pool = _require_pool()
    for job in list(_JOBS):
        if not job.done:
            job.cancel("pool restarted")
    pool.restart(engine)
    _publish_pool(pool)
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
    kernel_side = False
    if framework is not None:
        mod = backends.get(framework)
        if not mod.is_available():
            raise LaunchError(f"{framework} is not installed: {mod.install_hint()}")
        trouble = mod.problem() if hasattr(mod, "problem") else None  # e.g. tf_keras missing
        if trouble:
            raise LaunchError(trouble)
        kernel_side = getattr(mod, "KERNEL_SIDE", False)
        if kernel_side:
            _check_kernel_side(framework, push=push, pull=pull, gather=gather, backend=backend,
                               timeout=timeout, bg=bg)
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
    _refuse_if_busy()
    pool = ensure_pool(n, log=log)
    if kernel_side:  # the cell runs here; its joblib tasks go to the engines
        job = launch_kernel(pool, source, framework=framework, n=n, grace=grace, listeners=[_writer(log)])
    else:
        job = launch(
            pool, source, framework=framework, n=n, backend=backend, timeout=timeout,
            push_values=values, pull=list(pull), gather=list(gather), grace=grace,
            listeners=[_writer(log)], log=log,
        )
    _register(job)
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
        if kernel_side:
            _run_in_kernel(job, namespace, log)
        else:
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
    final, verdicts = st.final_figures(listed)
    return jobs_table(listed, final, verdicts)


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


def _register(job: Any) -> None:
    """Keep a job (of any kind) among this kernel's jobs: the running ones and recent history."""
    with _LOCK:
        _JOBS[:] = _JOBS[-49:] + [job]


def _refuse_if_busy() -> None:
    """One job at a time on the pool: say which one runs, and how to end it."""
    running = [j for j in jobs() if not j.done]
    if running:
        raise LaunchError(
            f"job {running[0].id} is still running on the pool; wait for it (job.wait()) "
            "or stop it (job.cancel()) first"
        )


def job_text(job: Job) -> str:
    return status_text(job.snapshot)


def _shutdown() -> None:
    stop_pool()
    if _WRITER is not None:
        _WRITER.close()


atexit.register(_shutdown)


# ---- pool records for the sidebar (server extension) ------------------------------------------
def _publish_pool(pool: EnginePool) -> None:
    """Let the sidebar see this pool and ask it to stop or restart engines (see pool_records)."""
    from . import pool_records

    pool_records.publish(pool, stop_pool, restart_pool)


def _unpublish_pool(pool: EnginePool) -> None:
    from . import pool_records

    pool_records.unpublish(pool)


# ---- kernel-side frameworks (sklearn): the cell runs here, joblib's tasks on the engines

def _check_kernel_side(framework: str, *, push: Sequence[str], pull: Sequence[str],
                       gather: Sequence[str], backend: str | None, timeout: float | None, bg: bool) -> None:
    """Flags that only mean something for a cell shipped to the engines are an error."""
    given = {"--push": bool(push), "--pull": bool(pull), "--gather": bool(gather),
             "--backend": backend is not None, "--timeout": timeout is not None, "--bg": bg}
    bad = [flag for flag, on in given.items() if on]
    if bad:
        raise LaunchError(
            f"{bad[0]} does not apply to --framework {framework}: the cell runs in the notebook "
            "(its names are already here) and only its joblib tasks run on the engines"
        )


def _run_in_kernel(job: KernelJob, namespace: dict[str, Any], log: Callable[[str], None]) -> None:
    from .jobs.joblib_engines import routed
    from .model import DONE

    shown = False
    try:
        job.run(namespace, routed)
    except DistributedError:
        shown = True  # its details carry the notices
        raise
    finally:
        if not shown:
            for note in job.notices:
                log(f"trainorch: {note}")
        if job.tasks_done == 0 and job.state == DONE:
            log("trainorch: no joblib work reached the engines; use n_jobs=-1 "
                "(n_jobs=1 runs in the notebook)")


# ---- %tune ------------------------------------------------------------------------------
def tune(
    objective: Any = None,
    *,
    cell: str | None = None,
    n_trials: int,
    namespace: dict[str, Any] | None = None,
    direction: str | None = None,
    directions: Sequence[str] | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    study: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
    engines_per_trial: int = 1,
    push: Sequence[str] = (),
    catch: bool = False,
    seed: int | None = None,
    grid: dict[str, list] | None = None,
    out: str | None = None,
    grace: float = DEFAULT_GRACE,
    show: bool = True,
    source: str = "",
    log: Callable[[str], None] = print,
) -> Any:
    """Run an Optuna search over the pool: one trial per engine, until ``n_trials`` more finish.

    ``objective`` is a function of an Optuna trial; ``cell`` is the ``%%tune`` form
    (a body whose last expression is the value).  Blocks, showing the trial table,
    and returns the :class:`~trainorch_jupyter.tuning.study_job.TuneJob` (its
    ``.study`` is the Optuna study).  Raises ``TrialError`` when the search stops
    on a failed trial (without ``catch``), KeyboardInterrupt when interrupted.
    """
    from .tuning import run as tune_run
    from .views.tune import TunePanelView, outcome_text, study_text

    namespace = {} if namespace is None else namespace
    values = check_pushable(namespace, list(push))
    req = tune_run.check(
        objective, cell=cell, n_trials=n_trials, direction=direction,
        directions=list(directions) if directions else None, sampler=sampler, pruner=pruner, study=study,
        storage=storage, timeout=timeout, engines_per_trial=engines_per_trial, push_values=values,
        catch=catch, seed=seed, grid=grid, grace=grace, source=source,
    )
    _refuse_if_busy()
    pool = ensure_pool(log=log)

    def job_state(job_id: str) -> str | None:
        found = store(log).job(job_id)
        return found["state"] if found else None

    job = tune_run.launch(pool, req, listeners=[_writer(log)], job_state=job_state)
    _register(job)
    in_kernel = _in_kernel()
    panel = TunePanelView(job) if show and in_kernel and widgets_available() else None
    job.panel = panel
    handle = None
    if show and in_kernel and panel is None:
        from IPython.display import display

        handle = display({"text/plain": ""}, raw=True, display_id=True)

    def tick(j: Any) -> None:
        if handle is not None:
            handle.update({"text/plain": study_text(j.snapshot)}, raw=True)

    try:
        job.wait(on_tick=tick)
    finally:
        if out:
            namespace[out] = job.study
        if panel is not None:
            panel.final()
        elif handle is not None:
            from IPython.display import display

            handle.update({"text/plain": ""}, raw=True)
            display({"text/plain": study_text(job.snapshot)}, raw=True)
        elif show:
            log(study_text(job.snapshot))
    if show:
        log(outcome_text(job))
    return job


def show_study(name: str, storage: str | None = None) -> Any:
    """Render a study again from its storage (``%tune --show NAME``); returns its Snapshot."""
    from .tuning.show import study_snapshot
    from .views.tune import show_static

    _flush_store()
    snap = study_snapshot(store(), name, storage)
    if _in_kernel():
        show_static(snap)
    else:
        from .views.tune import study_text

        print(study_text(snap))
    return snap


# ---------------------------------------------------------------------------- %validate


def validate(
    model: Any,
    X: Any = None,
    y: Any = None,
    *,
    namespace: dict[str, Any] | None = None,
    metrics: Sequence[Any] | None = None,
    min: dict[str, float] | Sequence[tuple[str, float]] | None = None,  # noqa: A002
    max: dict[str, float] | Sequence[tuple[str, float]] | None = None,  # noqa: A002
    baseline: str | None = None,
    tolerance: float = 0.0,
    cv: int | None = None,
    fit: Callable[..., Any] | str | None = None,
    task: str | None = None,
    outputs: str = "auto",
    name: str | None = None,
    n: int | None = None,
    show: bool = True,
    raise_on_fail: bool = True,
    source: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``X, y``, check it, record it, show it.

    ``model`` is a scikit-learn estimator, a torch ``nn.Module`` or a Keras model,
    or the name of one (looked up in ``namespace``, else on the engines, where it
    is evaluated data-parallel).  ``min``/``max`` map metric names to bounds;
    ``baseline`` names a stored validation (``name=`` of an earlier one, or a job
    id prefix) that no metric may fall behind by more than ``tolerance``.  With
    ``cv=K`` the model is cross-validated in K folds across the engines (``fit``:
    a function ``fit(model, X_train, y_train)`` for torch/Keras).  Returns the
    validation (as stored); raises :class:`ValidationFailed` when a check fails
    (unless ``raise_on_fail=False``) and one of :data:`UsageProblem` for a bad request.
    """
    from .validation import runner
    from .validation.checks import bound_pairs
    from .validation.errors import CheckError
    from .validation.metrics import REGISTRY
    from .views.validation import bundle, validation_text

    namespace = {} if namespace is None else namespace
    obj, model_name = model, None
    if isinstance(model, str):
        model_name = model
        obj = namespace.get(model) if model in namespace else None
    fit_fn = namespace.get(fit) if isinstance(fit, str) else fit
    if isinstance(fit, str) and not callable(fit_fn):
        raise CheckError(f"--fit {fit}: no function of that name in the notebook")

    if metrics is not None:  # a name that is no known metric but a function in the notebook: that function
        metrics = [namespace[m] if isinstance(m, str) and m.strip().lower() not in REGISTRY
                   and m != "confusion_matrix" and callable(namespace.get(m)) else m for m in metrics]

    def engine_pool(start: bool) -> EnginePool | None:
        _refuse_if_busy()
        return ensure_pool(n, log=log) if start else current_pool()

    def lookup(key: str) -> dict[str, Any] | None:
        _flush_store()
        return store(log).validation(key)

    req = runner.Request(
        model=obj, model_name=model_name or "", X=X, y=y, metrics=metrics,
        mins=bound_pairs(min, ">="), maxs=bound_pairs(max, "<="),
        baseline=baseline, tolerance=float(tolerance), cv=cv, fit=fit if isinstance(fit, str) else None,
        fit_fn=fit_fn, task=task, outputs=outputs, name=name, n=n,
        line=source or f"api.validate({model_name or type(model).__name__})",
    )
    ctx = runner.Context(
        ensure_pool=lambda: engine_pool(True), current_pool=lambda: engine_pool(False),
        baseline_lookup=lookup, listeners=[_writer(log)], register=_register, jobs=jobs,
    )
    result = runner.validate(req, ctx)
    if show:
        if _in_kernel():
            from IPython.display import display

            display(bundle(result), raw=True)
        else:
            log(validation_text(result))
    if raise_on_fail and not result["passed"]:
        raise ValidationFailed(result)
    return result
