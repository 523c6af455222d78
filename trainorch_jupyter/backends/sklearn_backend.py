"""scikit-learn: the cell runs in the kernel, joblib's parallel work runs on the engines.

Unlike torch, nothing is set up on the engines: ``%%distribute --framework sklearn``
executes the cell in the notebook itself, with joblib's parallel backend routed
to the pool (see :mod:`trainorch_jupyter.jobs.kernel_job`).  ``n_jobs=-1`` (and
``n_jobs=None``, inside the cell) means one worker per engine.

Kernel side only: nothing here imports scikit-learn or joblib.
"""

from __future__ import annotations

import importlib.util

NAME = "sklearn"
MODULES = ("sklearn",)
KERNEL_SIDE = True  # the cell runs in the kernel; only its joblib tasks go to the engines
RETRIES = 1         # a task whose engine died is run again on another engine this many times
# the engine-side function that runs one joblib batch (called by name, see pool.remote)
RUN_BATCH = "trainorch_jupyter.runtime.tasks:run_batch"
# %%distribute flags that only mean something for a cell shipped to the engines
ENGINE_FLAGS = ("--push", "--pull", "--gather", "--backend", "--timeout", "--bg")


def is_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None and importlib.util.find_spec("joblib") is not None


def install_hint() -> str:
    return 'pip install "trainorch-jupyter[sklearn]"'


def rank_env(**_: object) -> dict[str, str]:
    """No per-engine environment: engines only run joblib tasks (a pure function)."""
    return {}


def effective_workers(n_jobs: int | None, engines: int) -> int:
    """How many tasks run at once for joblib's ``n_jobs`` on ``engines`` engines.

    ``-1`` (or ``None``) is every engine, ``-2`` all but one, as joblib counts CPUs;
    a positive number is capped at the engine count.  One engine still gets the
    work (joblib would run ``1`` in the kernel), unless ``n_jobs=1`` was asked for.
    """
    if engines < 1:
        return 1
    if n_jobs is None or n_jobs == -1:
        workers = engines
    elif n_jobs < 0:
        workers = max(1, engines + 1 + n_jobs)
    elif n_jobs == 1:
        return 1
    else:
        workers = min(n_jobs, engines)
    return max(2, workers) if engines == 1 else workers
