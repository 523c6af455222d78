"""Check a ``%tune`` request, then start it on a pool.

:func:`check` validates everything that can be validated without a pool or
storage (flags, the objective) and returns a :class:`Request`; :func:`launch`
opens the storage, creates or resumes the study and starts a
:class:`~.study_job.TuneJob`.  Both raise :class:`~.options.TuneProblem` with a
one-line message before anything reaches the engines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle

from ..jobs.launch import LaunchError, push
from ..pool.engine_pool import EnginePool
from ..store import paths
from . import options
from .options import TuneProblem
from .storage import StorageProblem, check_spec, default_spec, open_storage
from .study_job import TuneJob


@dataclass
class Request:
    objective: dict[str, Any]
    name: str
    label: str
    n_trials: int
    directions: list[str]
    sampler: str
    pruner: str
    storage: str | None
    timeout: float | None
    engines_per_trial: int
    push: dict[str, Any] = field(default_factory=dict)
    catch: bool = False
    seed: int | None = None
    grid: dict[str, list] | None = None
    grace: float = 5.0
    source: str = ""


def check(
    objective: Any = None,
    *,
    cell: str | None = None,
    n_trials: int,
    direction: str | None = None,
    directions: list[str] | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    study: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
    engines_per_trial: int = 1,
    push_values: dict[str, Any] | None = None,
    catch: bool = False,
    seed: int | None = None,
    grid: dict[str, list] | None = None,
    grace: float = 5.0,
    source: str = "",
) -> Request:
    """Everything about the request that can be checked here and now."""
    options.require_optuna()
    if n_trials is None or n_trials < 1:
        raise TuneProblem(f"--trials must be a positive number of trials, got {n_trials}")
    if timeout is not None and not (0 < timeout < 1e7):
        raise TuneProblem(f"--timeout must be a positive number of seconds, got {timeout:g}")
    if engines_per_trial < 1:
        raise TuneProblem(f"--engines-per-trial must be 1 or more, got {engines_per_trial}")
    if grid is not None and (not isinstance(grid, dict) or not all(isinstance(v, (list, tuple)) for v in grid.values())):
        raise TuneProblem("--grid must name a dict {param: [values, ...]}")
    dirs = options.check_directions(direction, directions)
    sampler_name = options.check_sampler(sampler, dirs, grid)
    pruner_name = options.check_pruner(pruner, dirs)
    if storage is not None:
        try:
            storage = check_spec(storage)
        except StorageProblem as e:
            raise TuneProblem(str(e)) from None
    if cell is not None:
        src, filename = options.cell_objective(cell)
        blob = src.encode()
        task = {"source": src, "filename": filename, "function": options.CELL_FUNCTION}
        label = "cell"
    else:
        options.check_objective(objective)
        try:
            blob = cloudpickle.dumps(objective)
        except Exception as e:
            raise TuneProblem(
                f"the objective cannot be sent to the engines ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                "create what it needs inside it, or send it with --push") from None
        task = {"objective": blob, "lines": options.source_lines(objective)}
        label = options.describe(objective, False)
    if push_values:
        task["pushed"] = sorted(push_values)
    task["objective_key"] = options.objective_key(blob)
    if study is not None and not study.strip():
        raise TuneProblem("--study needs a name")
    name = study.strip() if study else f"{label}-{uuid.uuid4().hex[:12]}"
    return Request(task, name, label, n_trials, dirs, sampler_name, pruner_name, storage, timeout,
                   engines_per_trial, dict(push_values or {}), catch, seed, grid, grace, source)


def open_study(req: Request) -> tuple[Any, Any, str]:
    """Open the storage and create or resume the study: (study, storage, spec)."""
    import optuna

    spec = req.storage or default_spec(req.name, paths.home())
    try:
        storage = open_storage(spec, create=True)
    except Exception as e:
        raise TuneProblem(f"--storage {spec}: cannot open it ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''})") from None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table is the output
    try:
        study = optuna.create_study(
            study_name=req.name, storage=storage, load_if_exists=True,
            sampler=options.build_sampler(req.sampler, req.seed, req.grid),
            pruner=options.build_pruner(req.pruner),
            directions=req.directions,
        )
    except ValueError as e:
        raise TuneProblem(f"--study {req.name}: {str(e).splitlines()[0]}") from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    if [d.name.lower() for d in study.directions] != req.directions:
        have = ", ".join(d.name.lower() for d in study.directions)
        raise TuneProblem(f"--study {req.name} exists with direction {have}; use the same direction "
                          "or another --study name")
    return study, storage, spec


def launch(pool: EnginePool, req: Request, listeners: list[Callable] | None = None,
           job_state: Callable[[str], str | None] | None = None) -> TuneJob:
    """Create or resume the study and start the run on ``pool``."""
    size = len(pool.slots)
    if req.engines_per_trial > size:
        raise TuneProblem(f"--engines-per-trial {req.engines_per_trial}: this pool has {size} "
                          f"engine{'s' if size != 1 else ''}; use 1..{size}, or %cluster start -n {req.engines_per_trial}")
    if req.engines_per_trial > 1:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise TuneProblem("--engines-per-trial runs each trial as a PyTorch job, and torch is not installed: "
                              'pip install "trainorch-jupyter[torch]"')
    study, storage, spec = open_study(req)
    if pool.owned:
        pool.heal()
    if req.push:
        try:
            push(pool, pool.engine_ids(), req.push)
        except LaunchError as e:
            raise TuneProblem(str(e)) from None
        except Exception as e:
            raise TuneProblem(f"--push failed on the engines: {e}") from None
    job = TuneJob(
        pool, study, storage=storage, storage_spec=spec, objective=req.objective, n_trials=req.n_trials,
        directions=req.directions, sampler=req.sampler, pruner=req.pruner,
        grid=req.grid,
        pruner_obj=options.build_pruner(req.pruner), seed=req.seed, timeout=req.timeout,
        catch=req.catch, grace=req.grace, engines_per_trial=req.engines_per_trial, job_state=job_state,
        source=req.source or f"%tune {req.label}", listeners=listeners,
    )
    return job.start()
