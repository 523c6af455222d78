"""A ``%tune`` run: a job of kind ``tune`` that keeps one trial on every free engine.

The study lives in storage the kernel and the engines share (see
:mod:`.storage`).  A driver thread asks Optuna for a trial (``study.ask``), sends
it to a free engine (one trial per engine, so per GPU: no two running trials
share a device), and tells Optuna how it ended.  The engine runs the objective
against the same storage, so ``trial.report`` / ``trial.should_prune`` are
Optuna's own.  Only the kernel finishes trials: a trial whose engine died, that
was interrupted or stopped is marked FAIL here, never left RUNNING.

Everything that happens is a TRIAL_UPDATE event (merged by the Snapshot and
mirrored into the run store by the StoreWriter as it happens).  Stopping goes
through the path every job uses: ``cancel()`` (the kernel interrupt) or the stop
request the panel's Stop button leaves in the job's folder.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle
import ipyparallel as ipp

from .. import model
from ..model import Event
from ..jobs.job import block_until_done
from ..jobs.launch import launch
from ..pool.engine_pool import EnginePool, EngineSlot
from ..pool.remote import call
from ..store import paths

RUN_TRIAL = "trainorch_jupyter.runtime.tune:run_trial"
RUN_TRIALS = "trainorch_jupyter.runtime.tune:run_trials"
CONNECT = "trainorch_jupyter.tuning.storage:connect"
BUILD_SAMPLER = "trainorch_jupyter.tuning.options:build_sampler"
POLL_EVERY = 0.3    # seconds between reads of running trials' intermediate values
QUEUE_DEPTH = 2     # trials handed to an engine at once: one running, the next waiting behind it
# Short trials travel in batches, so that ipyparallel's cost per message (a few ms) is shared:
# a batch holds about BATCH_SECONDS of trials (judged by the trials so far), at most MAX_BATCH.
BATCH_SECONDS = 0.05
MAX_BATCH = 16
# a distributed trial (--engines-per-trial K) is a torch job running this cell on K engines
GROUP_CELL = ("from trainorch_jupyter.runtime.tune import run_group_trial as _trainorch_group_trial\n"
              "_trainorch_group_trial()\n")
GROUP_TASK = "__trainorch_trial_task__"
OWNER_ATTR = "trainorch_job"  # system attr of a trial: the id of the study run that asked for it
GROUP_RESULT = "__trainorch_trial_result__"
_DRIVERS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="trainorch-tune")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class TrialError(RuntimeError):
    """The search stopped on a failed trial.  Shown without the kernel-side traceback."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details

    def _render_traceback_(self) -> list[str]:
        return [f"TrialError: {self.summary}"] + ([self.details] if self.details else [])


@dataclass
class _Running:
    number: int
    trial_id: int
    slot: EngineSlot
    engine_id: int
    ar: Any
    started: float
    steps: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    index: int | None = None  # its place in a batch (the result is then a list), else None


class _ChildJob:
    """A distributed trial's child Job, behind the same ready()/get() as an AsyncResult."""

    stdout = stderr = ""  # the child job keeps its ranks' logs itself

    def __init__(self, job: Any) -> None:
        self.job = job

    def ready(self) -> bool:
        return self.job.done

    def get(self, timeout: float = 0) -> Any:
        if self.job.error is not None:
            raise self.job.error
        return self.job.results[("pull", GROUP_RESULT)]


def _epoch(dt: Any) -> float | None:
    return dt.timestamp() if dt is not None else None


def remote_traceback(e: BaseException) -> str:
    """The objective's traceback, from its own frames down (our runner's are noise)."""
    if isinstance(e, ipp.RemoteError):
        lines = _ANSI.sub("", e.traceback or "").splitlines()
        runner = [i for i, line in enumerate(lines) if "runtime/tune.py" in line]
        if runner:
            rest = lines[runner[-1] + 1:]
            start = next((i for i, line in enumerate(rest) if line.startswith(("File ", "Cell ", "  File "))), 0)
            return "Traceback (most recent call last):\n" + "\n".join(rest[start:]).rstrip()
        return "\n".join(lines).rstrip()
    return "".join(traceback.format_exception(e)).rstrip()


def one_line(e: BaseException) -> str:
    if isinstance(e, ipp.RemoteError):
        if e.ename == "EngineError":
            return "its engine died (killed or crashed) while running the trial"
        name, value = e.ename, str(e.evalue)
    else:
        name, value = type(e).__name__, str(e)
    first = value.strip().splitlines()[0] if value.strip() else ""
    return f"{name}: {first}" if first else name


class TuneJob(model.EventStream):
    """A running or finished study run on the pool (its handle, like a Job)."""

    def __init__(
        self,
        pool: EnginePool,
        study: Any,
        *,
        storage: Any,
        storage_spec: str,
        objective: dict[str, Any],
        n_trials: int,
        directions: list[str],
        sampler: str,
        pruner: str,
        grid: dict[str, list] | None,
        pruner_obj: Any,
        seed: int | None = None,
        timeout: float | None = None,
        catch: bool = False,
        grace: float = 5.0,
        engines_per_trial: int = 1,
        source: str = "",
        listeners: list[Callable[[Event], None]] | None = None,
        job_state: Callable[[str], str | None] | None = None,
    ) -> None:
        self.pool = pool
        self.study = study
        self.storage = storage
        self.storage_spec = storage_spec
        self.id = uuid.uuid4().hex[:12]
        self.name = study.study_name
        self.n_trials = n_trials
        self.directions = directions
        self.seed = seed
        self.timeout = timeout
        self.catch = catch
        self.grace = grace
        self._objective = objective
        self._sampler_spec = (sampler, grid)
        # the next trial waits on its engine behind the running one, so an engine never
        # idles for a round trip between trials; it is sampled when it starts there.
        # With --timeout none waits: no trial may start after the deadline.
        self.depth = 1 if timeout is not None or engines_per_trial > 1 else QUEUE_DEPTH
        # trial groups: slots [0..K-1], [K..2K-1], ... (one slot each by default)
        k = engines_per_trial
        self.groups = [list(range(i * k, (i + 1) * k)) for i in range(len(pool.slots) // k)]
        self.engines_per_trial = k
        self._base_listeners = list(listeners or [])
        self._job_state = job_state  # a job id's state in the run store (None: unknown)
        self._pruner_blob = cloudpickle.dumps(pruner_obj)
        self._pruner_key = uuid.uuid4().hex[:8]
        self._init_stream(self.id, listeners)
        self.stop_path = os.path.join(paths.job_dir(self.id), "stop")
        self._shipped: set[int] = set()
        self._queues: dict[int, list[_Running]] = {}  # by slot: running first, then waiting
        self._finished = 0       # COMPLETE or PRUNED in this run
        self._failures: list[tuple[int, str]] = []  # (number, traceback) in this run
        self._exhausted = False  # the sampler has nothing left (a finished grid)
        self._wake = threading.Event()
        self._done = threading.Event()
        self._cancel_reason: str | None = None
        self.error: TrialError | None = None
        self.panel: Any = None
        self.healed: list[int] = []
        self.engine_seconds: list[float] = []  # time each trial took on its engine, setup included
        self.messages = 0  # trial messages sent to engines (a batch is one)
        self.orphans: list[int] = []  # trials of an earlier, dead run that this run marked FAIL
        self._started_at = 0.0
        self.emit(model.JOB, None, {
            "kind": model.TUNE, "parent_id": None, "framework": "", "backend": "",
            "world_size": len(pool.slots), "source": source,
            "ranks": [{"rank": s.slot, "engine_id": s.engine_id, "host": s.host, "device": s.device}
                      for s in pool.slots],
            "study": {"name": self.name, "storage": storage_spec, "directions": directions,
                      "sampler": sampler, "pruner": pruner, "n_trials": n_trials},
        })

    # -- events (model.EventStream: the same shape as a Job's) ---------------------------------
    def _trial(self, number: int, **data: Any) -> None:
        self.emit(model.TRIAL_UPDATE, None, {"number": number, "study": self.name, **data})

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- the run -------------------------------------------------------------------------------
    def start(self) -> "TuneJob":
        self._fail_orphans()
        for ft in self.study.get_trials(deepcopy=False):  # a resumed study shows its past trials
            self._trial(ft.number, **self._frozen(ft))
        self._started_at = time.monotonic()
        self.emit(model.STATUS, None, {"state": model.RUNNING})
        _DRIVERS.submit(self._drive)
        return self

    def _fail_orphans(self) -> None:
        """Trials left RUNNING by a run that is over (its kernel was killed): FAIL them now.

        A trial records the job that ran it; one whose job is still running (another
        kernel working on the same study) is left alone, and so is one whose job the
        run store does not know (another machine's store).
        """
        import optuna

        if self._job_state is None:
            return
        running = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
        for ft in running:
            owner = ft.system_attrs.get(OWNER_ATTR)
            if not owner or self._job_state(owner) not in model.FINAL_STATES:
                continue
            try:
                self.study.tell(ft.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                self.orphans.append(ft.number)
            except Exception:
                pass

    def _frozen(self, ft: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"state": ft.state.name, "params": dict(ft.params),
                               **({"error": "its run ended without finishing it (the kernel exited)"}
                                  if ft.number in self.orphans else {}),
                               "intermediate": dict(ft.intermediate_values),
                               "started": _epoch(ft.datetime_start), "ended": _epoch(ft.datetime_complete)}
        if ft.values is not None:
            out["values"] = list(ft.values)
            out["value"] = ft.values[0]
        return out

    def _drive(self) -> None:
        last_poll = 0.0
        try:
            while True:
                self._wake.wait(0.05)
                self._wake.clear()
                self._collect()
                if self._cancel_reason is None and os.path.exists(self.stop_path):
                    self._cancel_reason = "stopped from the panel"
                if self._cancel_reason is not None:
                    self._cancel_running(self._cancel_reason)
                    break
                if not self._in_flight() and not self._asking():
                    break
                self._fill()
                if time.monotonic() - last_poll > POLL_EVERY:
                    last_poll = time.monotonic()
                    self._poll()
            self._finish()
        except BaseException:  # never leave the job hanging
            self.error = TrialError("internal error while running the study", traceback.format_exc())
            for r in self._in_flight():
                self._fail(r, "the study run stopped on an internal error")
            self.emit(model.STATUS, None, {"state": model.FAILED, "error": self.error.summary})
        finally:
            self._done.set()

    def _asking(self) -> bool:
        """Whether more trials should start."""
        if self.error is not None or self._exhausted:
            return False
        if self.timeout is not None and time.monotonic() - self._started_at > self.timeout:
            return False
        if len(self._failures) >= max(self.n_trials, 3):
            self.error = TrialError(
                f"{len(self._failures)} trials failed in this run; the search gave up",
                self._failures[-1][1],
            )
            return False
        return self._finished + len(self._in_flight()) < self.n_trials

    def _in_flight(self) -> list[_Running]:
        return [r for q in self._queues.values() for r in q]

    def _fill(self) -> None:
        alive = self.pool.alive_ids()
        for g, group in enumerate(self.groups):
            queue = self._queues.setdefault(g, [])
            if self.engines_per_trial > 1:
                if not queue and self._asking():
                    queue.append(self._ship_group(group))
                continue
            slot = self.pool.slots[group[0]]
            while len({id(r.ar) for r in queue}) < self.depth and slot.engine_id in alive and self._asking():
                size = self._batch_size()
                if size == 1:
                    queue.append(self._ship(slot, first=not queue))
                else:
                    queue.extend(self._ship_batch(slot, size, first=not queue))

    def _batch_size(self) -> int:
        """How many trials to send to an engine in one message (1 unless trials are short)."""
        if self.depth == 1 or len(self.engine_seconds) < 2 * len(self.groups) or self._sampler_spec[0] == "grid":
            return 1  # a grid learns it is exhausted only as trials end: ask for few at a time
        recent = sorted(self.engine_seconds[-20:])
        per_trial = max(recent[len(recent) // 2], 1e-4)
        left = self.n_trials - self._finished - len(self._in_flight())
        spread = -(-left // max(1, len(self.groups)))  # leave work for every engine
        return max(1, min(MAX_BATCH, int(BATCH_SECONDS / per_trial), spread))

    def _task(self) -> dict[str, Any]:
        trial = self.study.ask()
        number, trial_id = trial.number, trial._trial_id
        self.storage.set_trial_system_attr(trial_id, OWNER_ATTR, self.id)  # who must finish it
        sampler, grid = self._sampler_spec
        return {
            "job_id": self.id, "study": self.name, "storage": self.storage_spec, "connect": CONNECT,
            "trial_id": trial_id, "number": number, "n_objectives": len(self.directions),
            "build_sampler": BUILD_SAMPLER, "sampler": (sampler, None if self.seed is None else self.seed + number, grid),
            "pruner_key": self._pruner_key, "pruner": self._pruner_blob,
            "objective_key": self._objective["objective_key"],
        }

    def _ship(self, slot: EngineSlot, first: bool) -> _Running:
        task = self._task()
        number, trial_id = task["number"], task["trial_id"]
        if slot.engine_id not in self._shipped:
            task.update({k: v for k, v in self._objective.items() if k != "objective_key"})
            self._shipped.add(slot.engine_id)
        ar = self.pool.view(slot.engine_id).apply_async(call, RUN_TRIAL, task)
        self.messages += 1
        ar.add_done_callback(lambda _f: self._wake.set())
        r = _Running(number, trial_id, slot, slot.engine_id, ar, time.time())
        self._trial(number, state="RUNNING" if first else "WAITING", engine_id=slot.engine_id,
                    device=slot.device, **({"started": r.started} if first else {}))
        return r

    def _ship_batch(self, slot: EngineSlot, size: int, first: bool) -> list[_Running]:
        """Send ``size`` trials to one engine in one message; it runs them in turn."""
        tasks = []
        while len(tasks) < size and (not tasks or self._asking_more(len(tasks))):
            tasks.append(self._task())
        if slot.engine_id not in self._shipped:
            tasks[0].update({k: v for k, v in self._objective.items() if k != "objective_key"})
            self._shipped.add(slot.engine_id)
        ar = self.pool.view(slot.engine_id).apply_async(call, RUN_TRIALS, tasks)
        self.messages += 1
        ar.add_done_callback(lambda _f: self._wake.set())
        now = time.time()
        batch = [_Running(t["number"], t["trial_id"], slot, slot.engine_id, ar, now, index=i)
                 for i, t in enumerate(tasks)]
        for i, r in enumerate(batch):
            running = first and i == 0
            self._trial(r.number, state="RUNNING" if running else "WAITING", engine_id=slot.engine_id,
                        device=slot.device, **({"started": now} if running else {}))
        return batch

    def _asking_more(self, extra: int) -> bool:
        """_asking(), counting ``extra`` trials asked for but not yet in a queue."""
        return self._asking() and self._finished + len(self._in_flight()) + extra < self.n_trials

    def _ship_group(self, group: list[int]) -> _Running:
        """Start a trial as a torch job of its own on the slots ``group`` (rank 0 reports to the trial)."""
        task = self._task()
        slots = [self.pool.slots[k] for k in group]
        if any(s.engine_id not in self._shipped for s in slots):
            task.update({k: v for k, v in self._objective.items() if k != "objective_key"})
        job = launch(self.pool, GROUP_CELL, framework="torch", push_values={GROUP_TASK: task},
                     pull=[GROUP_RESULT], grace=self.grace, listeners=self._base_listeners,
                     slots_at=group, kind=model.TRIAL, parent_id=self.id)
        slots = [self.pool.slots[k] for k in group]  # launch may have replaced dead engines
        self._shipped.update(s.engine_id for s in slots)
        r = _Running(task["number"], task["trial_id"], slots[0], slots[0].engine_id, _ChildJob(job), time.time())
        self._trial(r.number, state="RUNNING", engine_id=r.engine_id, device=",".join(s.device for s in slots),
                    child_job_id=job.id, started=r.started)
        return r

    def _poll(self) -> None:
        """Relay what running trials reported (intermediate values, sampled params)."""
        for r in [q[0] for q in self._queues.values() if q]:
            try:
                ft = self.storage.get_trial(r.trial_id)
            except Exception:
                continue
            update: dict[str, Any] = {}
            if len(ft.intermediate_values) != r.steps:
                r.steps = len(ft.intermediate_values)
                update["intermediate"] = dict(ft.intermediate_values)
            if ft.params != r.params:
                r.params = dict(ft.params)
                update["params"] = r.params
            if update:
                self._trial(r.number, **update)

    def _collect(self) -> None:
        dead = False
        for queue in self._queues.values():
            while queue and queue[0].ar.ready():
                r = queue.pop(0)
                if queue and queue[0].ar is not r.ar:  # the engine moves on to what waited behind
                    nxt = queue[0]
                    nxt.started = time.time()
                    self._trial(nxt.number, state="RUNNING", started=nxt.started)
                if not r.index:
                    self._save_output(r)
                try:
                    out = r.ar.get(timeout=0)
                    if r.index is not None:
                        out = out[r.index]
                except BaseException as e:
                    if isinstance(r.ar, _ChildJob):
                        self._child_failed(r, e)
                        continue
                    if isinstance(e, ipp.RemoteError) and e.ename == "EngineError":
                        dead = True
                        self._fail(r, f"engine {r.engine_id} died while running the trial; it was replaced")
                        self._failures.append((r.number, one_line(e)))
                        for waiting in queue:
                            self._fail(waiting, f"engine {r.engine_id} died before the trial started"
                                       if waiting.ar is not r.ar else
                                       f"engine {r.engine_id} died while running the trial's batch")
                        queue.clear()
                    else:
                        tb = remote_traceback(e)
                        self._fail(r, tb or one_line(e))
                        self._objective_failed(r, one_line(e), tb)
                    continue
                if out["state"] == "ERROR":  # a trial of a batch raised (the engine kept its traceback)
                    self._fail(r, out["error"])
                    self._objective_failed(r, out["summary"], out["error"])
                    continue
                self._end(r, out)
        if dead:
            self.healed += self.pool.heal()

    def _child_failed(self, r: _Running, e: BaseException) -> None:
        summary = getattr(e, "summary", None) or one_line(e)
        details = getattr(e, "details", "") or ""
        if "engine" in summary and "died" in summary:  # the child job replaced the engine
            self._fail(r, summary)
            self._failures.append((r.number, summary))
        else:
            self._fail(r, f"{summary}\n{details}".strip())
            self._objective_failed(r, summary, details)

    def _save_output(self, r: _Running) -> None:
        """What the trial printed, to ``jobs/<id>/trial-<n>.log`` (the table is the cell's output;
        a batch's output goes to the log of its first trial)."""
        try:
            text = (r.ar.stdout or "") + (r.ar.stderr or "")
        except Exception:
            return
        if text:
            with open(os.path.join(paths.job_dir(self.id), f"trial-{r.number}.log"), "a",
                      encoding="utf-8", errors="replace") as f:
                f.write(text)

    def _end(self, r: _Running, out: dict[str, Any]) -> None:
        import optuna

        state = out["state"]
        self.engine_seconds.append(out.get("seconds", 0.0))
        if state == "SKIPPED":  # finished here before its engine reached it (a cancel)
            return
        ft_state = {"COMPLETE": optuna.trial.TrialState.COMPLETE, "PRUNED": optuna.trial.TrialState.PRUNED,
                    "FAIL": optuna.trial.TrialState.FAIL}[state]
        try:
            self.study.tell(r.number, out.get("values"), state=ft_state, skip_if_finished=True)
        except RuntimeError as e:
            if "Study.stop" not in str(e):
                raise
            self._exhausted = True  # a grid sampler with every point tried
        ft = self.storage.get_trial(r.trial_id)
        update = self._frozen(ft)
        # when it ran on its engine (Optuna's datetime_start is when the kernel asked for it)
        update["started"], update["ended"] = out.get("started", r.started), out.get("ended", time.time())
        if state == "FAIL":
            update["error"] = out.get("error", "")
        self._trial(r.number, **update)
        if state == "FAIL":
            self._objective_failed(r, out.get("error", ""), out.get("error", ""))
        else:
            self._finished += 1

    def _objective_failed(self, r: _Running, summary: str, tb: str) -> None:
        self._failures.append((r.number, tb))
        if not self.catch and self.error is None:
            self.error = TrialError(
                f"trial {r.number} (engine {r.engine_id}) failed: {summary}; "
                "the search stopped (use --catch to record failed trials and go on)", tb)
            self._cancel_reason = self._cancel_reason or f"trial {r.number} failed"

    def _fail(self, r: _Running, error: str) -> None:
        """Finish a trial as FAIL in the study (the kernel's word is final)."""
        import optuna

        try:
            self.study.tell(r.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        except Exception:
            pass
        data: dict[str, Any] = {"state": "FAIL", "ended": time.time(), "error": error}
        try:
            ft = self.storage.get_trial(r.trial_id)
            data["params"] = dict(ft.params)
            data["intermediate"] = dict(ft.intermediate_values)
        except Exception:
            pass
        self._trial(r.number, **data)

    def _cancel_running(self, reason: str) -> None:
        """Running trials FAIL now; their engines are interrupted, then killed if still busy."""
        heads = [q[0] for q in self._queues.values() if q]
        running = self._in_flight()
        self._queues.clear()
        for r in running:  # a waiting trial skips itself on its engine: it is finished already
            self._fail(r, f"cancelled: {reason}")
        if not running:
            return
        children = [r.ar.job for r in running if isinstance(r.ar, _ChildJob)]
        for job in children:  # a distributed trial stops through its job's own cancel path
            job.cancel(reason, wait=False)
        for job in children:
            try:
                job.wait(timeout=job.grace + 30)
            except Exception:  # its error says it was cancelled: the trial is FAIL already
                pass
        running = [r for r in running if not isinstance(r.ar, _ChildJob)]
        heads = [r for r in heads if not isinstance(r.ar, _ChildJob)]
        if not running:
            return
        self.pool.interrupt([r.engine_id for r in heads])
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not all(r.ar.ready() for r in running):
            time.sleep(0.05)
        stuck = sorted({r.engine_id for r in running if not r.ar.ready()})
        if stuck:
            self.pool.kill(stuck)
            self.healed += self.pool.heal()

    def _finish(self) -> None:
        if self._cancel_reason is not None and self.error is None:
            self.emit(model.STATUS, None, {"state": model.CANCELLED, "error": f"study {self._cancel_reason}"})
        elif self.error is not None:
            self.emit(model.STATUS, None, {"state": model.FAILED, "error": self.error.summary})
        else:
            self.emit(model.STATUS, None, {"state": model.DONE})

    # -- the handle -------------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled", wait: bool = True) -> None:
        """Stop the search: running trials FAIL, engines are interrupted (killed if stuck)."""
        if self._done.is_set():
            return
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._wake.set()
        if wait:
            self._done.wait(self.grace + 60)

    def wait(self, timeout: float | None = None, on_tick: Callable[["TuneJob"], None] | None = None,
             tick: float = 0.25) -> "TuneJob":
        """Block until the run ends (an interrupt cancels it); raise its error."""
        return block_until_done(self, timeout, on_tick, tick, stop_wait=self.grace + 60)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return list(self._failures)

    def __repr__(self) -> str:
        return f"<TuneJob {self.id} study {self.name!r}: {self.state}>"
