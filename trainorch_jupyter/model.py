"""The shared vocabulary: Events and the Snapshot they reduce to.

Everything a job does is an append-only stream of :class:`Event` objects.  A
:class:`Snapshot` is ``reduce(events)``: the job's fields plus one row per rank.
The text view, the widget panel, the run store and the REST API all render the
same Snapshot through :meth:`Snapshot.to_json`.

This module imports nothing from the package.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

# job kinds
DISTRIBUTE = "distribute"
TUNE = "tune"
TRIAL = "trial"
VALIDATE = "validate"

# event kinds
JOB = "job"          # job created: data holds the job's static fields
STATUS = "status"    # state change of the job (rank None) or of one rank
METRIC = "metric"    # a report(): step/total and metrics
OUTPUT = "output"    # a chunk of a rank's stdout/stderr: data = {"stream", "text"}
TRIAL_UPDATE = "trial"  # a trial of a tune job started/reported/ended: data = the trial's fields (merged)
VALIDATION = "validation"  # a validate job's result: data = metrics, bounds, verdict

# states
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
LOST = "lost"
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED, LOST})

JOB_ROW = -1  # the rank of METRIC events about the job as a whole (its progress), not one rank


@dataclass(frozen=True)
class Event:
    """One thing that happened to a job, in order (``seq``) and in time."""

    job_id: str
    seq: int
    kind: str
    rank: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RankRow:
    """What is known about one rank of a job."""

    rank: int
    engine_id: int | None = None
    host: str = ""
    device: str = ""
    state: str = PENDING
    step: int | None = None
    total: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lines: int = 0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    """The state of one job, as reduced from its events."""

    id: str = ""
    kind: str = DISTRIBUTE
    parent_id: str | None = None
    framework: str = ""
    backend: str = ""
    world_size: int = 0
    state: str = PENDING
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    step: int | None = None
    total: int | None = None
    source: str = ""
    error: str = ""
    ranks: dict[int, RankRow] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)     # tune jobs: name, storage, directions, ...
    trials: dict[int, dict[str, Any]] = field(default_factory=dict)  # tune jobs: by trial number
    result: dict[str, Any] = field(default_factory=dict)    # validate jobs: metrics, bounds, passed
    last_seq: int = -1

    # -- reduction -----------------------------------------------------------------
    def apply(self, ev: Event) -> "Snapshot":
        """Fold one event into this snapshot (in place) and return it."""
        if ev.seq <= self.last_seq:
            return self  # replayed or duplicated: events are idempotent by seq
        self.last_seq = ev.seq
        d = ev.data
        if ev.kind == JOB:
            self.id = ev.job_id
            self.created = ev.time
            for key in ("kind", "parent_id", "framework", "backend", "world_size", "source", "study"):
                if key in d:
                    setattr(self, key, d[key])
            for r in d.get("ranks", []):
                self.ranks[r["rank"]] = RankRow(
                    rank=r["rank"],
                    engine_id=r.get("engine_id"),
                    host=r.get("host", ""),
                    device=r.get("device", ""),
                )
        elif ev.kind == STATUS:
            state = d["state"]
            if ev.rank is None:
                self.state = state
                if state == RUNNING and self.started is None:
                    self.started = ev.time
                if state in FINAL_STATES:
                    self.ended = ev.time
                    for row in self.ranks.values():
                        if row.state in (PENDING, RUNNING):
                            row.state = state if state != DONE else DONE
                if d.get("error"):
                    self.error = d["error"]
            else:
                row = self._row(ev.rank)
                row.state = state
                if d.get("error"):
                    row.error = d["error"]
        elif ev.kind == METRIC:
            row = self._row(ev.rank)
            if d.get("step") is not None:
                row.step = d["step"]
            if d.get("total") is not None:
                row.total = d["total"]
            row.metrics.update(d.get("metrics", {}))
            # a job may report its own progress as rank JOB_ROW (sklearn: tasks done / total)
            if ev.rank == JOB_ROW or (JOB_ROW not in self.ranks and (ev.rank == 0 or self.step is None)):
                self.step, self.total = row.step, row.total
        elif ev.kind == OUTPUT:
            self._row(ev.rank).lines += d.get("text", "").count("\n")
        elif ev.kind == TRIAL_UPDATE:
            trial = self.trials.setdefault(d["number"], {"number": d["number"]})
            for key, value in d.items():
                if key == "intermediate":  # {step: value}, reported a few at a time
                    trial.setdefault("intermediate", {}).update(value or {})
                else:
                    trial[key] = value
        elif ev.kind == VALIDATION:
            self.result = dict(d)
        return self

    def _row(self, rank: int | None) -> RankRow:
        key = -1 if rank is None else rank
        if key not in self.ranks:
            self.ranks[key] = RankRow(rank=key)
        return self.ranks[key]

    # -- derived -------------------------------------------------------------------
    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    @property
    def eta(self) -> float | None:
        el = self.elapsed
        if el is None or not self.step or not self.total or self.state != RUNNING:
            return None
        return el * (self.total - self.step) / self.step

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ranks"] = [self.ranks[k].to_json() for k in sorted(self.ranks)]
        out["trials"] = [self.trials[k] for k in sorted(self.trials)]
        out["elapsed"] = self.elapsed
        out["eta"] = self.eta
        return out


def reduce(events: Iterable[Event]) -> Snapshot:
    """Snapshot = reduce(events)."""
    snap = Snapshot()
    for ev in sorted(events, key=lambda e: e.seq):
        snap.apply(ev)
    return snap


class EventStream:
    """The event side of anything that runs as a job (a distribute job, a study run, a
    validation): numbers its Events, folds each into ``snapshot`` and hands it to the
    listeners (the store writer, a panel) in order."""

    def _init_stream(self, job_id: str, listeners: Iterable[Callable[[Event], None]] | None = None) -> None:
        self.id = job_id
        self.snapshot = Snapshot()
        self.events: list[Event] = []
        self._seq = 0
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Event], None]] = list(listeners or [])

    def emit(self, kind: str, rank: int | None, data: dict[str, Any], keep: bool = True) -> Event:
        """Append one event; ``keep=False`` for high-volume ones (output) that late subscribers skip."""
        with self._lock:
            ev = Event(self.id, self._seq, kind, rank, data)
            self._seq += 1
            self.snapshot.apply(ev)
            if keep:
                self.events.append(ev)
            listeners = list(self._listeners)
        for fn in listeners:
            fn(ev)
        return ev

    def subscribe(self, fn: Callable[[Event], None], replay: bool = False) -> Any:
        """Call ``fn`` with every event from now on (with ``replay``, first with the kept ones)."""
        with self._lock:
            past = list(self.events) if replay else []
            self._listeners.append(fn)
        for ev in past:
            fn(ev)

    @property
    def state(self) -> str:
        return self.snapshot.state
