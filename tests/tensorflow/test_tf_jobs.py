"""TensorFlow on real engines: Keras fit across 2 CPU workers, failures, reuse, restarts.

The tests share one module-scoped 2-engine pool and run in this order, so the
engines import TensorFlow as few times as the scenarios allow (a failed TF job
needs fresh engines for the next one: TensorFlow sets its cluster up once per
process).
"""

import importlib.util
import json
import socket
import sys

import numpy as np
import pytest

from trainorch_jupyter import api, model
from trainorch_jupyter.api import DistributedError, LaunchError
from trainorch_jupyter.jobs import launch

from ..jobs.helpers import run

# find_spec, not importorskip: this process is the kernel, and must never import TensorFlow
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf_keras") is None,
    reason="the TensorFlow tests need tensorflow-cpu and tf_keras (make setup installs them)",
)

EPOCHS = 2
FIT = """
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from trainorch_jupyter.runtime import KerasReport, rank

X, y = load_digits(return_X_y=True)
X = (X[:512] / 16.0).astype("float32"); y = y[:512]
tf.keras.utils.set_random_seed(0)
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Input((64,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    model.compile(tf.keras.optimizers.Adam(0.01), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
history = model.fit(X, y, batch_size=64, epochs=%d, verbose=0, callbacks=[KerasReport()%s])
""" % (EPOCHS, "%s")

STRATEGY_ID = "sid = id(strategy)\nworkers = strategy.num_replicas_in_sync"


@pytest.fixture(scope="module")
def tf_pool():
    """A fresh 2-engine pool for this module, stopped at its end (its engines hold TensorFlow)."""
    api.stop_pool()
    pool = api.start_pool(2)
    yield pool
    api.stop_pool()


def assert_tf_works(pool, expect_restart=False):
    """A TensorFlow cell runs on both engines; ``expect_restart``: whether engines that still
    held an earlier cluster had to be restarted first (None: either, it depends on timing)."""
    ns = {}
    job = run(STRATEGY_ID, ns, framework="tensorflow", gather=["workers"])
    assert ns["workers"] == [2, 2] and job.state == model.DONE
    if expect_restart is not None:
        assert ("Restarting engine" in job.printed) == expect_restart, job.printed
    assert len(pool.alive_ids() & set(pool.engine_ids())) == 2


def test_keras_fit_across_two_workers_reports_and_pulls_weights(tf_pool):
    ns = {}
    job = run(FIT % "" + "\nenv = __import__('os').environ['TF_CONFIG']", ns, framework="keras",
              pull=["model", "history"], gather=["env"])
    assert job.state == model.DONE and job.snapshot.backend == "ring"
    # TF_CONFIG: every engine's own address, task index = rank
    cfgs = [json.loads(e) for e in ns["env"]]
    assert [c["task"] for c in cfgs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    workers = cfgs[0]["cluster"]["worker"]
    assert cfgs[1]["cluster"]["worker"] == workers and len(set(workers)) == 2
    assert [w.rsplit(":", 1)[0] for w in workers] == [s.ip for s in tf_pool.slots]
    # --pull of a Keras model: its weights, numpy arrays usable here without TensorFlow
    weights = ns["model"]
    assert isinstance(weights, list) and [w.shape for w in weights] == [(64, 16), (16,), (16, 10), (10,)]
    assert all(isinstance(w, np.ndarray) for w in weights)
    assert set(ns["history"]) == {"loss", "accuracy"} and len(ns["history"]["loss"]) == EPOCHS
    # KerasReport: batch progress and the epoch's metrics, on both ranks
    steps = 512 // 64
    for row in job.snapshot.ranks.values():
        assert row.state == model.DONE and (row.step, row.total) == (EPOCHS * steps, EPOCHS * steps)
        assert row.metrics["epoch"] == EPOCHS and 0 < row.metrics["accuracy"] <= 1 and row.metrics["loss"] > 0
        assert row.metrics["loss"] == pytest.approx(ns["history"]["loss"][-1])
    assert job.reports_received(0) == EPOCHS * steps + EPOCHS and job.lost_reports == {0: 0, 1: 0}
    # the kernel (this process) never imported TensorFlow
    assert not {"tensorflow", "tf_keras", "keras"} & set(sys.modules)


def test_a_second_cell_reuses_the_strategy(tf_pool):
    ns = {}
    pids = [s.pid for s in tf_pool.slots]
    first = run(STRATEGY_ID, ns, framework="tensorflow", gather=["sid"])
    sid = ns["sid"]
    again = run(FIT % "", {}, framework="tf")  # fit again on the same worker set
    third = run(STRATEGY_ID, ns, framework="tensorflow", gather=["sid"])
    assert ns["sid"] == sid and [s.pid for s in tf_pool.slots] == pids  # same processes, same strategy
    assert all(j.state == model.DONE and "Restarting" not in j.printed for j in (first, again, third))


def test_tensors_made_before_a_strategy_in_the_cell_are_fine(tf_pool):
    ns = {}
    run(
        """
        import tensorflow as tf
        x = tf.constant([1.0, 2.0]) * 2  # a tensor before the strategy the cell makes itself
        own = tf.distribute.MultiWorkerMirroredStrategy()
        total = float(own.reduce("SUM", own.run(lambda: tf.constant(1.0)), axis=None))
        """,
        ns, framework="tensorflow", gather=["total"],
    )
    assert ns["total"] == [2.0, 2.0]
    assert_tf_works(tf_pool)


def test_tensorflow_used_by_a_plain_cell_gets_fresh_engines(tf_pool):
    tf_pool.restart()  # engines that never ran a TensorFlow job
    run("import tensorflow as tf\nx = tf.constant(3.0) * 2", {}, framework="none")
    old = [s.engine_id for s in tf_pool.slots]
    assert_tf_works(tf_pool, expect_restart=True)
    assert not set(old) & set(tf_pool.engine_ids())


def test_a_worker_that_raises_names_its_rank_and_the_pool_recovers(tf_pool):
    with pytest.raises(DistributedError) as e:
        run(
            "import tensorflow as tf\nfrom trainorch_jupyter.runtime import rank\n"
            "class Boom(tf.keras.callbacks.Callback):\n"
            "    def on_train_batch_end(self, batch, logs=None):\n"
            "        if rank() == 1 and batch == 2:\n"
            "            raise ValueError('boom on purpose')\n"
            + FIT % ", Boom()",
            {}, framework="tensorflow", grace=2.0,
        )
    slot = tf_pool.slots[1]
    assert e.value.summary.startswith(
        f"rank 1 (engine {slot.engine_id} on {slot.host}) failed: ValueError: boom on purpose"
    ), e.value.details
    assert "raise ValueError" in e.value.details
    job = api.jobs()[-1]
    assert job.snapshot.ranks[0].state in (model.FAILED, model.CANCELLED)  # the peer was stopped
    assert_tf_works(tf_pool, expect_restart=True)


def test_a_fit_that_kills_its_engine_is_detected_and_replaced(tf_pool):
    old = tf_pool.slots[1].engine_id
    with pytest.raises(DistributedError) as e:
        run(
            "import os, tensorflow as tf\nfrom trainorch_jupyter.runtime import rank\n"
            "class Die(tf.keras.callbacks.Callback):\n"
            "    def on_train_batch_end(self, batch, logs=None):\n"
            "        if rank() == 1 and batch == 2:\n"
            "            os._exit(1)\n"
            + FIT % ", Die()",
            {}, framework="tensorflow", grace=2.0,
        )
    assert e.value.summary.startswith("rank 1 ") and "engine died" in e.value.summary
    assert "replaced dead engines of rank" in e.value.details
    assert tf_pool.slots[1].engine_id != old
    assert_tf_works(tf_pool, expect_restart=None)  # rank 0's engine was killed, or kept its old cluster


def test_more_workers_than_engines_is_refused_before_launch(tf_pool):
    jobs = len(api.jobs())
    with pytest.raises(LaunchError, match=r"^-n 3: this pool has 2 engines; use -n 1..2, or %cluster start -n 3$"):
        run("x = 1", {}, framework="tensorflow", n=3)
    assert len(api.jobs()) == jobs


def test_a_busy_engine_is_refused_before_launch(tf_pool):
    tf_pool.restart()  # no cluster to reuse: every engine is asked for its address
    busy = tf_pool.client[tf_pool.slots[1].engine_id].apply_async(__import__("time").sleep, 60)
    jobs = len(api.jobs())
    eid = tf_pool.slots[1].engine_id
    with pytest.raises(LaunchError, match=rf"^engine {eid} is busy with another task .*%cluster restart --engine {eid}$"):
        run(STRATEGY_ID, {}, framework="tensorflow")
    assert len(api.jobs()) == jobs and not busy.ready()  # nothing was launched


def test_a_port_taken_before_the_worker_starts_is_a_clear_error(tf_pool, monkeypatch):
    tf_pool.restart()
    real = launch._worker_addresses
    holder = socket.socket()
    holder.bind((tf_pool.slots[1].ip, 0))
    holder.listen()
    taken = holder.getsockname()[1]

    def with_a_taken_port(pool, slots):
        addrs = real(pool, slots)
        return addrs[:1] + [f"{slots[1].ip}:{taken}"]

    monkeypatch.setattr(launch, "_worker_addresses", with_a_taken_port)
    try:
        with pytest.raises(DistributedError) as e:
            run(STRATEGY_ID, {}, framework="tensorflow", grace=2.0)
    finally:
        holder.close()
        monkeypatch.setattr(launch, "_worker_addresses", real)
    assert e.value.summary.startswith("rank 1 ") and f"port {taken} on " in e.value.summary
    assert "already in use by another process" in e.value.summary
    assert_tf_works(tf_pool, expect_restart=None)
