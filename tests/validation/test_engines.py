"""%validate on a real 2-engine pool: sharded evaluation, models pushed from the
notebook, cross-validation across engines, the run store, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn import metrics as skm

from trainorch_jupyter import api, model

from ..jobs.helpers import run

N_EVAL = 3001  # odd, not a multiple of the batch: the shards differ in size

TRAIN = """
import torch
from torch import nn
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 5))
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
Xt, yt = torch.from_numpy(X_fit), torch.from_numpy(y_fit)
for _ in range(40):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(net(Xt), yt)
    loss.backward()
    opt.step()
"""


def _data(n, seed):
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(99).normal(size=(32, 5))
    X = rng.normal(size=(n, 32)).astype(np.float32)
    y = (X @ W + rng.normal(scale=2.0, size=(n, 5))).argmax(axis=1).astype(np.int64)
    return X, y


@pytest.fixture
def trained(healthy_pool):
    """A torch net trained the same way on every rank (same seed), also pulled into ``ns``."""
    X_fit, y_fit = _data(2000, 1)
    ns = {"X_fit": X_fit, "y_fit": y_fit}
    job = run(TRAIN, ns, framework="none", push=["X_fit", "y_fit"], pull=["net"])
    return ns, job


def test_a_sharded_evaluation_equals_the_single_process_one(trained):
    ns, train_job = trained
    X, y = _data(N_EVAL, 2)
    two = api.validate("net", X, y, name="sharded", show=False)
    one = api.validate("net", X, y, n=1, name="single-engine", show=False)
    assert two["world_size"] == 2 and two["shards"] == [1536, 1465] and two["n_samples"] == N_EVAL
    assert one["world_size"] == 1 and np.array(two["confusion"]["matrix"]).sum() == N_EVAL  # nothing padded

    # the reference: one plain process, the pulled network on all samples at once
    import torch

    with torch.no_grad():
        logits = ns["net"](torch.from_numpy(X)).double().numpy()
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    ref = {
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=list(range(5))),
        "log_loss": skm.log_loss(y, proba, labels=list(range(5))),
    }
    for name, value in ref.items():
        assert two["metrics"][name] == pytest.approx(value, abs=1e-9), name
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-9), name
    assert 0.5 < two["metrics"]["accuracy"] < 1.0  # a real model, not a trivial one
    assert two["model_job_id"] == train_job.id  # linked to the %%distribute job that made it


def test_the_validation_is_a_validate_job_in_the_run_store(trained):
    X, y = _data(501, 3)
    res = api.validate("net", X, y, min={"accuracy": 0.2}, name="stored-net", show=False)
    api._flush_store()
    row = api.store().validation("stored-net")
    assert row["job_id"] == res["job_id"] and row["passed"] is True and row["n_samples"] == 501
    assert row["metrics"] == pytest.approx(res["metrics"]) and row["task"] == "classification"
    assert row["bounds"][0]["metric"] == "accuracy" and row["bounds"][0]["op"] == ">="
    job = api.store().job(res["job_id"])
    assert job["kind"] == model.VALIDATE and job["state"] == "done" and job["world_size"] == 2
    assert job["source"] == "api.validate(net)"  # what %runs shows for it
    assert row["model_job_id"] == trained[1].id


def test_a_network_in_the_notebook_is_pushed_to_the_engines(trained):
    ns, _ = trained
    X, y = _data(777, 4)
    pushed = api.validate(ns["net"], X, y, name="pushed", show=False)
    resident = api.validate("net", X, y, show=False)
    assert pushed["where"] == "push" and pushed["world_size"] == 2
    assert pushed["metrics"] == pytest.approx(resident["metrics"], abs=1e-12)
    # the temporary copy does not stay on the engines
    left = run("left = sorted(k for k in globals() if k.startswith('_trainorch'))", {}, framework="none",
               gather=["left"])
    assert left.results[("gather", "left")] == [[], []]


def test_ranks_holding_different_models_are_refused(healthy_pool):
    run("import torch\nfrom trainorch_jupyter.runtime import rank\ntorch.manual_seed(rank())\n"
        "odd = torch.nn.Linear(4, 2)", {}, framework="none")
    X = np.zeros((10, 4), np.float32)
    with pytest.raises(api.UsageProblem, match="the ranks hold different 'odd' models"):
        api.validate("odd", X, np.zeros(10, np.int64), show=False)


def test_bad_input_on_the_engines_is_one_line_and_the_pool_stays_usable(trained):
    X, y = _data(100, 5)
    cases = [
        (dict(model="net", X=X[:, :7], y=y), "the data does not match the model: RuntimeError: mat1 and mat2"),
        (dict(model="nowhere", X=X, y=y), "'nowhere' is neither in the notebook nor on rank 0's engine"),
        (dict(model="X_fit", X=X, y=y), "X_fit on the engines is of type ndarray"),
        (dict(model="net", X=X, y=y + 10), "y must hold class indices 0..4"),
        (dict(model="net", X=X, y=y, metrics=["r2"]), "r2 is a regression metric"),
        (dict(model="net", X=X, y=y, cv=3), "--cv with a torch model needs --fit NAME"),
    ]
    for kw, message in cases:
        with pytest.raises(api.UsageProblem) as e:
            api.validate(kw.pop("model"), kw.pop("X"), kw.pop("y"), show=False, **kw)
        assert message in str(e.value) and "\n" not in str(e.value)
    ok = api.validate("net", X, y, show=False)  # the pool is fine afterwards
    assert ok["n_samples"] == 100


def test_cross_validation_fans_folds_out_and_matches_scikit_learn(healthy_pool):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    res = api.validate(est, X, y, cv=5, metrics=["accuracy", "roc_auc"], min={"accuracy": 0.9}, name="cv",
                       show=False)
    ref = cross_val_score(est, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="accuracy")
    assert res["cv"] == 5 and len(res["folds"]) == 5 and res["world_size"] == 2
    assert res["metrics"]["accuracy"] == pytest.approx(ref.mean(), abs=1e-12)
    assert res["metrics"]["accuracy_std"] == pytest.approx(ref.std(), abs=1e-12)
    assert np.array(res["confusion"]["matrix"]).sum() == len(y)  # every sample tested once
    assert res["passed"] and not hasattr(est, "classes_")  # the notebook's estimator stays unfitted
    with pytest.raises(api.UsageProblem, match=r"--cv 600: only 569 samples; use --cv 2\.\.569"):
        api.validate(est, X, y, cv=600, show=False)


def test_cross_validation_of_a_torch_model_through_a_fit_function(trained):
    ns, _ = trained
    X, y = _data(600, 6)

    def fit(model, X_train, y_train):
        import torch

        torch.manual_seed(0)
        for layer in model:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt), yt).backward()
            opt.step()
        return model

    res = api.validate("net", X, y, cv=3, fit=fit, metrics=["accuracy", "log_loss"], show=False)
    assert res["cv"] == 3 and len(res["folds"]) == 3
    assert all(0.3 < f["accuracy"] <= 1.0 for f in res["folds"])
    assert res["metrics"]["log_loss_std"] >= 0


@pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                    reason="needs keras on the engines (make setup installs tensorflow-cpu)")
def test_a_keras_model_on_the_engines_sharded_and_cross_validated(healthy_pool):
    # find_spec, not importorskip: this process is the kernel, which must never import TensorFlow
    run(
        "import keras\n"
        "keras.utils.set_random_seed(0)\n"
        "knet = keras.Sequential([keras.Input((32,)), keras.layers.Dense(16, activation='relu'),\n"
        "                         keras.layers.Dense(5, activation='softmax')])\n",
        {}, framework="none",
    )
    X, y = _data(1001, 7)
    two = api.validate("knet", X, y, show=False)
    one = api.validate("knet", X, y, n=1, show=False)
    assert two["model"] == "Sequential" and two["shards"] == [512, 489]
    for name in ("accuracy", "f1", "roc_auc", "log_loss"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-9), name

    def fit(model, X_train, y_train):
        import keras

        keras.utils.set_random_seed(0)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(X_train, y_train, epochs=20, batch_size=32, verbose=0)
        return model

    cv = api.validate("knet", X, y, cv=2, fit=fit, metrics=["accuracy", "log_loss"], show=False)
    assert len(cv["folds"]) == 2 and cv["metrics"]["accuracy"] > 0.25  # trained, better than chance (0.2)


def test_a_validation_cancelled_mid_way_ends_cleanly_and_the_pool_stays_usable(trained):
    import threading
    import time

    run("import time, torch\n"
        "class Slow(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        time.sleep(600)\n"
        "        return x\n"
        "slow = Slow()\n", {}, framework="none")
    X, y = _data(300, 8)
    outcome = {}

    def go():
        try:
            api.validate("slow", X, y, show=False)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            outcome["error"] = e

    t = threading.Thread(target=go)
    t.start()
    deadline = time.monotonic() + 60
    while not [j for j in api.jobs() if j.snapshot.kind == model.VALIDATE and not j.done]:
        assert time.monotonic() < deadline, "the validate job never started"
        time.sleep(0.05)
    job = [j for j in api.jobs() if j.snapshot.kind == model.VALIDATE and not j.done][-1]
    job.cancel("stopped by the test")
    t.join(60)
    assert not t.is_alive()
    assert isinstance(outcome.get("error"), api.DistributedError) and "stopped by the test" in str(outcome["error"])
    assert job.state == model.CANCELLED
    ok = api.validate("net", X, y, show=False)  # the next one runs
    assert ok["n_samples"] == 300
