"""What the server extension does, without tornado (tested on its own).

It never imports torch, TensorFlow or Optuna, and never touches a file outside
``TRAINORCH_HOME``.  Stopping a job leaves a stop request in the job's
directory; the kernel's job driver picks it up within a tenth of a second and
cancels the job through the same path as an interrupt or ``job.cancel()``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from ..store import paths
from ..store.db import RunStore
from ..store.location import database_path

JOB_ID = re.compile(r"^[0-9a-f]{6,32}$")


class NotFound(LookupError):
    pass


class BadRequest(ValueError):
    pass


class TrainorchManager:
    def __init__(self) -> None:
        self._store: RunStore | None = None

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(database_path()[0])
        return self._store

    def _job_dir(self, job_id: str) -> str:
        if not JOB_ID.match(job_id or ""):
            raise BadRequest(f"not a job id: {job_id!r}")
        root = os.path.realpath(os.path.join(paths.home(), "jobs"))
        path = os.path.realpath(os.path.join(root, job_id))
        if not path.startswith(root + os.sep) or not os.path.isdir(path):
            raise NotFound(f"no job {job_id}")
        return path

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.jobs(limit)

    def job(self, job_id: str) -> dict[str, Any]:
        if not JOB_ID.match(job_id or ""):
            raise BadRequest(f"not a job id: {job_id!r}")
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def request_stop(self, job_id: str, user: str = "") -> dict[str, Any]:
        path = os.path.join(self._job_dir(job_id), "stop")
        with open(path, "w") as f:
            json.dump({"time": time.time(), "user": user}, f)
        return {"job": job_id, "stop_requested": True}
