"""Framework benchmarks: the same training through ``%%distribute`` and started by hand.

TensorFlow (``bench_tensorflow``): Keras ``fit`` of a small MLP on sklearn's digits
under ``MultiWorkerMirroredStrategy`` on 2 CPU workers, through ``api.distribute``
(the strategy that ``%%distribute`` sets up, ``KerasReport`` streaming every batch)
against the same script started as two processes by hand with ``TF_CONFIG``
(``KerasReport`` does nothing there).  Steps/s are measured inside ``fit`` on rank 0,
after a warm-up, so TensorFlow's import and tracing are not counted.  Runs alternate.

    python bench/frameworks.py --only tensorflow [--tf-repeats N] [--json PATH]

This is a benchmark, not a test: it prints medians, ratios and goals, and exits
non-zero only when a measurement could not be taken.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.launch import child_env, median, say  # noqa: E402

TF_GOAL = 0.95

# The training both ways; ``strategy`` is given (by %%distribute, or by the by-hand preamble).
TF_BODY = """\
import time
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from trainorch_jupyter.runtime import KerasReport

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype("float32")
WARM, EPOCHS = 20, {epochs}


class Clock(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen, self.t0 = 0, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen == WARM:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1

    def on_train_end(self, logs=None):
        self.t1 = time.perf_counter()


tf.keras.utils.set_random_seed(0)
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Input((64,)), tf.keras.layers.Dense(128, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    model.compile(tf.keras.optimizers.Adam(0.003),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
clock = Clock()
model.fit(X, y, batch_size=64, epochs=EPOCHS, verbose=0, callbacks=[clock, KerasReport()])
bench_result = {{"steps": clock.seen - WARM, "seconds": clock.t1 - clock.t0,
                 "steps_per_s": (clock.seen - WARM) / (clock.t1 - clock.t0)}}
"""

# By hand: what a user writes to start the same script as two processes.
TF_BY_HAND = """\
import json, os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads(max(2, {threads}))
impl = tf.distribute.experimental.CommunicationImplementation.RING
strategy = tf.distribute.MultiWorkerMirroredStrategy(
    communication_options=tf.distribute.experimental.CommunicationOptions(implementation=impl))
{body}
if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
    print("BENCH_RESULT " + json.dumps(bench_result), flush=True)
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _by_hand(path: str, threads: int, timeout: float = 600) -> dict[str, Any]:
    """Start the script twice with TF_CONFIG (worker 0 and 1) and read worker 0's result."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = child_env(threads=threads)
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["CUDA_VISIBLE_DEVICES"] = ""
        procs.append(subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env, start_new_session=True))
    outs = []
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.communicate()
    lines = [line for line in outs[0].splitlines() if line.startswith("BENCH_RESULT ")]
    if any(p.returncode for p in procs) or not lines:
        raise RuntimeError(f"the by-hand workers failed; worker 0's output tail:\n{outs[0][-2000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def bench_tensorflow(repeats: int = 5, epochs: int = 12) -> dict[str, Any]:
    """Steps/s of Keras fit through ``api.distribute`` and by hand, alternated; returns the figures."""
    from trainorch_jupyter import api
    from trainorch_jupyter.pool.env import threads_per_engine

    body = TF_BODY.format(epochs=epochs)
    threads = threads_per_engine(os.cpu_count() or 1, 2)  # what the pool gives each engine
    work = tempfile.mkdtemp(prefix="trainorch-bench-tf-")
    path = os.path.join(work, "train_tf.py")
    with open(path, "w") as f:
        f.write(TF_BY_HAND.format(body=body, threads=threads))
    say(f"TensorFlow: Keras fit, 2 workers, {epochs} epochs of digits, {repeats} runs each, alternated")
    ours: list[dict[str, Any]] = []
    hand: list[dict[str, Any]] = []
    api.stop_pool()
    api.start_pool(2)
    try:
        def distribute() -> None:
            ns: dict[str, Any] = {}
            job = api.distribute(body, namespace=ns, framework="tensorflow", pull=["bench_result"], show=False)
            r = dict(ns["bench_result"])
            r["reports_rank0"], r["lost_rank0"] = job.reports_received(0), job.lost_reports[0]
            ours.append(r)

        distribute()  # the engines import TensorFlow and form the cluster: not measured
        ours.clear()
        for i in range(repeats):
            for fn in ((distribute, None) if i % 2 == 0 else (None, distribute)):
                if fn is None:
                    hand.append(_by_hand(path, threads))
                else:
                    fn()
    finally:
        api.stop_pool()
    res = {
        "tf_distribute_steps_per_s": [r["steps_per_s"] for r in ours],
        "tf_by_hand_steps_per_s": [r["steps_per_s"] for r in hand],
        "tf_reports_rank0": [r["reports_rank0"] for r in ours],
        "tf_lost_reports_rank0": [r["lost_rank0"] for r in ours],
        "tf_steps_measured": ours[0]["steps"] if ours else None,
    }
    a, b = median(res["tf_distribute_steps_per_s"]), median(res["tf_by_hand_steps_per_s"])
    res["tf_ratio"] = a / b if b else float("nan")
    rows = [
        ("measurement", "median", "comparison (median)", "ratio", "goal", "met"),
        ("TF steps/s, %%distribute", f"{a:.2f} steps/s", f"2 processes with TF_CONFIG {b:.2f} steps/s",
         f"{res['tf_ratio']:.3f}", f"ours/by hand >= {TF_GOAL}", "yes" if res["tf_ratio"] >= TF_GOAL else "no"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    say("  runs, %%distribute: " + ", ".join(f"{x:.2f}" for x in res["tf_distribute_steps_per_s"]))
    say("  runs, by hand:      " + ", ".join(f"{x:.2f}" for x in res["tf_by_hand_steps_per_s"]))
    say("  reports received on rank 0: " + ", ".join(map(str, res["tf_reports_rank0"]))
        + f" (lost {sum(res['tf_lost_reports_rank0'])})")
    say("\n" + "\n".join(lines))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-repeats", type=int, default=5)
    parser.add_argument("--tf-epochs", type=int, default=12)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    try:
        results.update(bench_tensorflow(args.tf_repeats, args.tf_epochs))
    except Exception as e:
        say("TensorFlow benchmark failed:\n" + textwrap.indent(f"{type(e).__name__}: {e}", "  "))
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
