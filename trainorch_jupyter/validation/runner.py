"""``%validate``'s logic: resolve the model and data, evaluate, check, record.

    result = validate(Request(model=clf, model_name="clf", X=X_val, y=y_val, mins=[("accuracy", 0.9)]),
                      context)

Where the evaluation runs:

- a scikit-learn estimator in the notebook: in the kernel;
- a torch ``nn.Module`` or a Keras model in the notebook: pushed to the engines
  (the kernel never imports a framework) and evaluated there;
- a name that lives on the engines (from a ``%%distribute`` cell): on the engines
  where it is, data-parallel: rank k predicts the k-th contiguous shard (no
  padding), the kernel concatenates the per-sample outputs in order and computes
  every metric once, so the result equals a single-process evaluation;
- ``cv=K``: K folds fanned out over the engines, each fitting a fresh copy.

The result is one VALIDATION event of a job of kind ``validate``, written to the
run store through the writer like every other event.
"""

from __future__ import annotations

import ast
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import model as vocab
from ..jobs.job import Job
from ..model import Event
from . import checks, engines, metrics as metricsmod, models
from .checks import CheckError, ValidationFailed
from .metrics import CLASSIFICATION, MetricError, Outputs
from .models import KERAS, SKLEARN, TORCH, ModelError

PUSHED_MODEL = "_trainorch_validate_model"
CV_SEED = 0


@dataclass
class Request:
    """One ``%validate``: what to validate and against what."""

    model: Any = None                  # the object (None: ``model_name`` lives on the engines)
    model_name: str = ""
    X: Any = None
    y: Any = None
    metrics: Sequence[Any] | None = None     # names or callables; None: the task's defaults
    mins: Sequence[tuple[str, float]] = ()
    maxs: Sequence[tuple[str, float]] = ()
    baseline: str | None = None
    tolerance: float = 0.0
    cv: int | None = None
    fit: str | None = None             # name of the user's fit(model, X, y) in the notebook
    fit_fn: Callable[..., Any] | None = None
    task: str | None = None
    outputs: str = "auto"              # auto | logits | proba (networks' outputs)
    name: str | None = None
    n: int | None = None               # engines to use (default: all)
    line: str = ""                     # the %validate line, recorded as the job's source


@dataclass
class Context:
    """What the api layer lends: the pool, the store, the writer and bookkeeping."""

    ensure_pool: Callable[[], Any]
    current_pool: Callable[[], Any]
    baseline_lookup: Callable[[str], dict[str, Any] | None]
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    register: Callable[[Job], None] | None = None
    jobs: Callable[[], list[Job]] = lambda: []


class Record(vocab.EventStream):
    """The events of a validation that ran in the kernel alone (no engines)."""

    def __init__(self, framework: str, line: str, listeners: list[Callable[[Event], None]]) -> None:
        self._init_stream(uuid.uuid4().hex[:12], listeners)
        self.emit(vocab.JOB, None, {"kind": vocab.VALIDATE, "framework": framework, "world_size": 0,
                                    "source": line, "ranks": []})
        self.emit(vocab.STATUS, None, {"state": vocab.RUNNING})



# ---------------------------------------------------------------------------- entry point
def validate(req: Request, ctx: Context) -> dict[str, Any]:
    """Evaluate, check, record; return the VALIDATION data (``passed`` says the verdict).

    Bad requests raise ModelError, MetricError or CheckError (one line) before
    anything runs; a failed gate is the caller's to raise (:class:`ValidationFailed`).
    """
    where, info = _locate(req, ctx)
    X, y = models.check_data(req.X, req.y)
    kind = info["kind"]
    hint = info.get("task")
    task = models.infer_task(y, hint, req.task)
    if kind in (TORCH, KERAS) and task == CLASSIFICATION:
        has_proba = True
    else:
        has_proba = task == CLASSIFICATION and bool(info.get("has_proba"))
    wanted = metricsmod.resolve(req.metrics, task, has_proba)
    bounds = []
    for metric, op, bound in ([(m, ">=", b) for m, b in req.mins] + [(m, "<=", b) for m, b in req.maxs]):
        known = {m.name.lower(): m.name for m in wanted}
        key = metricsmod.REGISTRY[metric.lower()].name if metric.lower() in metricsmod.REGISTRY else metric
        if key.lower() not in known:  # a bound on a metric not asked for: compute it too
            wanted += metricsmod.resolve([key], task, has_proba)
            known[key.lower()] = wanted[-1].name
        bounds.append((known[key.lower()], op, bound))
    if req.tolerance < 0 or req.tolerance != req.tolerance:
        raise CheckError(f"--tolerance {req.tolerance:g}: give a tolerance of 0 or more")
    baseline = None
    if req.baseline:
        baseline = ctx.baseline_lookup(req.baseline)
        if baseline is None:
            raise CheckError(
                f"--baseline {req.baseline}: no validation of that name or id in the run store; "
                "run %validate ... --name NAME first (the sidebar and api.store().validations() list them)"
            )
    n_samples = len(y)
    if req.cv is not None:
        if req.cv < 2:
            raise CheckError(f"--cv {req.cv}: cross-validation needs at least 2 folds")
        if req.cv > n_samples:
            raise CheckError(f"--cv {req.cv}: only {n_samples} samples; use --cv 2..{n_samples}")
        if kind in (TORCH, KERAS) and req.fit is None and req.fit_fn is None:
            raise CheckError(
                f"--cv with a {kind} model needs --fit NAME: a function fit(model, X_train, y_train) "
                "in the notebook that trains the fresh copy it is given (and may return it)"
            )
    name = req.name or req.model_name or type(req.model).__name__
    framework = kind
    directions = {m.name: m.higher_is_better for m in wanted}

    def make_result(values: dict[str, float], out_n: int, confusion: Any, extra: dict[str, Any]) -> dict[str, Any]:
        checked = checks.bound_checks(values, bounds)
        if baseline is not None:
            checked += checks.baseline_checks(
                values, baseline, req.tolerance, lambda m: directions.get(m, metricsmod.higher_is_better(m)),
                only=[m.name for m in wanted],
            )
        return {
            "name": name,
            "model": info.get("description") or info.get("type", ""),
            "model_job_id": _producing_job(ctx.jobs(), req.model_name, req.model),
            "task": task,
            "n_samples": out_n,
            "metrics": values,
            "bounds": checked,
            "baseline_id": baseline.get("job_id") if baseline else None,
            "baseline_name": baseline.get("name") if baseline else None,
            "passed": all(b["passed"] for b in checked),
            "confusion": confusion,
            "where": where,
            **extra,
        }

    if req.cv is not None:
        return _cross_validate(req, ctx, where, kind, task, has_proba, wanted, X, y, framework, make_result)
    if where == "kernel":
        rec = Record(framework, req.line, ctx.listeners)
        try:
            out = _kernel_outputs(req.model, X, y, task, has_proba and _needs_proba(wanted))
            values = metricsmod.compute(wanted, out)
            result = make_result(values, out.n_samples, metricsmod.confusion(out), {"world_size": 1})
        except BaseException as e:
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
            rec.emit(vocab.STATUS, None, {"state": vocab.FAILED, "error": error})
            raise
        rec.emit(vocab.VALIDATION, None, result)
        rec.emit(vocab.STATUS, None, {"state": vocab.DONE})
        result["job_id"] = rec.id
        return result
    return _sharded(req, ctx, where, kind, task, has_proba and _needs_proba(wanted), wanted, X, y,
                    framework, make_result)


def _needs_proba(wanted: Sequence[Any]) -> bool:
    return any(m.needs == "proba" for m in wanted)


# ---------------------------------------------------------------------------- the model
def _locate(req: Request, ctx: Context) -> tuple[str, dict[str, Any]]:
    """Where the model is ("kernel", "push" or "engines") and what it is."""
    if req.model is not None:
        kind = models.model_kind(req.model)
        if kind is None:
            raise ModelError(
                f"{req.model_name or 'the model'} is of type {type(req.model).__name__}, which %validate cannot "
                "evaluate: give a scikit-learn estimator, a torch nn.Module, a Keras model, or the name of "
                "one on the engines"
            )
        info = {"kind": kind, "type": type(req.model).__name__, "description": models.describe(req.model)}
        if kind == SKLEARN:
            info["task"] = models.sklearn_task(req.model)
            info["has_proba"] = hasattr(req.model, "predict_proba")
            return "kernel", info
        return "push", info
    pool = ctx.current_pool()
    if pool is None:
        raise ModelError(
            f"{req.model_name!r} is not defined in the notebook, and no pool is running that could hold it; "
            "define it, or train it on the engines with %%distribute first"
        )
    infos = engines.inspect(pool, req.model_name, req.n)
    missing = [k for k, i in enumerate(infos) if not i["present"]]
    if missing:
        raise ModelError(
            f"{req.model_name!r} is neither in the notebook nor on rank {missing[0]}'s engine; "
            "define it there with %%distribute (or --pull it into the notebook)"
        )
    first = infos[0]
    if first["kind"] is None:
        raise ModelError(
            f"{req.model_name} on the engines is of type {first['type']}, which %validate cannot evaluate: "
            "give a scikit-learn estimator, a torch nn.Module or a Keras model"
        )
    prints = {i.get("fingerprint") for i in infos}
    if len(prints) > 1:
        raise ModelError(
            f"the ranks hold different {req.model_name!r} models (their weights differ), so a sharded "
            "evaluation would mix them; train with DDP so every rank holds the same model, or use -n 1"
        )
    return "engines", {**first, "description": first["type"]}


def _producing_job(jobs: list[Job], name: str, obj: Any) -> str | None:
    """The latest %%distribute job that pulled this object or assigned this name."""
    for job in reversed(jobs):
        if getattr(job.snapshot, "kind", vocab.DISTRIBUTE) != vocab.DISTRIBUTE:
            continue
        if obj is not None and any(v is obj for (kind, _n), v in job.results.items() if kind == "pull"):
            return job.id
        if obj is None and name and name in _assigned(job.source):
            return job.id
    return None


def _assigned(source: str) -> set[str]:
    try:
        from ..jobs.source import parse

        tree = parse(source)
    except Exception:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


# ---------------------------------------------------------------------------- evaluation
def _kernel_outputs(est: Any, X: Any, y: np.ndarray, task: str, want_proba: bool) -> Outputs:
    try:
        pred = np.asarray(est.predict(X))
        proba = _normalised(est.predict_proba(X)) if want_proba else None
    except Exception as e:
        raise ModelError(_mismatch(e)) from None
    classes = list(getattr(est, "classes_", [])) if task == CLASSIFICATION else []
    return Outputs(task, y, pred, proba, classes)


def _normalised(proba: Any) -> np.ndarray:
    """Probabilities in float64, each row summing to 1 (a float32 model's rows sum to 1 +- 1e-7,
    which scikit-learn's log loss warns about); per sample, so sharding cannot change it."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 2 and len(p):
        p = p / p.sum(axis=1, keepdims=True)
    return p


def _mismatch(e: BaseException | str) -> str:
    if isinstance(e, str):
        text = e
    else:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        text = f"{type(e).__name__}: {first}"
    if "not fitted" in text.lower():
        return f"the model is not fitted: {text}; fit it first"
    return f"the data does not match the model: {text.rstrip(': ')}"


def _engine_outputs(parts: list[dict[str, Any]], y: np.ndarray, kind: str, task: str, outputs: str) -> Outputs:
    """One Outputs from per-rank (or per-fold) results, concatenated in order."""
    for p in parts:
        if p.get("error"):
            raise ModelError(_mismatch(p["error"]))
    parts = [p for p in parts if not p.get("empty")] or parts[:1]  # ranks that got no rows
    raw = np.concatenate([np.asarray(p["raw"]) for p in parts])
    if kind == SKLEARN:
        probas = [p.get("proba") for p in parts]
        proba = _normalised(np.concatenate(probas)) if all(p is not None for p in probas) else None
        classes = list(parts[0].get("classes") or []) if task == CLASSIFICATION else []
        return Outputs(task, y, raw, proba, classes)
    try:
        pred, proba, labels = models.interpret(raw, task, y, outputs)
    except ModelError as e:
        raise ModelError(_mismatch(str(e))) from None
    return Outputs(task, y, pred, proba, labels)


def _sharded(req: Request, ctx: Context, where: str, kind: str, task: str, want_proba: bool,
             wanted: list[Any], X: Any, y: np.ndarray, framework: str,
             make_result: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Rank k predicts the k-th contiguous shard; metrics once, in the kernel, on the outputs in order."""
    pool = ctx.ensure_pool() if where == "push" else ctx.current_pool()
    ids = engines.engine_ids(pool, req.n)
    world = len(ids)
    model_name = req.model_name
    shared: dict[str, Any] = {}
    if where == "push":
        model_name = PUSHED_MODEL
        shared[PUSHED_MODEL] = req.model
    data_name = "_trainorch_validate_X"
    per_rank = [{data_name: _take(X, lo, hi)} for lo, hi in engines.shard_bounds(len(y), world)]
    spec = {"model": model_name, "data": data_name, "proba": want_proba, "batch": engines.BATCH}
    try:
        job = engines.run(
            pool, engines.predict_source(spec), n=world, per_rank=per_rank, shared=shared, framework=framework,
            line=req.line, listeners=ctx.listeners, register=ctx.register,
        )
        parts = job.result(engines.RESULT)
    finally:  # nothing of ours stays in the engines' namespaces
        engines.drop(pool, [data_name, engines.RESULT] + ([PUSHED_MODEL] if where == "push" else []), world)
    try:
        out = _engine_outputs(parts, y, kind, task, req.outputs)
        values = metricsmod.compute(wanted, out)
    except (ModelError, MetricError) as e:
        job.emit(vocab.STATUS, None, {"state": vocab.FAILED, "error": str(e)})  # no validation is recorded
        raise
    result = make_result(values, out.n_samples, metricsmod.confusion(out),
                         {"world_size": world, "shards": [hi - lo for lo, hi in engines.shard_bounds(len(y), world)]})
    job.emit(vocab.VALIDATION, None, result)
    result["job_id"] = job.id
    return result


def _take(X: Any, lo: int, hi: int) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[lo:hi]
    return X[lo:hi]


def _splits(y: np.ndarray, k: int, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold(n_splits=k, shuffle=True, random_state=CV_SEED) if task == CLASSIFICATION
                else KFold(n_splits=k, shuffle=True, random_state=CV_SEED))
    try:
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y)]
    except ValueError as e:
        raise CheckError(f"--cv {k}: {str(e).splitlines()[0]}") from None


def _cross_validate(req: Request, ctx: Context, where: str, kind: str, task: str, has_proba: bool,
                    wanted: list[Any], X: Any, y: np.ndarray, framework: str,
                    make_result: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """K folds dealt round-robin to the ranks; each fits a fresh copy; metrics per fold, mean and std."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The least populated class has only N members" is a usage error
        try:
            splits = _splits(y, req.cv, task)
        except Warning as w:
            raise CheckError(f"--cv {req.cv}: {str(w).splitlines()[0]}") from None
    pool = ctx.ensure_pool()
    ids = engines.engine_ids(pool, req.n)
    world = min(len(ids), req.cv)
    names = {"X": "_trainorch_validate_X", "y": "_trainorch_validate_y", "folds": "_trainorch_validate_folds"}
    shared: dict[str, Any] = {names["X"]: X, names["y"]: y}
    model_name = req.model_name
    if where in ("kernel", "push"):
        model_name = PUSHED_MODEL
        shared[PUSHED_MODEL] = req.model
    fit_name = None
    if req.fit_fn is not None:
        fit_name = "_trainorch_validate_fit"
        shared[fit_name] = req.fit_fn
    per_rank = [{names["folds"]: [(k, tr, te) for k, (tr, te) in enumerate(splits) if k % world == r]}
                for r in range(world)]
    want_proba = has_proba and _needs_proba(wanted) and kind == SKLEARN
    temp = [names["X"], names["y"]] + ([PUSHED_MODEL] if model_name == PUSHED_MODEL else []) + \
        ([fit_name] if fit_name else [])
    spec = {**names, "model": model_name, "fit": fit_name, "proba": want_proba, "cleanup": temp}
    try:
        job = engines.run(
            pool, engines.folds_source(spec), n=world, per_rank=per_rank, shared=shared, framework=framework,
            line=req.line, listeners=ctx.listeners, register=ctx.register,
        )
        folds = sorted((f for rank in job.result(engines.RESULT) for f in rank), key=lambda f: f["fold"])
    finally:
        engines.drop(pool, temp + [names["folds"], engines.RESULT], world)
    per_fold: list[dict[str, float]] = []
    matrix = None
    try:
        for f, (_tr, te) in zip(folds, splits):
            out = _engine_outputs([f], y[te], kind, task, req.outputs)
            per_fold.append(metricsmod.compute(wanted, out))
            cm = metricsmod.confusion(out)
            if cm is not None:
                if matrix is None:
                    matrix = cm
                else:
                    matrix = _add_confusion(matrix, cm)
    except (ModelError, MetricError) as e:
        job.emit(vocab.STATUS, None, {"state": vocab.FAILED, "error": str(e)})  # no validation is recorded
        raise
    values: dict[str, float] = {}
    for m in wanted:
        vals = np.array([pf[m.name] for pf in per_fold], dtype=np.float64)
        values[m.name] = float(vals.mean())
    for m in wanted:
        values[m.name + "_std"] = float(np.array([pf[m.name] for pf in per_fold]).std())
    result = make_result(values, len(y), matrix, {"cv": req.cv, "folds": per_fold, "world_size": world})
    job.emit(vocab.VALIDATION, None, result)
    result["job_id"] = job.id
    return result


def _add_confusion(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    labels = list(a["labels"]) + [v for v in b["labels"] if v not in a["labels"]]
    size = len(labels)
    m = [[0] * size for _ in range(size)]
    for src in (a, b):
        idx = [labels.index(v) for v in src["labels"]]
        for i, row in enumerate(src["matrix"]):
            for j, v in enumerate(row):
                m[idx[i]][idx[j]] += v
    return {"labels": labels, "matrix": m}


__all__ = ["Request", "Context", "validate", "ValidationFailed", "ModelError", "MetricError", "CheckError"]
