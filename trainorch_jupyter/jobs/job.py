"""A job: one cell running as N ranks on the pool, watched until it ends.

A driver thread owns the job's life: it waits on the ranks' results, starts the
cancel path on the first failure (or when asked: interrupt, Stop, ``cancel()``),
kills and replaces engines that do not stop within the grace period, and turns
everything into Events.  The IOPub tap feeds output and reports in on the
client's IO thread.  Whoever shows the job (a blocking cell, a panel) only reads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import pickle
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import ipyparallel as ipp

from .. import model
from ..model import Event
from ..pool.engine_pool import EnginePool
from ..store import paths
from ..store.logs import RankLogs

REPORT_KEY = "__trainorch_reports__"
# drivers are pooled threads: starting a thread per job costs about a millisecond
_DRIVERS = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="trainorch-job")
DEFAULT_GRACE = 5.0
TAIL_LINES = 500
PENDING_LINES = 200
LATE_OUTPUT = 3.0  # seconds a finished job still collects output relayed late
PEER_ERRORS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


@dataclass
class RankPlan:
    rank: int
    engine_id: int
    host: str
    device: str
    local_rank: int
    local_world_size: int
    spec: dict[str, Any] = field(default_factory=dict)


class JobInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a job ran, and the job was cancelled.

    A KeyboardInterrupt (so "Run All" stops, and ``except KeyboardInterrupt`` works) that
    shows as one line: the frames of our wait loop say nothing to the user.
    """

    def __init__(self, what: str = "the job") -> None:
        super().__init__(f"{what} was cancelled on every engine; the pool is ready for the next cell")

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


JobInterrupted.__name__ = JobInterrupted.__qualname__ = "KeyboardInterrupt"  # what the notebook reports


class DistributedError(RuntimeError):
    """A rank failed.  Shown in the notebook without the kernel-side traceback."""

    def __init__(self, summary: str, details: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details

    def _render_traceback_(self) -> list[str]:
        return [f"DistributedError: {self.summary}", self.details]


class Job(model.EventStream):
    """A running or finished distributed job (also the handle ``--bg`` returns)."""

    def __init__(
        self,
        pool: EnginePool,
        job_id: str,
        source: str,
        plans: list[RankPlan],
        *,
        framework: str,
        backend: str,
        group_key: str | None,
        kind: str = model.DISTRIBUTE,
        parent_id: str | None = None,
        grace: float = DEFAULT_GRACE,
        listeners: list[Callable[[Event], None]] | None = None,
    ) -> None:
        self.pool = pool
        self.id = job_id
        self.source = source
        self.plans = plans
        self.grace = grace
        self.group_key = group_key
        self.group_addr: tuple | None = None  # (addr, port), or every rank's "host:port"
        self._init_stream(job_id, listeners)
        self.logs = RankLogs(job_id, [p.rank for p in plans])
        self.stop_path = os.path.join(paths.job_dir(job_id), "stop")
        self._tails = {p.rank: collections.deque(maxlen=TAIL_LINES) for p in plans}
        self._partial = {(p.rank, s): "" for p in plans for s in ("stdout", "stderr")}
        self._pending: dict[int, collections.deque] = {
            p.rank: collections.deque(maxlen=PENDING_LINES) for p in plans
        }
        self._dropped = {p.rank: 0 for p in plans}
        self._report_seq = {p.rank: -1 for p in plans}
        self.lost_reports = {p.rank: 0 for p in plans}
        self._msg_rank: dict[str, int] = {}
        self._early: dict[str, list[dict]] = {}
        self._submitting = False
        self._ars: dict[int, Any] = {}
        self._outcome: dict[int, Any] = {}
        self._quiet: set[int] = set()
        self._outcome_at: dict[int, float] = {}
        self._errors: dict[int, BaseException] = {}
        self._wake = threading.Event()
        self._done = threading.Event()
        self._cancel_reason: str | None = None
        self._cancel_started: float | None = None
        self.killed: list[int] = []
        self.ended_at: float | None = None
        self.panel: Any = None  # the live panel showing this job, if any
        self.results: dict[str, Any] = {}
        self.error: DistributedError | None = None
        self.emit(
            model.JOB,
            None,
            {
                "kind": kind,
                "parent_id": parent_id,
                "framework": framework,
                "backend": backend,
                "world_size": len(plans),
                "source": source,
                "ranks": [
                    {"rank": p.rank, "engine_id": p.engine_id, "host": p.host, "device": p.device}
                    for p in plans
                ],
            },
        )

    # -- events ------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None], replay: bool = False) -> dict[int, list[str]]:
        """Call ``fn`` with every event from now on; with ``replay``, first with the kept
        events so far.  Returns each rank's output tail as of subscribing, so a late
        subscriber (a panel) misses nothing."""
        with self._lock:
            past = list(self.events) if replay else []
            tails = {r: list(t) for r, t in self._tails.items()}
            partial = {k: v for k, v in self._partial.items() if v}
            self._listeners.append(fn)
        for ev in past:
            fn(ev)
        for (rank, _stream), text in partial.items():
            tails[rank].append(text)  # a line still being written
        return tails

    @property
    def world_size(self) -> int:
        return len(self.plans)

    # -- IOPub (client IO thread) ------------------------------------------------------------
    def on_iopub(self, msg: dict[str, Any]) -> bool:
        """Take a message of this job's ranks; True when it is ours (we keep its text)."""
        parent = msg.get("parent_header") or {}
        msg_id = parent.get("msg_id")
        if not msg_id:
            return False
        with self._lock:
            rank = self._msg_rank.get(msg_id)
            if rank is None:
                if self._submitting:
                    self._early.setdefault(msg_id, []).append(msg)
                    return True
                return False
        self._handle(rank, msg)
        return True

    def _handle(self, rank: int, msg: dict[str, Any]) -> None:
        kind = msg["header"]["msg_type"]
        if kind == "status":
            if msg["content"].get("execution_state") == "idle":
                # IOPub's idle comes after every output of the request: nothing more will arrive
                self._quiet.add(rank)
                self._wake.set()
        elif kind == "stream":
            self._on_text(rank, msg["content"].get("name", "stdout"), msg["content"].get("text", ""))
        elif kind == "data_message":
            from ipyparallel import serialize

            try:
                data, _ = serialize.deserialize_object(msg["buffers"])
            except Exception:
                return
            batch = data.get(REPORT_KEY) if isinstance(data, dict) else None
            if batch and batch.get("job") == self.id:
                self._on_reports(rank, batch["items"])

    def _on_text(self, rank: int, stream: str, text: str) -> None:
        self.logs.write(rank, text)
        with self._lock:
            key = (rank, stream if stream == "stderr" else "stdout")
            buf = self._partial[key] + text
            *complete, self._partial[key] = buf.split("\n")
            for line in complete:
                self._tails[rank].append(line)
                if len(self._pending[rank]) == self._pending[rank].maxlen:
                    self._dropped[rank] += 1
                self._pending[rank].append(line)
        self.emit(model.OUTPUT, rank, {"stream": stream, "text": text}, keep=False)

    def _on_reports(self, rank: int, items: list[tuple]) -> None:
        for seq, t, step, total, metrics in items:
            expected = self._report_seq[rank] + 1
            if seq != expected:
                self.lost_reports[rank] += max(0, seq - expected)
            self._report_seq[rank] = seq
            self.emit(
                model.METRIC, rank, {"seq": seq, "t": t, "step": step, "total": total, "metrics": metrics}
            )

    def reports_received(self, rank: int) -> int:
        return self._report_seq[rank] + 1

    # -- submission ----------------------------------------------------------------------------
    def submit(self, call: Callable, target: str) -> None:
        """Ship the cell to every rank and start the driver thread."""
        self.pool.tap.add(self.on_iopub)
        with self._lock:
            self._submitting = True
        try:
            for p in self.plans:
                ar = self.pool.view(p.engine_id).apply_async(call, target, self.source, p.spec)
                with self._lock:
                    self._ars[p.rank] = ar
                    for mid in ar.msg_ids:
                        self._msg_rank[mid] = p.rank
                        early = self._early.pop(mid, [])
                        for m in early:
                            self._handle(p.rank, m)
                ar.add_done_callback(lambda _f: self._wake.set())
                self.emit(model.STATUS, p.rank, {"state": model.RUNNING})
        finally:
            with self._lock:
                self._submitting = False
                self._early.clear()
        self.emit(model.STATUS, None, {"state": model.RUNNING})
        _DRIVERS.submit(self._drive)

    # -- the driver thread -----------------------------------------------------------------
    def _drive(self) -> None:
        last_flush = time.monotonic()
        try:
            while True:
                self._wake.wait(0.1)
                self._wake.clear()
                self._collect()
                if len(self._outcome) == len(self.plans) and self._drained():
                    break
                if self._cancel_reason is None and os.path.exists(self.stop_path):
                    self._cancel_reason = "cancel: stopped from the panel"  # the server's Stop
                self._advance_cancel()
                if time.monotonic() - last_flush > 0.5:
                    self.logs.flush()
                    last_flush = time.monotonic()
            self._finish()
        except BaseException:  # never leave a job hanging
            self.error = DistributedError("internal error while watching the job", traceback.format_exc())
            self.emit(model.STATUS, None, {"state": model.FAILED, "error": self.error.summary})
        finally:
            self.logs.flush()
            self.ended_at = time.monotonic()
            self._done.set()
            # Output a rank's children wrote to fd 1/2 is relayed by the engine's pipe
            # watcher and can arrive after the rank went idle: keep listening a little.
            timer = threading.Timer(LATE_OUTPUT, self._detach)
            timer.daemon = True
            timer.start()

    def _detach(self) -> None:
        self.pool.tap.remove(self.on_iopub)
        self.logs.close()

    def _collect(self) -> None:
        self._collect_quiet()
        if self._cancel_reason and self._cancel_started is None:
            self._start_cancel()

    def _drained(self) -> bool:
        """Every finished rank's output has arrived (a dead engine gets 2 s to flush)."""
        now = time.monotonic()
        return all(r in self._quiet or now - self._outcome_at[r] > 2.0 for r in self._outcome)

    def _collect_quiet(self) -> None:
        for rank, ar in list(self._ars.items()):
            if rank in self._outcome or not ar.ready():
                continue
            self._outcome_at[rank] = time.monotonic()
            try:
                self._outcome[rank] = ar.get(timeout=0)
                self.emit(model.STATUS, rank, {"state": model.DONE})
            except BaseException as e:  # RemoteError, EngineError, ...
                self._outcome[rank] = e
                if getattr(e, "ename", "") == "EngineError":
                    self._outcome_at[rank] -= 1.7  # a dead engine sends nothing more
                self._errors[rank] = e
                state = model.CANCELLED if self._cancel_reason and _is_interrupt(e) else model.FAILED
                self.emit(model.STATUS, rank, {"state": state, "error": _one_line(e)})
                if self._cancel_reason is None:
                    self._cancel_reason = f"rank {rank} failed"

    def _start_cancel(self) -> None:
        if not self._cancel_reason.startswith("cancel"):
            # a rank failed and tore down its group: peers in a collective with it
            # fail on their own within moments; interrupt only those still running
            deadline = time.monotonic() + min(1.0, self.grace)
            while time.monotonic() < deadline and len(self._outcome) < len(self.plans):
                self._wake.wait(0.05)
                self._wake.clear()
                self._collect_quiet()
        self._cancel_started = time.monotonic()
        running = [p.engine_id for p in self.plans if p.rank not in self._outcome]
        self.pool.interrupt(running)

    def _advance_cancel(self) -> None:
        if self._cancel_reason and self._cancel_started is None:
            self._start_cancel()
        if self._cancel_started is None or time.monotonic() - self._cancel_started < self.grace:
            return
        stuck = [p for p in self.plans if p.rank not in self._outcome]
        if stuck and not self.killed:
            self.killed = [p.engine_id for p in stuck]
            self.pool.kill(self.killed)
        elif stuck and time.monotonic() - self._cancel_started > self.grace + 20:
            for p in stuck:  # the controller never told us: give up on these ranks
                err = RuntimeError(f"engine {p.engine_id} did not answer after it was killed")
                self._outcome[p.rank] = self._errors[p.rank] = err
                self._quiet.add(p.rank)
                self.emit(model.STATUS, p.rank, {"state": model.LOST, "error": str(err)})

    def _finish(self) -> None:
        for rank, stream in list(self._partial):
            if self._partial[(rank, stream)]:
                self._on_text(rank, stream, "\n")
        if self._errors:
            self.pool.group_key = self.pool.group_addr = None
        elif self.group_key is not None:
            self.pool.group_key, self.pool.group_addr = self.group_key, self.group_addr
        healed = self.pool.heal() if (self._errors and self.pool.owned) else []
        if not self._errors:
            try:
                self._unpack_results()
            except Exception as e:
                self.error = DistributedError(f"the cell ran, but its results could not be loaded here: {e}", "")
                self.emit(model.STATUS, None, {"state": model.FAILED, "error": self.error.summary})
                return
            self.emit(model.STATUS, None, {"state": model.DONE})
            return
        self.error = self._build_error(healed)
        state = model.CANCELLED if self._cancel_reason and self._cancel_reason.startswith("cancel") else model.FAILED
        self.emit(model.STATUS, None, {"state": state, "error": self.error.summary})

    def _unpack_results(self) -> None:
        """Load pulled and gathered values (pickled once on the engines)."""
        for rank, out in self._outcome.items():
            for kind in ("gather", "pull"):
                for name, blob in out.get(kind, {}).items():
                    try:
                        value = pickle.loads(blob)
                    except Exception as e:
                        raise RuntimeError(f"--{kind} {name}: {type(e).__name__}: {e}") from None
                    if kind == "pull":
                        self.results[("pull", name)] = value
                    else:
                        self.results.setdefault(("gather", name), [None] * len(self.plans))[rank] = value

    def _build_error(self, healed: list[int]) -> DistributedError:
        root = self._root_cause()
        plan = self.plans[root]
        err = self._errors[root]
        if self._cancel_reason and self._cancel_reason.startswith("cancel"):
            summary = f"job {self._cancel_reason[len('cancel: '):] or 'cancelled'}"
        else:
            summary = f"rank {root} (engine {plan.engine_id} on {plan.host}) failed: {_one_line(err)}"
        parts = [_remote_traceback(err)]
        tail = list(self._tails[root])[-20:]
        if tail:
            parts.append(f"last output of rank {root}:\n" + "\n".join(f"  {line}" for line in tail))
        others = [r for r in sorted(self._errors) if r != root]
        if others:
            parts.append(
                "other ranks: "
                + "; ".join(f"rank {r}: {_one_line(self._errors[r])}" for r in others)
            )
        if self.killed:
            which = f"engine{'s' if len(self.killed) > 1 else ''} {', '.join(map(str, self.killed))}"
            parts.append(f"{which} did not stop within {self.grace:g} s and {'were' if len(self.killed) > 1 else 'was'} killed")
        if healed:
            parts.append(f"replaced dead engines of rank{'s' if len(healed) > 1 else ''} {', '.join(map(str, healed))}; the pool is ready")
        parts.append(f"full logs: {self.logs.paths[root].rsplit('/', 1)[0]}")
        return DistributedError(summary, "\n".join(p for p in parts if p))

    def _root_cause(self) -> int:
        """The rank whose failure started it: not one that only saw its peer vanish."""
        order = sorted(self._errors)
        killed = {p.rank for p in self.plans if p.engine_id in self.killed}  # stopped by us, not a cause
        primary = [
            r for r in order
            if r not in killed
            and not any(s in str(self._errors[r]) for s in PEER_ERRORS) and not _is_interrupt(self._errors[r])
        ]
        return (primary or [r for r in order if not _is_interrupt(self._errors[r])] or order)[0]

    # -- public handle ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None, on_tick: Callable[["Job"], None] | None = None,
             tick: float = 0.25) -> "Job":
        """Block until the job ends (interrupting it cancels the job); raise its error."""
        return block_until_done(self, timeout, on_tick, tick, stop_wait=self.grace + 30)

    def cancel(self, reason: str = "cancelled", wait: bool = True) -> None:
        """Stop every rank: interrupt, then kill and replace what is still busy after the grace period."""
        if self._done.is_set():
            return
        if self._cancel_reason is None:
            self._cancel_reason = f"cancel: {reason}"
        self._wake.set()
        if wait:
            self._done.wait(self.grace + 30)

    def take_lines(self) -> dict[int, tuple[list[str], int]]:
        """Lines printed since the last call, per rank, and how many were dropped from view."""
        out = {}
        with self._lock:
            for rank, pending in self._pending.items():
                if pending or self._dropped[rank]:
                    out[rank] = (list(pending), self._dropped[rank])
                    pending.clear()
                    self._dropped[rank] = 0
        return out

    def output(self, rank: int = 0, settle: bool = True) -> str:
        """Everything rank ``rank`` printed (stdout and stderr), from its log file.

        Right after a job ends, waits until output relayed late (from the rank's
        child processes) has had time to arrive, unless ``settle=False``.
        """
        if settle and self.ended_at is not None:
            time.sleep(max(0.0, self.ended_at + 1.0 - time.monotonic()))
        return self.logs.read(rank)

    def tail(self, rank: int = 0, n: int = 20) -> list[str]:
        with self._lock:
            return list(self._tails[rank])[-n:]

    def result(self, name: str) -> Any:
        """A ``--pull`` value (rank 0's) or a ``--gather`` list."""
        self._done.wait()
        if self.error is not None:
            raise self.error
        for key in (("pull", name), ("gather", name)):
            if key in self.results:
                return self.results[key]
        raise KeyError(f"{name!r} was neither pulled nor gathered by job {self.id}")

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.snapshot.framework or 'python'} x{self.world_size}: {self.state}>"


def block_until_done(job: Any, timeout: float | None, on_tick: Callable[[Any], None] | None, tick: float,
                     stop_wait: float) -> Any:
    """Wait for ``job`` (anything with ``_done``, ``cancel``, ``error``, ``id``) to end, calling
    ``on_tick`` meanwhile.  An interrupt cancels it and waits up to ``stop_wait`` seconds for the
    cancel to finish (a second interrupt changes nothing), then re-raises KeyboardInterrupt."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not job._done.wait(tick):
            if on_tick is not None:
                on_tick(job)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id} still running after {timeout:g} s")
    except KeyboardInterrupt:
        job.cancel("interrupted", wait=False)
        end = time.monotonic() + stop_wait
        while not job._done.is_set() and time.monotonic() < end:
            try:
                job._done.wait(0.1)
            except KeyboardInterrupt:
                continue  # already stopping: a second interrupt changes nothing
        if on_tick is not None:
            on_tick(job)
        raise JobInterrupted(f"job {job.id}") from None
    if on_tick is not None:
        on_tick(job)
    if job.error is not None:
        raise job.error
    return job


def _is_interrupt(e: BaseException) -> bool:
    return getattr(e, "ename", type(e).__name__) == "KeyboardInterrupt"


def _one_line(e: BaseException) -> str:
    if isinstance(e, ipp.RemoteError):
        name, value = e.ename, str(e.evalue)
        if name == "EngineError":
            return "its engine died (killed or crashed) while running the cell"
    else:
        name, value = type(e).__name__, str(e)
    first = value.strip().splitlines()[0] if value.strip() else ""
    return f"{name}: {first}" if first else name


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _remote_traceback(e: BaseException) -> str:
    """The rank's traceback from the user's cell down: our runner's frames are noise."""
    if isinstance(e, ipp.RemoteError):
        if e.ename == "EngineError":
            return ""
        lines = _ANSI.sub("", e.traceback or "").splitlines()
        keep = [i for i, line in enumerate(lines) if "<distribute-cell" in line]
        if keep:
            return "Traceback (most recent call last):\n" + "\n".join(lines[keep[0]:])
        # failed in our setup (rendezvous, backend) or collection: the summary says
        # it all; the runner's stack is noise, keep the exception lines only
        tail = [line for line in lines if line and not line.startswith((" ", "-", "File", "Cell"))]
        return "\n".join(tail[-2:])
    return "".join(traceback.format_exception(e))
