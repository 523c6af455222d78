"""Per-rank log files: the full output of every rank, written as it arrives."""

from __future__ import annotations

import threading

from . import paths


class RankLogs:
    """Append-only log files ``jobs/<id>/rank-<k>.log``; the kernel is the only writer."""

    def __init__(self, job_id: str, ranks: list[int]) -> None:
        self.job_id = job_id
        self.paths = {r: paths.rank_log(job_id, r) for r in ranks}
        self._files: dict = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, rank: int, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            f = self._files.get(rank)
            if f is None:  # opened on first output: a silent rank costs nothing
                f = self._files[rank] = open(self.paths[rank], "a", encoding="utf-8", errors="replace")
            f.write(text)

    def flush(self) -> None:
        with self._lock:
            for f in self._files.values():
                if not f.closed:
                    f.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for f in self._files.values():
                f.close()

    def read(self, rank: int) -> str:
        if not self._closed:
            self.flush()
        try:
            with open(self.paths[rank], encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""  # the rank printed nothing
