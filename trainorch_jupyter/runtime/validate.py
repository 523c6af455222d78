"""Engine side of ``%validate``: predict a contiguous shard, run cross-validation folds.

The kernel never imports torch or TensorFlow, so any network is evaluated here.
Every function returns plain data (numpy arrays, strings); failures of the model
on the data come back as an ``error`` string, so the kernel can say in one line
that the data does not match the model.  This module imports nothing of the
kernel side.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from .engine import user_namespace

BATCH = 256


def _rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)  # sparse matrices have no len()


def _mro(obj: Any) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]


def kind_of(obj: Any) -> str | None:
    names = _mro(obj)
    if "torch.nn.modules.module.Module" in names:
        return "torch"
    if any(n.split(".")[0] in ("keras", "tf_keras") or n.startswith("tensorflow.") and ".keras" in n
           for n in names) and callable(getattr(obj, "predict", None)):
        return "keras"
    if not isinstance(obj, type) and callable(getattr(obj, "predict", None)) and callable(getattr(obj, "fit", None)):
        return "sklearn"
    return None


def unwrap(obj: Any) -> Any:
    """The module inside DDP / DataParallel (their forward may need every rank)."""
    if type(obj).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(obj, "module"):
        return obj.module
    return obj


def fingerprint(obj: Any, kind: str | None) -> str:
    """A hash of the model's weights, to check that every rank holds the same model."""
    h = hashlib.blake2b(digest_size=12)
    try:
        if kind == "torch":
            for key, t in obj.state_dict().items():
                h.update(key.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        elif kind == "keras":
            for w in obj.get_weights():
                h.update(w.tobytes())
        else:
            import cloudpickle

            h.update(cloudpickle.dumps(obj))
    except Exception as e:  # cannot hash: do not block the evaluation over it
        return f"unhashable:{type(e).__name__}"
    return h.hexdigest()


def inspect_name(name: str) -> dict[str, Any]:
    """What ``name`` is on this engine: present, kind, type, task hint, probabilities, hash."""
    ns = user_namespace()
    if name not in ns:
        return {"present": False}
    obj = unwrap(ns[name])
    kind = kind_of(obj)
    info: dict[str, Any] = {"present": True, "kind": kind, "type": type(obj).__name__}
    if kind == "sklearn":
        info["has_proba"] = hasattr(obj, "predict_proba")
        try:
            from sklearn.base import is_classifier, is_regressor

            info["task"] = "classification" if is_classifier(obj) else ("regression" if is_regressor(obj) else None)
        except Exception:
            info["task"] = None
    if kind is not None:
        info["fingerprint"] = fingerprint(obj, kind)
    return info


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def outputs(obj: Any, X: Any, kind: str, want_proba: bool, batch: int = BATCH) -> dict[str, Any]:
    """The model's outputs for ``X``: raw outputs (logits, probabilities or
    predictions) and, for scikit-learn classifiers, probabilities and classes."""
    import numpy as np

    if kind == "torch":
        import torch

        obj = unwrap(obj)
        params = list(obj.parameters())
        dev = params[0].device if params else torch.device("cpu")
        dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
        was_training = obj.training
        obj.eval()
        chunks = []
        try:
            with torch.no_grad():
                for i in range(0, _rows(X), batch):
                    xb = torch.as_tensor(np.asarray(X[i:i + batch]))
                    if xb.is_floating_point():
                        xb = xb.to(dtype)
                    out = obj(xb.to(dev))
                    if isinstance(out, (tuple, list)):
                        out = out[0]
                    chunks.append(out.detach().cpu().double().numpy())
        finally:
            obj.train(was_training)
        raw = np.concatenate(chunks) if chunks else np.zeros((0,))
        return {"raw": raw, "proba": None, "classes": None}
    if kind == "keras":
        raw = obj.predict(np.asarray(X), batch_size=batch, verbose=0)
        if isinstance(raw, (list, tuple)):
            raw = raw[0]
        return {"raw": np.asarray(raw, dtype=np.float64), "proba": None, "classes": None}
    # in batches counted from the shard's start (a multiple of ``batch``): the same rows
    # go through each call as in a single-process evaluation
    n = _rows(X)
    pred = np.concatenate([np.asarray(obj.predict(X[i:i + batch])) for i in range(0, n, batch)])
    proba = None
    if want_proba:
        proba = np.concatenate([np.asarray(obj.predict_proba(X[i:i + batch]), dtype=np.float64)
                                for i in range(0, n, batch)])
    classes = list(getattr(obj, "classes_", [])) or None
    return {"raw": pred, "proba": proba, "classes": classes}


def predict_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Predict the shard the kernel pushed as ``spec["data"]`` with the model named ``spec["model"]``."""
    ns = user_namespace()
    X = ns.pop(spec["data"], None)
    if spec["model"] not in ns:
        return {"error": f"NameError: {spec['model']!r} is not defined on this engine"}
    obj = ns[spec["model"]]
    kind = kind_of(unwrap(obj))
    if kind is None:
        return {"error": f"TypeError: a {type(obj).__name__} is not a model %validate can evaluate"}
    if X is None or _rows(X) == 0:
        return {"empty": True, "error": None}  # fewer batches than ranks: nothing to do here
    try:
        out = outputs(obj, X, kind, spec.get("proba", False), spec.get("batch", BATCH))
    except Exception as e:
        return {"error": _one_line(e)}
    out["error"] = None
    return out


def _fresh(base: Any, kind: str) -> Any:
    """An unfitted copy for one fold: a scikit-learn clone, a torch deep copy, a Keras clone."""
    if kind == "sklearn":
        from sklearn.base import clone

        return clone(base)
    if kind == "keras":
        import importlib

        keras = importlib.import_module(type(base).__module__.split(".")[0])
        if keras.__name__ == "tensorflow":
            keras = keras.keras
        return keras.models.clone_model(base)
    return copy.deepcopy(base)


def run_folds(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Fit and predict this rank's folds: ``spec["folds"]`` is [(fold, train_idx, test_idx)]."""
    import numpy as np

    ns = user_namespace()
    X, y = ns[spec["X"]], ns[spec["y"]]
    base = unwrap(ns[spec["model"]])
    kind = kind_of(base)
    fit = ns.get(spec["fit"]) if spec.get("fit") else None
    results = []
    for fold, train, test in ns.pop(spec["folds"], []):
        try:
            m = _fresh(base, kind)
            Xtr, ytr = _take(X, train), np.asarray(y)[train]
            if fit is not None:
                fitted = fit(m, Xtr, ytr)
                m = m if fitted is None else fitted
            else:
                m.fit(Xtr, ytr)
            out = outputs(m, _take(X, test), kind_of(unwrap(m)) or kind, spec.get("proba", False))
            out["error"] = None
        except Exception as e:
            out = {"error": _one_line(e)}
        out["fold"] = fold
        results.append(out)
    return results


def _take(X: Any, idx: Any) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    import numpy as np

    return np.asarray(X)[idx] if not hasattr(X, "__getitem__") or isinstance(X, list) else X[idx]
