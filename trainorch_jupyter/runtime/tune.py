"""Run one trial of a ``%tune`` study on this engine.

The kernel asks Optuna for a trial (``study.ask``) and sends its id here with the
objective, the storage spec, the pruner and how to build this trial's sampler.  This engine
opens the same storage (so ``trial.suggest_*``, ``trial.report`` and
``trial.should_prune`` work as in any Optuna process, against the same study),
runs the objective and returns the value.  The kernel alone tells Optuna how the
trial ended: a trial whose engine died is still finished, by the kernel.

Nothing of the package is imported here: the storage is opened and the sampler
built through the functions the task names (``task["connect"]``,
``task["build_sampler"]``).
"""

from __future__ import annotations

import importlib
import linecache
import math
import os
import types
from typing import Any

import cloudpickle

from ._state import STATE
from .engine import user_namespace

_STORAGES: dict[str, Any] = {}
_OBJECTIVES: dict[str, Any] = {}
_PRUNERS: dict[str, Any] = {}
_QUIET = False


class MissingObjective(LookupError):
    """This engine has not been sent the objective yet (the kernel resends it)."""


def _call(target: str, *args: Any) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def _storage(task: dict[str, Any]) -> Any:
    spec = task["storage"]
    st = _STORAGES.get(spec)
    if st is None:
        st = _STORAGES[spec] = _call(task["connect"], spec)
    return st


def _objective(task: dict[str, Any]) -> Any:
    key = task["objective_key"]
    fn = _OBJECTIVES.get(key)
    if fn is not None:
        return fn
    if task.get("source") is not None:  # the %%tune cell form: a function over the engine namespace
        filename = task["filename"]
        text = task["source"]
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        ns = user_namespace()
        exec(compile(text, filename, "exec"), ns)
        fn = ns.pop(task["function"])
    elif task.get("objective") is not None:
        fn = cloudpickle.loads(task["objective"])
        _restore_sources(fn, task.get("lines") or {})
        if isinstance(fn, types.FunctionType) and task.get("pushed"):
            # names sent with --push live in the engine namespace: let the function see them
            ns = user_namespace()
            for k, v in fn.__globals__.items():
                if k not in task["pushed"]:
                    ns.setdefault(k, v)
            fn = types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)
    else:
        raise MissingObjective(key)
    if len(_OBJECTIVES) > 16:
        _OBJECTIVES.pop(next(iter(_OBJECTIVES)))
    _OBJECTIVES[key] = fn
    return fn


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _restore_sources(fn: Any, sources: dict[str, Any]) -> None:
    """Give shipped notebook functions back their file names and source lines (for tracebacks)."""
    for filename, lines in sources.get("lines", {}).items():
        if not os.path.exists(filename):  # a notebook cell: its source is only in the kernel
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    for name, filename in sources.get("files", {}).items():
        target = fn if name == "" else getattr(fn, "__globals__", {}).get(name)
        code = getattr(target, "__code__", None)
        if isinstance(code, types.CodeType) and code.co_filename == "<dynamic-code>":
            try:
                target.__code__ = _renamed(code, filename)
            except (TypeError, ValueError):
                pass


def _quiet(optuna: Any) -> None:
    global _QUIET
    if not _QUIET and not os.environ.get("TRAINORCH_OPTUNA_LOGS"):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _QUIET = True


def _number(v: Any) -> float:
    """A plain float (never a tensor: the kernel must not import torch)."""
    if hasattr(v, "item"):
        v = v.item()
    return float(v)


def values_of(result: Any, n: int) -> list[float]:
    if n == 1:
        if isinstance(result, (list, tuple)) and len(result) == 1:
            result = result[0]
        return [_number(result)]
    if not isinstance(result, (list, tuple)) or len(result) != n:
        raise TypeError(f"the objective must return {n} values (one per direction), got {result!r}"[:300])
    return [_number(v) for v in result]


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Run the objective on trial ``task["trial_id"]``; return its outcome as plain data
    (with ``seconds``: the time the trial took here, setup included)."""
    import time

    t0, started = time.perf_counter(), time.time()
    out = _run_trial(task)
    out["seconds"] = time.perf_counter() - t0
    out["started"], out["ended"] = started, time.time()
    return out


def run_trials(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a batch of trials in turn (short trials travel together).

    A trial that raises does not stop the batch: its outcome is ``ERROR`` with the
    objective's traceback, formatted here.  An interrupt (a cancel) ends the batch.
    """
    out = []
    for task in tasks:
        try:
            out.append(run_trial(task))
        except Exception as e:
            out.append({"state": "ERROR", "summary": _summary(e), "error": _user_traceback(e)})
    return out


def _summary(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _user_traceback(e: BaseException) -> str:
    """The traceback from the objective's frames down (this module's frames dropped)."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    keep = 0
    for i, frame in enumerate(frames):
        if frame.filename == __file__:
            keep = i + 1
    lines = traceback.format_list(frames[keep:]) + traceback.format_exception_only(type(e), e)
    return "Traceback (most recent call last):\n" + "".join(lines).rstrip()


def _run_trial(task: dict[str, Any]) -> dict[str, Any]:
    import optuna

    _quiet(optuna)
    storage = _storage(task)
    objective = _objective(task)
    pkey = task["pruner_key"]
    if pkey not in _PRUNERS:
        _PRUNERS[pkey] = cloudpickle.loads(task["pruner"])
    if storage.get_trial(task["trial_id"]).state.is_finished():
        return {"state": "SKIPPED"}  # it waited here behind another trial and was cancelled meanwhile
    name, seed, grid = task["sampler"]
    sampler = _call(task["build_sampler"], name, seed, grid)  # trial k: seed + k, whoever runs it
    study = optuna.Study(study_name=task["study"], storage=storage, sampler=sampler, pruner=_PRUNERS[pkey])
    trial = optuna.trial.Trial(study, task["trial_id"])
    STATE["job_id"] = task["job_id"]
    try:
        result = objective(trial)
    except optuna.TrialPruned:
        return {"state": "PRUNED", "params": dict(trial.params)}
    try:
        values = values_of(result, task["n_objectives"])
    except (TypeError, ValueError) as e:
        return {"state": "FAIL", "params": dict(trial.params),
                "error": f"the objective returned {result!r:.80}; return a float ({e})"}
    bad = [v for v in values if math.isnan(v)]
    if bad:
        return {"state": "FAIL", "params": dict(trial.params), "error": "the objective returned NaN"}
    return {"state": "COMPLETE", "values": values, "params": dict(trial.params)}


# -- a trial that is a distributed job (%tune --engines-per-trial K) ---------------------------
TASK_NAME = "__trainorch_trial_task__"
RESULT_NAME = "__trainorch_trial_result__"


class GroupTrial:
    """The trial as each rank of a distributed trial sees it.

    Rank 0 holds Optuna's trial: it samples, reports and decides on pruning, and
    broadcasts every sampled value and every ``should_prune()`` answer over the
    job's process group, so all ranks train with the same parameters and stop
    together.  On the other ranks ``report`` and ``set_user_attr`` do nothing.
    Call ``suggest_*`` and ``should_prune`` in the same order on every rank (as
    any SPMD code does).
    """

    def __init__(self, trial: Any, number: int) -> None:
        self._trial = trial  # None on ranks above 0
        self.number = number
        self.params: dict[str, Any] = {}

    def _share(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("suggest_"):
            def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
                value = getattr(self._trial, name)(param, *args, **kwargs) if self._trial is not None else None
                value = self._share(value)
                self.params[param] = value
                return value
            return suggest
        if self._trial is not None:
            return getattr(self._trial, name)
        return lambda *args, **kwargs: None

    def report(self, value: Any, step: int) -> None:
        if self._trial is not None:
            self._trial.report(_number(value), step)

    def should_prune(self) -> bool:
        return bool(self._share(self._trial.should_prune() if self._trial is not None else None))


def run_group_trial() -> None:
    """One rank of a distributed trial (run as the cell of a %%distribute-style torch job)."""
    import optuna

    _quiet(optuna)
    ns = user_namespace()
    task = ns.pop(TASK_NAME)
    objective = _objective(task)
    trial = None
    if STATE["rank"] == 0:
        storage = _storage(task)
        if storage.get_trial(task["trial_id"]).state.is_finished():
            raise RuntimeError("the trial was finished before it started (the search was stopped)")
        pkey = task["pruner_key"]
        if pkey not in _PRUNERS:
            _PRUNERS[pkey] = cloudpickle.loads(task["pruner"])
        name, seed, grid = task["sampler"]
        study = optuna.Study(study_name=task["study"], storage=storage,
                             sampler=_call(task["build_sampler"], name, seed, grid), pruner=_PRUNERS[pkey])
        trial = optuna.trial.Trial(study, task["trial_id"])
    gt = GroupTrial(trial, task["number"])
    try:
        result = objective(gt)
    except optuna.TrialPruned:
        ns[RESULT_NAME] = {"state": "PRUNED", "params": dict(gt.params)}
        return
    try:
        values = values_of(result, task["n_objectives"])
    except (TypeError, ValueError) as e:
        ns[RESULT_NAME] = {"state": "FAIL", "params": dict(gt.params),
                           "error": f"the objective returned {result!r:.80}; return a float ({e})"}
        return
    ns[RESULT_NAME] = {"state": "COMPLETE", "values": values, "params": dict(gt.params)}
