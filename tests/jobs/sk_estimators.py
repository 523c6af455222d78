"""Estimators for the sklearn tests: they record where they ran, fail or kill their engine.

Pickled by value (cloudpickle), so engines need not import this test module.
"""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Recording(ClassifierMixin, BaseEstimator):
    """A nearest-centroid classifier whose fit appends its process id to ``log``.

    ``sleep`` seconds per fit make the search long enough to interrupt; ``fail_on``
    raises ValueError for that ``shrink``; with a ``die_marker`` file holding an
    engine's pid, the first fit on that engine after ``die_after`` fits os._exit()s.
    """

    def __init__(self, shrink=0.0, log="", sleep=0.0, fail_on=None, die_marker="", die_after=4):
        self.shrink = shrink
        self.log = log
        self.sleep = sleep
        self.fail_on = fail_on
        self.die_marker = die_marker
        self.die_after = die_after

    def fit(self, X, y):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        if self.fail_on is not None and self.shrink == self.fail_on:
            raise ValueError(f"boom on purpose for shrink={self.shrink}")
        if self.die_marker and self._should_die():
            os._exit(1)
        if self.sleep:
            time.sleep(self.sleep)
        self.classes_ = np.unique(y)
        centres = np.array([X[y == c].mean(axis=0) for c in self.classes_])
        self.centres_ = (1 - self.shrink) * centres + self.shrink * X.mean(axis=0)
        return self

    def _should_die(self) -> bool:
        try:
            with open(self.die_marker) as f:
                pid = int(f.read().strip())
            with open(self.log) as f:
                fits = len(f.read().split())
        except (OSError, ValueError):
            return False
        if pid != os.getpid() or fits < self.die_after:
            return False
        try:
            os.remove(self.die_marker)  # only once, and only one engine wins the race
        except OSError:
            return False
        return True

    def predict(self, X):
        d = ((X[:, None, :] - self.centres_[None, :, :]) ** 2).sum(axis=2)
        return self.classes_[d.argmin(axis=1)]


def shout(i: int) -> int:
    print(f"task {i} on pid {os.getpid()}", flush=True)
    return i * i


def slow(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


def stubborn(ready_dir: str, seconds: float = 60) -> None:
    """A task that ignores interrupts (and says so with a file in ``ready_dir``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    open(os.path.join(ready_dir, str(os.getpid())), "w").close()
    time.sleep(seconds)


def active_backend() -> tuple[str, int | None]:
    """The joblib backend a task sees for its own parallel work."""
    from joblib.parallel import get_active_backend

    backend, n_jobs = get_active_backend()
    return type(backend).__name__, n_jobs


cloudpickle.register_pickle_by_value(sys.modules[__name__])
