"""What kind of model this is, what task it solves, and what its outputs mean.

Model types are told apart by their classes' module names, never by importing a
framework: the kernel must not import torch or TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ModelError
from .metrics import CLASSIFICATION, REGRESSION, TASKS

SKLEARN, TORCH, KERAS = "sklearn", "torch", "keras"
KINDS = (SKLEARN, TORCH, KERAS)


def _mro_names(obj: Any) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]


def model_kind(obj: Any) -> str | None:
    """``sklearn``, ``torch``, ``keras``, or None when this is no model we can evaluate.

    Anything with the scikit-learn ``predict`` API (a Pipeline, an XGBoost or
    LightGBM sklearn wrapper) counts as ``sklearn``.
    """
    names = _mro_names(obj)
    if any(n == "torch.nn.modules.module.Module" for n in names):
        return TORCH
    if any(n.split(".")[0] in ("keras", "tf_keras") or n.startswith("tensorflow.") and ".keras" in n
           for n in names) and callable(getattr(obj, "predict", None)):
        return KERAS
    if isinstance(obj, type):
        return None  # a class, not a fitted model
    if callable(getattr(obj, "predict", None)) and callable(getattr(obj, "fit", None)):
        return SKLEARN
    return None


def describe(obj: Any) -> str:
    """A short, deterministic description: the class and, for scikit-learn, its parameters."""
    name = type(obj).__name__
    if model_kind(obj) == SKLEARN:
        try:
            text = " ".join(repr(obj).split())  # scikit-learn shows the parameters that differ from defaults
        except Exception:
            return name
        return text if len(text) <= 120 else text[:117] + "..."
    return name


def sklearn_task(obj: Any) -> str | None:
    """What a scikit-learn estimator says it is (None when it does not say)."""
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(obj):
            return CLASSIFICATION
        if is_regressor(obj):
            return REGRESSION
    except Exception:
        pass
    if hasattr(obj, "classes_") or callable(getattr(obj, "predict_proba", None)):
        return CLASSIFICATION
    return None


def infer_task(y: np.ndarray, hint: str | None = None, forced: str | None = None) -> str:
    """Classification or regression: ``forced`` wins, then the model's own word,
    then the labels (integers, booleans or strings: classification; other floats:
    regression)."""
    if forced is not None:
        key = forced.strip().lower()
        if key not in TASKS:
            raise ModelError(f"--task {forced}: use classification or regression")
        return key
    if hint in TASKS:
        return hint
    y = np.asarray(y)
    if y.dtype.kind in "biuUSO":
        return CLASSIFICATION
    return REGRESSION


def check_data(X: Any, y: Any) -> tuple[Any, np.ndarray]:
    """X and y as arrays with one row per sample, or a ModelError saying what is off."""
    if X is None or y is None:
        raise ModelError("--data needs X and y: --data X_val,y_val")
    if not hasattr(X, "__len__"):
        raise ModelError(f"--data: X is a {type(X).__name__}, not an array of samples")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ModelError(f"--data: y has shape {y.shape}; give one label or target per sample")
    n = _rows(X)
    if n != len(y):
        raise ModelError(f"--data: X has {n} samples but y has {len(y)}; give matching X and y")
    if n == 0:
        raise ModelError("--data: no samples")
    return X, y


def _rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)


def interpret(raw: np.ndarray, task: str, y: np.ndarray, outputs: str = "auto"
              ) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """A network's raw outputs as (predictions, probabilities or None, labels).

    Classification: a column per class (``outputs`` auto: rows already summing
    to 1 in [0, 1] are probabilities, anything else is logits and gets a
    softmax) or one column (a sigmoid, unless already in [0, 1]).  The labels
    are the class indices 0..C-1.  Regression: the outputs are the predictions.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if task == REGRESSION:
        pred = raw.reshape(len(raw), -1)
        if pred.shape[1] == 1:
            pred = pred[:, 0]
        return pred, None, []
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2:
        raise ModelError(f"the model's outputs have shape {raw.shape}; a classifier needs one row per sample")
    if raw.shape[1] == 1:
        p1 = raw[:, 0]
        if outputs == "logits" or (outputs == "auto" and (p1.min() < 0 or p1.max() > 1)):
            p1 = 1.0 / (1.0 + np.exp(-p1))
        proba = np.stack([1.0 - p1, p1], axis=1)
    else:
        is_proba = (raw.min() >= 0 and raw.max() <= 1 and np.allclose(raw.sum(axis=1), 1.0, atol=1e-5))
        if outputs == "logits" or (outputs == "auto" and not is_proba):
            z = raw - raw.max(axis=1, keepdims=True)
            e = np.exp(z)
            proba = e / e.sum(axis=1, keepdims=True)
        else:
            proba = raw / raw.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 +- 1e-7
    labels = list(range(proba.shape[1]))
    yk = np.asarray(y)
    if yk.dtype.kind not in "biu" or (len(yk) and (yk.min() < 0 or yk.max() >= proba.shape[1])):
        raise ModelError(
            f"the model gives {proba.shape[1]} class scores per sample, so y must hold class indices "
            f"0..{proba.shape[1] - 1}; got {_label_range(yk)}"
        )
    return proba.argmax(axis=1), proba, labels


def _label_range(y: np.ndarray) -> str:
    if y.dtype.kind in "biuf" and len(y):
        return f"{y.dtype} labels from {y.min()} to {y.max()}"
    return f"{y.dtype} labels"
