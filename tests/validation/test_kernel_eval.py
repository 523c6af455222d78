"""%validate of scikit-learn estimators in the kernel (no engines needed) and what it stores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from trainorch_jupyter import api, model


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_results_are_stored_as_a_validate_job_and_found_by_name(wine):
    X_tr, X_te, y_tr, y_te = wine
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_tr, y_tr)
    lines = []
    res = api.validate(clf, X_te, y_te, min={"accuracy": 0.8}, name="wine-lr", log=lines.append)
    assert lines[0].startswith("validation wine-lr: passed (1/1 checks passed) - Pipeline(")
    assert res["metrics"]["accuracy"] == clf.score(X_te, y_te)
    api._flush_store()
    stored = api.store().validation("wine-lr")
    assert stored["job_id"] == res["job_id"] and stored["passed"] is True
    assert stored["metrics"] == res["metrics"] and stored["n_samples"] == len(y_te)
    job = api.store().job(res["job_id"])
    assert job["kind"] == model.VALIDATE and job["state"] == "done" and job["framework"] == "sklearn"
    # the full result, confusion matrix included, is in the job's events
    ev = [e for e in api.store().events(res["job_id"]) if e["kind"] == model.VALIDATION][0]
    assert np.array(ev["data"]["confusion"]["matrix"]).sum() == len(y_te)
    assert api.store().validation(res["job_id"][:8])["name"] == "wine-lr"  # by id prefix too


def test_a_bound_on_a_metric_not_asked_for_is_computed_and_names_keep_their_case(wine):
    X_tr, X_te, y_tr, y_te = wine
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_tr, y_tr)

    def meanConfidence(y_true, y_proba):  # noqa: N802 - a user's name, kept as written
        return float(y_proba.max(axis=1).mean())

    res = api.validate(clf, X_te, y_te, metrics=["acc", meanConfidence],
                       min={"meanConfidence": 0.5, "ROC_AUC": 0.9}, show=False)
    assert list(res["metrics"]) == ["accuracy", "meanConfidence", "roc_auc"]
    assert [(b["metric"], b["passed"]) for b in res["bounds"]] == [("meanConfidence", True), ("roc_auc", True)]


def test_baseline_uses_each_metrics_direction(wine):
    X, y = load_diabetes(return_X_y=True)
    good = LinearRegression().fit(X, y)
    api.validate(good, X, y, name="diabetes", show=False)
    worse = LinearRegression().fit(X[:, :3], y)
    with pytest.raises(api.ValidationFailed) as e:
        api.validate(worse, X[:, :3], y, baseline="diabetes", tolerance=1.0, show=False)
    failed = {b["metric"]: b for b in e.value.failures}
    assert set(failed) == {"mse", "mae"}  # lower is better: they rose by more than 1.0
    r2 = next(b for b in e.value.result["bounds"] if b["metric"] == "r2")
    assert r2["passed"] and r2["delta"] < 0 and r2["bound"] == pytest.approx(r2["baseline"] - 1.0)
    assert failed["mse"]["delta"] > 1.0 and failed["mse"]["higher_is_better"] is False
    assert "mse = " in str(e.value) and "regressed by" in str(e.value)
    # not raised, but recorded as failed
    res = api.validate(worse, X[:, :3], y, baseline="diabetes", tolerance=1.0, show=False,
                       raise_on_fail=False, name="diabetes-worse")
    api._flush_store()
    assert res["passed"] is False and api.store().validation("diabetes-worse")["passed"] is False


def test_models_without_probabilities_and_unfitted_models(wine):
    X_tr, X_te, y_tr, y_te = wine
    svc = SVC().fit(X_tr, y_tr)  # no predict_proba unless probability=True
    res = api.validate(svc, X_te, y_te, show=False)
    assert "roc_auc" not in res["metrics"] and "accuracy" in res["metrics"]
    with pytest.raises(api.UsageProblem, match="log_loss needs class probabilities"):
        api.validate(svc, X_te, y_te, metrics=["log_loss"], show=False)
    api._flush_store()
    before = len(api.store().validations(100))
    with pytest.raises(api.UsageProblem, match="the model is not fitted"):
        api.validate(LogisticRegression(), X_te, y_te, name="unfitted", show=False)
    api._flush_store()
    assert len(api.store().validations(100)) == before  # nothing stored for a request that could not run
    failed = api.store().jobs(1, kind=model.VALIDATE)[0]
    assert failed["state"] == "failed" and "not fitted" in failed["error"]


def test_regression_is_inferred_and_classification_can_be_forced():
    X, y = load_diabetes(return_X_y=True)
    res = api.validate(LinearRegression().fit(X, y), X, y, show=False)
    assert res["task"] == "regression" and set(res["metrics"]) == {"mse", "mae", "r2"}
    assert res["confusion"] is None
    with pytest.raises(api.UsageProblem, match="accuracy is a classification metric"):
        api.validate(LinearRegression().fit(X, y), X, y, metrics=["accuracy"], show=False)
