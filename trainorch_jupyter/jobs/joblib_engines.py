"""joblib's parallel backend on the engine pool, for ``--framework sklearn`` jobs.

ipyparallel ships a joblib backend (``view.register_joblib_backend()``) over a
LoadBalancedView; this one is ours because a job needs more than placement:
``n_jobs=-1`` as "every engine of this job", each task's engine known (for the
rank logs and progress rows), a task whose engine died retried on another one,
and aborts that leave the engines idle.  All of that lives in
:class:`~.kernel_job.KernelJob`; this module is the thin joblib side of it.

Imported only when such a job runs (it imports joblib).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, ThreadingBackend, parallel_config

from ..backends.sklearn_backend import effective_workers


class EngineBackend(AutoBatchingMixin, ParallelBackendBase):
    """Batches go to :meth:`KernelJob.submit_batch`; results come back through its futures."""

    supports_retrieve_callback = True
    default_n_jobs = -1

    def __init__(self, job: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.parallel = None

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        return effective_workers(n_jobs, len(self.job.live_engines()))

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, **backend_kwargs: Any) -> int:
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def start_call(self) -> None:
        self.job.call_started(self.parallel)

    def stop_call(self) -> None:
        self.job.call_ended(self.parallel)

    def submit(self, func: Any, callback: Any = None) -> Any:
        size = len(func) if hasattr(func, "__len__") else 1
        future = self.job.submit_batch(func, size)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out: Any) -> Any:
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        self.job.abort_tasks()

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int]:
        """joblib work inside a task uses threads on its engine, as many as the engine's
        share of its host's cores (the default for ``n_jobs=None`` there)."""
        return ThreadingBackend(nesting_level=(self.nesting_level or 0) + 1), self.job.threads


@contextlib.contextmanager
def routed(job: Any) -> Iterator[EngineBackend]:
    """joblib work started inside goes to ``job``'s engines (``n_jobs=None`` included)."""
    backend = EngineBackend(job)
    with parallel_config(backend=backend, n_jobs=-1):
        yield backend
