"""Where the run store lives: ``TRAINORCH_HOME`` (default ``~/.trainorch``)."""

from __future__ import annotations

import os


def home() -> str:
    path = os.environ.get("TRAINORCH_HOME") or os.path.join(os.path.expanduser("~"), ".trainorch")
    os.makedirs(path, exist_ok=True)
    return path


def job_dir(job_id: str, create: bool = True) -> str:
    path = os.path.join(home(), "jobs", job_id)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def rank_log(job_id: str, rank: int) -> str:
    return os.path.join(job_dir(job_id), f"rank-{rank}.log")
