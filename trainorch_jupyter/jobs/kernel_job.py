"""A job whose cell runs in the kernel and sends its joblib tasks to the engines.

``%%distribute --framework sklearn`` runs the cell here, in the notebook's own
namespace, with joblib's parallel backend routed to the pool
(:mod:`.joblib_engines`).  :class:`KernelJob` is the scheduler behind that
backend: one task in flight per engine, sent to whichever engine is idle, so
``n_jobs=-1`` means "every engine" and each task's engine is known (its output
goes to that rank's log, its progress to that rank's row).

It is a :class:`~.job.Job` like the others: the same Events, run store, panel,
Stop and logs.  What differs is who runs the cell (the kernel's main thread,
not a driver thread) and what a failure means:

- a task that raises: the cell fails with that task's own exception, with the
  engine's traceback as its cause;
- an engine that dies under a task: the task runs again on another engine
  (``retries`` times), completed tasks are kept; the dead engine is replaced
  when the cell ends;
- an interrupt, the panel's Stop or ``job.cancel()``: queued tasks are dropped,
  running ones interrupted, engines still busy after the grace period killed
  and replaced.  The engines end idle.
"""

from __future__ import annotations

import collections
import concurrent.futures
import linecache
import os
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ipyparallel as ipp

from .. import backends, model
from ..pool.engine_pool import EnginePool
from ..pool.remote import call
from .job import LATE_OUTPUT, DistributedError, Job, JobInterrupted, RankPlan
from .launch import cell_filename, plan
from .source import to_python

from ..model import JOB_ROW  # the Snapshot row of the job's own progress (tasks done / total)


class JobCancelled(RuntimeError):
    """The job was stopped (Stop, interrupt, ``job.cancel()``): its tasks were dropped."""


class EngineLost(RuntimeError):
    """A task's engine died and no other engine could run it again."""


class RemoteTraceback(Exception):
    """The engine-side traceback of a task's error (set as the error's ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass
class _Task:
    batch: Any
    size: int
    future: concurrent.futures.Future
    tries: int = 0
    died_on: list[int] = field(default_factory=list)


class KernelJob(Job):
    """The cell runs in the kernel; joblib batches run on the engines of ``plans``."""

    def __init__(
        self,
        pool: EnginePool,
        job_id: str,
        source: str,
        plans: list[RankPlan],
        *,
        framework: str,
        run_batch: str,
        retries: int = 1,
        grace: float = 5.0,
        listeners: list[Callable[[model.Event], None]] | None = None,
    ) -> None:
        super().__init__(
            pool, job_id, source, plans, framework=framework, backend="joblib", group_key=None,
            grace=grace, listeners=listeners,
        )
        self.run_batch = run_batch
        self.retries = retries
        self._rank_of = {p.engine_id: p.rank for p in plans}
        self._host_of = {p.engine_id: p.host for p in plans}
        self._tasks_lock = threading.RLock()
        self._idle: list[int] = [p.engine_id for p in plans]
        self._queue: collections.deque[_Task] = collections.deque()
        self._running: dict[int, _Task] = {}
        self._dead: list[int] = []
        self.tasks_done = 0
        self.tasks_by_engine = {p.engine_id: 0 for p in plans}
        self.notices: list[str] = []
        self._finished_total = 0      # tasks of parallel calls that have ended
        self._parallel: Any = None    # the joblib Parallel call in progress, if any
        self._main: threading.Thread | None = None
        self._aborting = False
        # threads for joblib work nested inside a task: the smallest engine's share of its cores
        self.threads = min((s.threads for s in pool.slots[: len(plans)]), default=1)

    # -- what the joblib backend calls -----------------------------------------------------------
    def live_engines(self) -> list[int]:
        with self._tasks_lock:
            return [p.engine_id for p in self.plans if p.engine_id not in self._dead]

    def call_started(self, parallel: Any) -> None:
        self._parallel = parallel

    def call_ended(self, parallel: Any) -> None:
        with self._tasks_lock:
            self._finished_total = self.tasks_done
            if self._parallel is parallel:
                self._parallel = None

    def submit_batch(self, batch: Any, size: int) -> concurrent.futures.Future:
        """Queue one joblib batch; its future resolves to the batch's results.

        Never raises: joblib may call this from a callback thread, where an
        exception would be lost and the Parallel call would wait forever.
        """
        task = _Task(batch, size, concurrent.futures.Future())
        with self._tasks_lock:
            if self._cancel_reason:
                task.future.set_exception(JobCancelled(self._cancel_text()))
                return task.future
            if not self.live_engines():
                task.future.set_exception(EngineLost(self._no_engine_text()))
                return task.future
            self._queue.append(task)
        self._pump()
        return task.future

    def abort_tasks(self, reason: str = "the parallel call was aborted") -> None:
        """Drop queued tasks and stop running ones (joblib aborts after a failed task or an
        interrupt); returns when the engines are idle again, killing any still busy after
        the grace period (they are replaced when the cell ends)."""
        with self._tasks_lock:
            self._aborting = True  # a task whose engine dies now is not run again
            queued = list(self._queue)
            self._queue.clear()
            running = list(self._running)
        try:
            for t in queued:
                _fail(t.future, JobCancelled(reason))
            if not running:
                return
            self.pool.interrupt(running)
            deadline = time.monotonic() + self.grace
            while self._busy(running) and time.monotonic() < deadline:
                _sleep(0.05)
            stuck = self._busy(running)
            if stuck:
                self.killed.extend(stuck)
                self.pool.kill(stuck)
                deadline = time.monotonic() + 20  # the controller reports them dead: wait for that
                while self._busy(stuck) and time.monotonic() < deadline:
                    _sleep(0.05)
                self._forget(stuck)
        finally:
            with self._tasks_lock:
                self._aborting = False

    # -- scheduling ----------------------------------------------------------------------------
    def _pump(self) -> None:
        """Send queued tasks to idle engines, one task per engine at a time."""
        while True:
            with self._tasks_lock:
                if not self._queue or not self._idle:
                    return
                task = self._queue.popleft()
                eid = self._idle.pop(0)
                self._running[eid] = task
            rank = self._rank_of[eid]
            try:
                ar = self.pool.view(eid).apply_async(call, self.run_batch, task.batch)
            except Exception as e:  # the engine is gone (or the batch cannot be sent)
                gone = eid not in self.pool.alive_ids()
                with self._tasks_lock:
                    self._running.pop(eid, None)
                    if gone:
                        self._mark_dead(eid)
                        self._queue.appendleft(task)
                    else:
                        self._idle.append(eid)
                if not gone:
                    _fail(task.future, e)
                if gone and not self.live_engines():
                    self._fail_queued(EngineLost(self._no_engine_text()))
                continue
            with self._lock:
                for mid in ar.msg_ids:
                    self._msg_rank[mid] = rank  # its output goes to this rank's log
            ar.add_done_callback(lambda _f, t=task, e=eid, a=ar: self._on_done(t, e, a))

    def _on_done(self, task: _Task, eid: int, ar: Any) -> None:
        """A task came back (on the client's IO thread)."""
        rank = self._rank_of[eid]
        try:
            out, err = ar.get(timeout=0), None
        except BaseException as e:
            out, err = None, e
        outcome: tuple[str, Any] | None = None
        if err is not None and getattr(err, "ename", "") == "EngineError":
            with self._tasks_lock:
                self._running.pop(eid, None)
                self._mark_dead(eid)
                alive = self.live_engines()
                task.died_on.append(eid)
                if task.tries < self.retries and alive and not (self._cancel_reason or self._aborting):
                    task.tries += 1
                    self._queue.appendleft(task)
                    self.notices.append(
                        f"engine {eid} (rank {rank}) died while running a task; "
                        f"the task ran again on another engine"
                    )
                else:
                    outcome = ("error", EngineLost(self._lost_text(task, alive)))
        else:
            with self._tasks_lock:
                self._running.pop(eid, None)
                if eid not in self._dead:
                    self._idle.append(eid)
            if err is not None:
                interrupted = getattr(err, "ename", "") == "KeyboardInterrupt"
                outcome = ("error", JobCancelled(self._cancel_text()) if interrupted else err)
            elif out[0] == "ok":
                outcome = ("ok", out[1])
                self._progress(eid, task.size)
            elif out[0] == "interrupted":
                outcome = ("error", JobCancelled(self._cancel_text()))
            else:
                outcome = ("error", _task_error(out, eid, rank))
        self._pump()
        if outcome is not None:
            if outcome[0] == "ok":
                if not task.future.done():
                    task.future.set_result(outcome[1])
            else:
                _fail(task.future, outcome[1])

    def _mark_dead(self, eid: int) -> None:
        if eid not in self._dead:
            self._dead.append(eid)
            if eid in self._idle:
                self._idle.remove(eid)
            self.emit(model.STATUS, self._rank_of[eid],
                      {"state": model.FAILED, "error": "its engine died (killed or crashed) while running a task"})

    def _busy(self, engines: list[int]) -> list[int]:
        with self._tasks_lock:
            return [e for e in engines if e in self._running]

    def _forget(self, engines: list[int]) -> None:
        """Engines that were killed and never reported back: count them dead."""
        with self._tasks_lock:
            for eid in engines:
                task = self._running.pop(eid, None)
                self._mark_dead(eid)
                if task is not None:
                    _fail(task.future, JobCancelled(self._cancel_text()))

    def _fail_queued(self, err: BaseException) -> None:
        with self._tasks_lock:
            queued = list(self._queue)
            self._queue.clear()
        for t in queued:
            _fail(t.future, err)

    # -- progress --------------------------------------------------------------------------------
    def _progress(self, eid: int, size: int) -> None:
        with self._tasks_lock:
            self.tasks_done += size
            self.tasks_by_engine[eid] += size
            done, mine, total = self.tasks_done, self.tasks_by_engine[eid], self._total()
        self.emit(model.METRIC, self._rank_of[eid], {"t": time.time(), "step": mine, "total": None, "metrics": {}})
        self.emit(model.METRIC, JOB_ROW, {"t": time.time(), "step": done, "total": total, "metrics": {}})

    def _total(self) -> int | None:
        """Tasks of this job so far plus the running call's total, once joblib knows it."""
        p = self._parallel
        if p is None:
            return self._finished_total or None
        try:
            n = p.n_tasks
            if n is None and p._original_iterator is None:  # every task was taken from the iterator
                n = p.n_dispatched_tasks + sum(len(b) for b in list(p._ready_batches.queue))
        except Exception:
            n = None
        return None if n is None else self._finished_total + n

    # -- the cell ---------------------------------------------------------------------------------
    def run(self, namespace: dict[str, Any], routed: Callable[["KernelJob"], Any]) -> "KernelJob":
        """Run the cell here, in ``namespace``, inside ``routed(self)`` (the joblib context).

        Raises what the cell raised (a task's own exception), :class:`DistributedError`
        when an engine was lost or the job was stopped, or KeyboardInterrupt.
        """
        text = to_python(self.source)
        filename = cell_filename(self.source)
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        code = compile(text, filename, "exec")
        self._main = threading.current_thread()
        self.pool.tap.add(self.on_iopub)
        for p in self.plans:
            self.emit(model.STATUS, p.rank, {"state": model.RUNNING})
        self.emit(model.STATUS, None, {"state": model.RUNNING})
        self.emit(model.METRIC, JOB_ROW, {"t": time.time(), "step": 0, "total": None, "metrics": {}})
        watcher = threading.Thread(target=self._watch, name=f"trainorch-watch-{self.id}", daemon=True)
        watcher.start()
        error: BaseException | None = None
        try:
            with routed(self):
                exec(code, namespace)
        except BaseException as e:
            error = e
        try:
            self._end(error)
        finally:
            self._main = None
        return self

    def _end(self, error: BaseException | None) -> None:
        interrupted = isinstance(error, KeyboardInterrupt)
        if interrupted and not self._cancel_reason:
            self._cancel_reason = "cancel: interrupted"
        try:
            self.abort_tasks("the cell ended")
        except KeyboardInterrupt:
            pass  # already stopping: a second interrupt changes nothing
        healed = self.pool.heal() if (self._dead and self.pool.owned) else []
        if healed:
            self.notices.append(
                f"replaced dead engine{'s' if len(healed) > 1 else ''} of rank"
                f"{'s' if len(healed) > 1 else ''} {', '.join(map(str, healed))}; the pool is ready"
            )
        self.logs.flush()
        self.ended_at = time.monotonic()
        user_interrupt = interrupted and self._cancel_reason == "cancel: interrupted"
        if error is None and not self._cancel_reason:
            with self._tasks_lock:
                done = self.tasks_done
            self.emit(model.METRIC, JOB_ROW, {"t": time.time(), "step": done, "total": done, "metrics": {}})
            self.emit(model.STATUS, None, {"state": model.DONE})
        elif self._cancel_reason and (error is None or interrupted or isinstance(error, JobCancelled)):
            self.error = DistributedError(f"job {self._cancel_text()}", self._details())
            self.emit(model.STATUS, None, {"state": model.CANCELLED, "error": self.error.summary})
        elif isinstance(error, EngineLost):
            self.error = DistributedError(str(error), self._details())
            self.emit(model.STATUS, None, {"state": model.FAILED, "error": self.error.summary})
        else:
            self.emit(model.STATUS, None, {"state": model.FAILED, "error": _one_line(error)})
        self._done.set()
        timer = threading.Timer(LATE_OUTPUT, self._detach)
        timer.daemon = True
        timer.start()
        if user_interrupt:
            raise JobInterrupted(f"job {self.id}") from None
        if self.error is not None:
            raise self.error
        if error is not None:
            raise error

    def _details(self) -> str:
        parts = list(self.notices)
        if self.killed:
            parts.append(f"engines {', '.join(map(str, self.killed))} did not stop within {self.grace:g} s and were killed")
        with self._tasks_lock:
            parts.append(f"{self.tasks_done} task{'s' if self.tasks_done != 1 else ''} had completed")
        parts.append(f"full logs: {self.logs.paths[self.plans[0].rank].rsplit('/', 1)[0]}")
        return "\n".join(parts)

    def _watch(self) -> None:
        """While the cell runs: pick up the panel's Stop, flush the rank logs."""
        last_flush = time.monotonic()
        while not self._done.wait(0.1):
            if self._cancel_reason is None and _exists(self.stop_path):
                self.cancel("stopped from the panel")
            if time.monotonic() - last_flush > 0.5:
                self.logs.flush()
                last_flush = time.monotonic()

    # -- public handle ---------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled", wait: bool = True) -> None:
        """Stop the job: no more tasks start, queued ones are dropped, running ones interrupted.

        The cell then fails at its parallel call with "job <reason>".
        """
        if self._done.is_set():
            return
        with self._tasks_lock:
            if self._cancel_reason is None:
                self._cancel_reason = f"cancel: {reason}"
            queued = list(self._queue)
            self._queue.clear()
            running = list(self._running)
        for t in queued:
            _fail(t.future, JobCancelled(self._cancel_text()))
        self.pool.interrupt(running)
        if wait and threading.current_thread() is not self._main:
            self._done.wait(self.grace + 30)

    def _cancel_text(self) -> str:
        reason = self._cancel_reason or "cancel: interrupted"
        return reason[len("cancel: "):] if reason.startswith("cancel: ") else reason

    def _no_engine_text(self) -> str:
        return "no engine of the pool is alive to run the task; %cluster restart, then run the cell again"

    def _lost_text(self, task: _Task, alive: list[int]) -> str:
        where = ", then ".join(f"engine {e} (rank {self._rank_of[e]} on {self._host_of[e]})" for e in task.died_on)
        why = "no engine is left to run it" if not alive else f"it was tried {task.tries + 1} times"
        return f"a task's engine died: {where} died while running it, and {why}"

    def __repr__(self) -> str:
        return f"<KernelJob {self.id} {self.snapshot.framework} x{self.world_size}: {self.state}>"


def launch_kernel(
    pool: EnginePool,
    source: str,
    *,
    framework: str,
    n: int | None = None,
    grace: float = 5.0,
    listeners: list | None = None,
) -> KernelJob:
    """Plan a kernel-side job on the first ``n`` engines (the whole pool by default)."""
    mod = backends.get(framework)
    plans, _backend, _key, shared = plan(
        pool, source, n=n, framework=framework, backend=None, timeout=None, pull=[], gather=[],
    )
    return KernelJob(
        pool, shared["job_id"], source, plans, framework=framework, run_batch=mod.RUN_BATCH,
        retries=getattr(mod, "RETRIES", 1), grace=grace, listeners=listeners,
    )


def _task_error(out: tuple, eid: int, rank: int) -> BaseException:
    """The task's own exception, rebuilt here, with the engine's traceback as its cause."""
    _, blob, text, summary = out
    exc: Any = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RuntimeError(summary)
    exc.__cause__ = RemoteTraceback(f"\n(on engine {eid}, rank {rank})\n{text}")
    return exc


def _fail(future: concurrent.futures.Future, err: BaseException) -> None:
    if not future.done():
        try:
            future.set_exception(err)
        except concurrent.futures.InvalidStateError:
            pass


def _one_line(e: BaseException | None) -> str:
    if e is None:
        return ""
    if isinstance(e, ipp.RemoteError):
        name, value = e.ename, str(e.evalue)
    else:
        name, value = type(e).__name__, str(e)
    first = value.strip().splitlines()[0] if value.strip() else ""
    return f"{name}: {first}" if first else name


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _sleep(seconds: float) -> None:
    """Sleep, ignoring a second interrupt while the tasks are being stopped."""
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass
