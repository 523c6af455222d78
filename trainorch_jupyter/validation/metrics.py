"""The metric registry: scikit-learn's metric functions by name, plus custom callables.

A metric is computed once, in the kernel, from the labels and the per-sample
predictions (and probabilities) gathered in sample order, so a sharded
evaluation gives exactly what a single process gives.

    compute(["accuracy", "roc_auc"], Outputs(...))  ->  {"accuracy": 0.97, "roc_auc": 0.99}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import MetricError

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class Metric:
    name: str
    task: str                       # classification | regression | "" (custom: either)
    fn: Callable[..., float]        # fn(y_true, y_pred | y_proba, labels) -> float
    needs: str = "pred"             # pred | proba
    higher_is_better: bool = True
    doc: str = ""


def _sk() -> Any:
    from sklearn import metrics

    return metrics


def _accuracy(y, pred, labels):
    return _sk().accuracy_score(y, pred)


def _macro(fn_name: str) -> Callable[..., float]:
    def fn(y, pred, labels):
        return getattr(_sk(), fn_name)(y, pred, labels=labels, average="macro", zero_division=0)

    return fn


def _roc_auc(y, proba, labels):
    m = _sk()
    if proba.shape[1] == 2:
        return m.roc_auc_score(y == labels[1], proba[:, 1])
    return m.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)


def _log_loss(y, proba, labels):
    return _sk().log_loss(y, proba, labels=labels)


def _balanced(y, pred, labels):
    return _sk().balanced_accuracy_score(y, pred)


REGISTRY: dict[str, Metric] = {}


def _add(m: Metric, *aliases: str) -> None:
    REGISTRY[m.name] = m
    for a in aliases:
        REGISTRY[a] = m


_add(Metric("accuracy", CLASSIFICATION, _accuracy, doc="fraction of correct labels"), "acc")
_add(Metric("balanced_accuracy", CLASSIFICATION, _balanced, doc="mean recall over classes"))
_add(Metric("precision", CLASSIFICATION, _macro("precision_score"), doc="macro-averaged precision"),
     "precision_macro")
_add(Metric("recall", CLASSIFICATION, _macro("recall_score"), doc="macro-averaged recall"), "recall_macro")
_add(Metric("f1", CLASSIFICATION, _macro("f1_score"), doc="macro-averaged F1"), "f1_macro")
_add(Metric("roc_auc", CLASSIFICATION, _roc_auc, needs="proba",
            doc="ROC AUC (binary; one-vs-rest macro for more classes)"), "auc")
_add(Metric("log_loss", CLASSIFICATION, _log_loss, needs="proba", higher_is_better=False,
            doc="cross-entropy of the predicted probabilities"), "logloss")
_add(Metric("mse", REGRESSION, lambda y, p, _l: _sk().mean_squared_error(y, p), higher_is_better=False,
            doc="mean squared error"), "mean_squared_error")
_add(Metric("rmse", REGRESSION, lambda y, p, _l: float(np.sqrt(_sk().mean_squared_error(y, p))),
            higher_is_better=False, doc="root mean squared error"))
_add(Metric("mae", REGRESSION, lambda y, p, _l: _sk().mean_absolute_error(y, p), higher_is_better=False,
            doc="mean absolute error"), "mean_absolute_error")
_add(Metric("r2", REGRESSION, lambda y, p, _l: _sk().r2_score(y, p), doc="coefficient of determination"))

# what runs when --metrics is not given (probability metrics only when there are probabilities)
DEFAULTS = {
    CLASSIFICATION: ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    REGRESSION: ("mse", "mae", "r2"),
}


def names(task: str | None = None) -> list[str]:
    """Canonical metric names (of one task)."""
    return sorted({m.name for m in REGISTRY.values() if task is None or m.task == task})


def custom(fn: Callable[..., Any], name: str | None = None) -> Metric:
    """A user metric: ``fn(y_true, y_pred) -> float``.

    A function with a parameter named ``y_proba`` (or ``y_prob``/``y_score``) is
    given the class probabilities instead of the labels.  Bigger is better unless
    the function has ``greater_is_better = False`` or its name says loss/error.
    """
    label = name or getattr(fn, "__name__", None) or type(fn).__name__
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    needs = "proba" if any(p in ("y_proba", "y_prob", "y_score") for p in params) else "pred"
    higher = getattr(fn, "greater_is_better", None)
    if higher is None:
        higher = not any(w in label.lower() for w in ("loss", "error", "mse", "mae"))
    return Metric(label, "", lambda y, p, _l: fn(y, p), needs=needs, higher_is_better=bool(higher),
                  doc="custom")


def resolve(requested: Sequence[str | Callable[..., Any]] | None, task: str,
            has_proba: bool) -> list[Metric]:
    """The metrics to compute, in order, without duplicates.

    ``requested`` None means the task's defaults (the probability metrics only if
    the model gives probabilities).  An unknown name, a metric of the other task
    or a probability metric without probabilities is a :class:`MetricError`.
    """
    if requested is None:
        return [REGISTRY[n] for n in DEFAULTS[task] if has_proba or REGISTRY[n].needs != "proba"]
    out: list[Metric] = []
    for item in requested:
        if callable(item):
            m = custom(item)
        else:
            key = str(item).strip().lower()
            if key == "confusion_matrix":
                continue  # always computed for classification
            if key not in REGISTRY:
                raise MetricError(
                    f"unknown metric {item!r}: use one of {', '.join(names(task))}, or a function in the notebook"
                )
            m = REGISTRY[key]
            if m.task != task:
                raise MetricError(
                    f"{m.name} is a {m.task} metric but this is a {task} task; use one of "
                    f"{', '.join(names(task))} (or force the task with --task)"
                )
        if m.needs == "proba" and not has_proba:
            raise MetricError(
                f"{m.name} needs class probabilities, and this model gives only labels "
                "(a scikit-learn classifier needs predict_proba)"
            )
        if m.name not in [o.name for o in out]:
            out.append(m)
    return out


@dataclass
class Outputs:
    """What a model said about the samples, in sample order."""

    task: str
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None = None      # (n, n_classes), columns in ``labels`` order
    labels: list[Any] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(len(self.y_true))


def compute(metrics: Sequence[Metric], out: Outputs) -> dict[str, float]:
    """Every metric's value (a float), named by the metric."""
    values: dict[str, float] = {}
    labels = np.asarray(out.labels) if out.labels else None
    for m in metrics:
        arg = out.proba if m.needs == "proba" else out.y_pred
        try:
            v = m.fn(out.y_true, arg, labels)
        except MetricError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MetricError(f"{m.name} could not be computed: {msg}") from None
        try:
            values[m.name] = float(v)
        except (TypeError, ValueError):
            raise MetricError(f"metric {m.name} returned a {type(v).__name__}, not a number") from None
    return values


def confusion(out: Outputs) -> dict[str, Any] | None:
    """The confusion matrix (rows: true label, columns: predicted), for classification."""
    if out.task != CLASSIFICATION:
        return None
    labels = list(out.labels) if out.labels else sorted(set(out.y_true.tolist()) | set(out.y_pred.tolist()))
    matrix = _sk().confusion_matrix(out.y_true, out.y_pred, labels=labels)
    return {"labels": [_plain(v) for v in labels], "matrix": matrix.astype(int).tolist()}


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def higher_is_better(name: str) -> bool:
    m = REGISTRY.get(name.lower())
    if m is not None:
        return m.higher_is_better
    return not any(w in name.lower() for w in ("loss", "error", "mse", "mae"))
