"""The pure parts of %validate: metrics, task inference, outputs, bounds, baselines, views."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from trainorch_jupyter.validation import checks, engines, metrics, models
from trainorch_jupyter.validation.errors import CheckError, MetricError, ModelError, ValidationFailed
from trainorch_jupyter.views.validation import bundle, confusion_svg, validation_text


def _outputs(seed=0, n=301, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2 * np.eye(k)[y]
    pred, proba, labels = models.interpret(logits, metrics.CLASSIFICATION, y)
    return metrics.Outputs(metrics.CLASSIFICATION, y, pred, proba, labels)


def test_metrics_are_scikit_learns():
    out = _outputs()
    wanted = metrics.resolve(None, metrics.CLASSIFICATION, has_proba=True)
    assert [m.name for m in wanted] == ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
    v = metrics.compute(wanted, out)
    assert v["accuracy"] == skm.accuracy_score(out.y_true, out.y_pred)
    assert v["f1"] == skm.f1_score(out.y_true, out.y_pred, average="macro")
    assert v["roc_auc"] == skm.roc_auc_score(out.y_true, out.proba, multi_class="ovr")
    assert v["log_loss"] == skm.log_loss(out.y_true, out.proba)
    cm = metrics.confusion(out)
    assert cm["labels"] == [0, 1, 2] and np.array(cm["matrix"]).sum() == 301
    assert cm["matrix"] == skm.confusion_matrix(out.y_true, out.y_pred).tolist()


def test_without_probabilities_the_defaults_leave_out_auc_and_log_loss_and_asking_is_an_error():
    assert "roc_auc" not in [m.name for m in metrics.resolve(None, metrics.CLASSIFICATION, has_proba=False)]
    with pytest.raises(MetricError, match="log_loss needs class probabilities"):
        metrics.resolve(["log_loss"], metrics.CLASSIFICATION, has_proba=False)


def test_unknown_metric_and_metric_of_the_other_task_are_one_line_errors():
    with pytest.raises(MetricError, match="unknown metric 'bogus': use one of accuracy") as e:
        metrics.resolve(["bogus"], metrics.CLASSIFICATION, True)
    assert "\n" not in str(e.value)
    with pytest.raises(MetricError, match="r2 is a regression metric"):
        metrics.resolve(["r2"], metrics.CLASSIFICATION, True)


def test_regression_metrics_and_custom_callables():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.5, 4.0])

    def max_error(y_true, y_pred):
        return float(np.max(np.abs(y_true - y_pred)))

    wanted = metrics.resolve(["mse", "mae", "r2", max_error], metrics.REGRESSION, False)
    v = metrics.compute(wanted, metrics.Outputs(metrics.REGRESSION, y, p))
    assert v == {"mse": skm.mean_squared_error(y, p), "mae": skm.mean_absolute_error(y, p),
                 "r2": skm.r2_score(y, p), "max_error": 0.5}
    assert wanted[-1].higher_is_better is False  # "error" in its name


def test_custom_metric_with_y_proba_gets_probabilities():
    out = _outputs()

    def top_confidence(y_true, y_proba):
        return float(y_proba.max(axis=1).mean())

    (m,) = metrics.resolve([top_confidence], metrics.CLASSIFICATION, True)
    assert metrics.compute([m], out)["top_confidence"] == pytest.approx(out.proba.max(axis=1).mean())


def test_task_is_inferred_and_can_be_forced():
    assert models.infer_task(np.array([0, 1, 2])) == metrics.CLASSIFICATION
    assert models.infer_task(np.array(["a", "b"])) == metrics.CLASSIFICATION
    assert models.infer_task(np.array([0.5, 1.2])) == metrics.REGRESSION
    assert models.infer_task(np.array([0.0, 1.0]), hint=metrics.CLASSIFICATION) == metrics.CLASSIFICATION
    assert models.infer_task(np.array([0, 1]), forced="regression") == metrics.REGRESSION
    with pytest.raises(ModelError, match="--task banana: use classification or regression"):
        models.infer_task(np.array([0]), forced="banana")


def test_outputs_logits_probabilities_and_one_column():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 0.0]])
    pred, proba, labels = models.interpret(logits, metrics.CLASSIFICATION, np.array([0, 1]))
    assert pred.tolist() == [0, 1] and labels == [0, 1, 2]
    assert np.allclose(proba.sum(axis=1), 1) and np.allclose(proba[0], np.exp(logits[0]) / np.exp(logits[0]).sum())
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert np.allclose(models.interpret(p, metrics.CLASSIFICATION, np.array([0, 2]))[1], p, atol=1e-15)  # as given
    _, proba1, _ = models.interpret(np.array([[-2.0], [3.0]]), metrics.CLASSIFICATION, np.array([0, 1]))
    assert np.allclose(proba1[:, 1], 1 / (1 + np.exp([2.0, -3.0])))
    with pytest.raises(ModelError, match="y must hold class indices 0..2"):
        models.interpret(logits, metrics.CLASSIFICATION, np.array([0, 7]))


def test_model_kinds_are_told_apart_without_importing_frameworks():
    from sklearn.linear_model import LogisticRegression

    assert models.model_kind(LogisticRegression()) == models.SKLEARN
    assert models.model_kind(LogisticRegression) is None  # the class, not a model
    assert models.model_kind("model") is None and models.model_kind(3) is None
    # a class whose MRO says torch.nn.Module is a torch model, whatever else it is
    Fake = type("Module", (), {"__module__": "torch.nn.modules.module"})
    Net = type("Net", (Fake,), {})
    assert models.model_kind(Net()) == models.TORCH


def test_data_shape_mismatches_are_one_line_errors():
    with pytest.raises(ModelError, match="X has 3 samples but y has 2"):
        models.check_data(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ModelError, match="y has shape"):
        models.check_data(np.zeros((3, 2)), np.zeros((3, 2)))


def test_bounds_parse_and_check():
    assert checks.parse_bounds(["accuracy=0.9", "f1=0.8,recall=0.7"], ">=") == [
        ("accuracy", 0.9), ("f1", 0.8), ("recall", 0.7)]
    for bad in ("accuracy", "accuracy=high", "=3", "accuracy=inf"):
        with pytest.raises(CheckError, match="--min"):
            checks.parse_bounds([bad], ">=")
    got = checks.bound_checks({"accuracy": 0.85, "log_loss": 0.4},
                              [("accuracy", ">=", 0.9), ("log_loss", "<=", 0.5)])
    assert [b["passed"] for b in got] == [False, True]
    assert checks.bound_checks({"accuracy": float("nan")}, [("accuracy", ">=", 0.0)])[0]["passed"] is False


def test_baseline_regression_says_by_how_much_in_the_metrics_direction():
    base = {"name": "v1", "job_id": "abc", "metrics": {"accuracy": 0.95, "log_loss": 0.20}}
    got = checks.baseline_checks({"accuracy": 0.93, "log_loss": 0.21}, base, tolerance=0.015)
    acc, ll = got
    assert acc["passed"] is False and acc["delta"] == pytest.approx(-0.02) and acc["bound"] == pytest.approx(0.935)
    assert ll["passed"] is True and ll["bound"] == pytest.approx(0.215)  # lower is better: +tolerance
    err = ValidationFailed({"name": "v2", "bounds": got})
    assert str(err) == ("v2: 1 check failed: accuracy = 0.93 regressed by 0.02 from the baseline's 0.95 "
                        "(tolerance 0.015)")
    with pytest.raises(CheckError, match="has none of the metrics"):
        checks.baseline_checks({"mse": 1.0}, base, 0.0)


def test_views_are_deterministic_and_mark_every_check():
    out = _outputs()
    values = metrics.compute(metrics.resolve(None, out.task, True), out)
    result = {"name": "m", "model": "Net", "task": out.task, "n_samples": 301, "metrics": values,
              "bounds": checks.bound_checks(values, [("accuracy", ">=", 0.99), ("log_loss", "<=", 5.0)]),
              "passed": False, "confusion": metrics.confusion(out), "where": "engines", "world_size": 2,
              "job_id": "0123456789ab"}
    text = validation_text(result)
    assert text == validation_text(dict(result))
    assert text.splitlines()[0] == ("validation m: FAILED (1/2 checks passed) - Net, classification, "
                                    "301 samples, evaluated on 2 ranks")
    acc = next(line for line in text.splitlines() if line.split()[:1] == ["accuracy"])
    assert acc.split()[-1] == "FAIL" and ">= 0.99" in acc
    assert "confusion matrix" in text and "0123456789ab" not in text
    b = bundle(result)
    assert "<svg" in b["text/html"] and b["text/html"].count("<rect") == 9
    assert confusion_svg(None) == ""


def test_shards_are_contiguous_cut_at_batch_multiples_and_cover_every_sample_once():
    for n in (1, 100, 255, 256, 257, 451, 3001, 20001):
        for world in (1, 2, 3, 4):
            b = engines.shard_bounds(n, world, batch=256)
            assert len(b) == world and b[0][0] == 0 and b[-1][1] == n
            assert all(lo <= hi for lo, hi in b) and all(b[i][1] == b[i + 1][0] for i in range(world - 1))
            assert all(lo % 256 == 0 for lo, _ in b)  # every forward batch starts where it would in one process
            sizes = [hi - lo for lo, hi in b]
            assert max(sizes) - min(sizes) <= 256
    assert engines.shard_bounds(3001, 2, batch=256) == [(0, 1536), (1536, 3001)]
    assert engines.shard_bounds(100, 2, batch=256) == [(0, 0), (0, 100)]
