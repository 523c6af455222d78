"""TensorFlow: ``tf.distribute.MultiWorkerMirroredStrategy`` over every rank.

Every rank is a TF worker: ``TF_CONFIG`` lists all of them (a free port on each
engine's own host, fetched from the engines), task index = rank.  Keras goes
through the legacy ``tf_keras`` package (``TF_USE_LEGACY_KERAS=1``, set before
TensorFlow loads): Keras 3's ``fit`` fails under this strategy on TF 2.21.

Kernel side only: nothing here imports tensorflow.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata

NAME = "tensorflow"
MODULES = ("tensorflow", "keras", "tf_keras")
SETUP = "trainorch_jupyter.runtime.tf_dist:setup"
TEARDOWN = "trainorch_jupyter.runtime.tf_dist:teardown"
PREPARE = "trainorch_jupyter.runtime.tf_dist:to_kernel"
BACKENDS = ("ring", "nccl", "auto")  # tf.distribute.experimental.CommunicationImplementation
# No collective timeout unless --timeout asks for one: TensorFlow runs every collective that has
# a timeout on a thread of its own, which cost about 40% of the steps/s of a small model here.
DEFAULT_TIMEOUT = 0.0
# Every rank is reachable at an address of its own (TF_CONFIG lists all workers).
RENDEZVOUS = "every rank"
# TensorFlow configures its cluster once per process: an engine that imported it
# cannot join a different worker set, so such engines are restarted first.
ONCE_PER_PROCESS = ("tensorflow",)


def is_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def install_hint() -> str:
    return 'pip install "trainorch-jupyter[tensorflow]"'


def problem() -> str | None:
    """What keeps the default (tf_keras) path from working here, as one line; None when nothing."""
    if not is_available():
        return f"tensorflow is not installed: {install_hint()}"
    if importlib.util.find_spec("tf_keras") is None:
        return (
            "tf_keras is not installed (Keras 3's fit does not work under MultiWorkerMirroredStrategy, "
            f"so %%distribute uses the legacy tf_keras): pip install \"{keras_requirement()}\""
        )
    return None


def keras_requirement() -> str:
    """The tf_keras release that matches the installed TensorFlow (same minor version)."""
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            major, minor = metadata.version(dist).split(".")[:2]
            return f"tf_keras=={major}.{minor}.*"
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return "tf_keras"


def default_backend(devices: list[str]) -> str:
    """NCCL all-reduce when every rank has a GPU, else gRPC ring."""
    return "nccl" if devices and all(d.startswith("cuda") for d in devices) else "ring"


def tf_config(workers: list[str], index: int) -> str:
    """``TF_CONFIG`` for worker ``index`` of ``workers`` (``host:port`` strings)."""
    if not 0 <= index < len(workers):
        raise ValueError(f"task index {index} is outside the {len(workers)} workers")
    return json.dumps(
        {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}},
        sort_keys=True,
    )


def rank_env(
    *,
    rank: int,
    world_size: int,
    workers: list[str],
    local_rank: int = 0,
    **_: object,
) -> dict[str, str]:
    """The environment of one rank (a pure function): TF_CONFIG, legacy Keras, and the
    rank variables every backend sets.  GPU pinning is already in the engine's env."""
    if len(workers) != world_size:
        raise ValueError(f"{len(workers)} worker addresses for {world_size} ranks")
    return {
        "TF_CONFIG": tf_config(workers, rank),
        "TF_USE_LEGACY_KERAS": "1",
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(local_rank),
    }
