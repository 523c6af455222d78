"""Engine-side TensorFlow setup: one MultiWorkerMirroredStrategy per engine process.

TensorFlow configures its collectives once per process and only before its
eager context starts (before the first tensor).  So the strategy is made here,
before the cell runs, and kept: a later cell on the same worker set gets the
same strategy.  An engine that must join a different worker set is restarted
by the kernel before launch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

from ._state import STATE
from .engine import user_namespace


def setup(spec: dict[str, Any]) -> None:
    """Make (or reuse) this rank's ``strategy`` and put it in the cell's namespace."""
    key = spec["group_key"]
    ns = user_namespace()
    if STATE.get("tf_key") == key and STATE.get("tf_strategy") is not None:
        ns["strategy"] = STATE["tf_strategy"]
        return
    rank = spec["rank"]
    if spec.get("reuse"):
        raise RuntimeError(
            f"the TensorFlow cluster of this pool was lost on rank {rank}; run the cell again"
        )
    if STATE.get("tf_configured"):  # TensorFlow keeps its first cluster for the process's life
        raise RuntimeError(
            f"TensorFlow on rank {rank} is already set up for another worker set and cannot join "
            "a new one; restart the engines with %cluster restart"
        )
    if importlib.util.find_spec("tf_keras") is None:
        raise ModuleNotFoundError(
            f"tf_keras is not installed on rank {rank}'s engine (Keras 3's fit fails under "
            'MultiWorkerMirroredStrategy): pip install "trainorch-jupyter[tensorflow]"'
        )
    _check_port(spec)
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: tf.keras is tf_keras
    # TensorFlow's C++ log lines (info, warnings, and spurious "E" lines such as tf.data's
    # "NodeDef mentions attribute ...") carry times and thread ids and fill every rank's log;
    # errors that matter arrive as Python exceptions.  A value set before the pool started wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        tf.get_logger().setLevel("WARNING")  # "Collective all_reduce tensors: ..." on every step

    threads = int(os.environ.get("TRAINORCH_THREADS", "0") or 0)
    impl = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation={"ring": impl.RING, "nccl": impl.NCCL}.get(spec["backend"], impl.AUTO),
        timeout_seconds=spec["timeout"] or None,  # 0: no timeout (each timed collective costs a thread)
    )
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(2, threads))
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as e:
        if "must be configured at program startup" in str(e) or "initialized" in str(e):
            raise RuntimeError(
                f"TensorFlow already ran on rank {rank}'s engine before %%distribute could set up its "
                "cluster (a tensor was made there earlier); restart the engines with %cluster restart"
            ) from None
        raise
    STATE["tf_key"], STATE["tf_strategy"], STATE["tf_configured"] = key, strategy, True
    ns["strategy"] = strategy
    _exit_promptly()


EXIT_GRACE = 1.0  # seconds a stopping engine gets for its own shutdown


def _exit_promptly() -> None:
    """An engine holding a TensorFlow cluster does not end on SIGTERM (``%cluster stop``):
    its shutdown hangs in TensorFlow.  Chain the engine's own handler with a hard exit
    ``EXIT_GRACE`` seconds later."""
    if STATE.get("tf_sigterm") or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        timer = threading.Timer(EXIT_GRACE, _exit_now)
        timer.daemon = True
        timer.start()
        if callable(previous):
            previous(signum, frame)
        else:
            _exit_now()

    signal.signal(signal.SIGTERM, on_term)
    STATE["tf_sigterm"] = True


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


def _check_port(spec: dict[str, Any]) -> None:
    """This rank's port must still be free: say which one is taken, on which host."""
    workers = spec.get("workers") or json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"]
    host, _, port = workers[spec["rank"]].rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            raise OSError(
                f"port {port} on {socket.gethostname()} ({host}), rank {spec['rank']}'s TensorFlow "
                "worker address, is already in use by another process; run the cell again for new ports"
            ) from None


def teardown() -> None:
    """After a failure: this engine's TensorFlow cluster cannot be trusted any more.

    Its collectives are aborted, so anything of ours still running in them stops;
    the kernel restarts the engine before the next TensorFlow job.
    """
    had = STATE.get("tf_key") is not None
    STATE["tf_key"] = STATE["tf_strategy"] = None
    if had and "tensorflow" in sys.modules:
        try:
            from tensorflow.python.eager import context
            from tensorflow.python.framework import errors

            context.context().abort_collective_ops(errors.CANCELLED, "a rank of this job failed")
        except Exception:
            pass


def to_kernel(value: Any) -> Any:
    """Make ``value`` loadable in a kernel without TensorFlow.

    A Keras model comes back as ``model.get_weights()`` (a list of numpy arrays, in
    layer order), a tensor or variable as a numpy array, a Keras ``History`` as its
    ``history`` dict; containers are converted item by item.  Anything else is
    returned as it is.
    """
    if "tensorflow" not in sys.modules:
        return value
    import tensorflow as tf

    keras_object = type(value).__module__.split(".")[0] in ("tf_keras", "keras", "tensorflow")
    if isinstance(value, tf.keras.Model) or (
        keras_object and hasattr(value, "layers") and callable(getattr(value, "get_weights", None))
    ):  # tf_keras, or a Keras 3 model built with `import keras`
        return value.get_weights()
    if keras_object and type(value).__name__ == "History" and isinstance(getattr(value, "history", None), dict):
        return dict(value.history)
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    if isinstance(value, dict):
        return type(value)((k, to_kernel(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_kernel(v) for v in value)
    return value
