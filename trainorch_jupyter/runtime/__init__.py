"""Helpers for code that runs on the engines.

    from trainorch_jupyter.runtime import rank, world_size, local_rank, device, report

``rank()``, ``world_size()`` and ``local_rank()`` describe this engine's place in
the current ``%%distribute`` job; ``device`` is the torch device for this rank
(its pinned GPU, or the CPU); ``report(step=, total=, **metrics)`` streams
progress and metrics to the notebook, in order and without loss.
``KerasReport`` is a Keras callback that reports ``fit``'s progress and metrics;
``strategy`` (in a TensorFlow cell's namespace) is the job's
``MultiWorkerMirroredStrategy``.

This package runs on engines and imports nothing from the kernel side.
"""

from __future__ import annotations

from typing import Any

from ._state import STATE
from .report import report

__all__ = [
    "rank", "world_size", "local_rank", "local_world_size", "device", "report", "is_main", "KerasReport",
]


def rank() -> int:
    """Global rank of this engine in the running job."""
    return int(STATE["rank"])


def world_size() -> int:
    """Number of ranks in the running job."""
    return int(STATE["world_size"])


def local_rank() -> int:
    """Rank of this engine among the job's engines on the same host."""
    return int(STATE["local_rank"])


def local_world_size() -> int:
    return int(STATE["local_world_size"])


def is_main() -> bool:
    """True on rank 0."""
    return rank() == 0


def get_device() -> Any:
    """The torch device of this rank: its pinned GPU (``cuda:0``) or the CPU."""
    import os

    import torch

    if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def __getattr__(name: str) -> Any:
    # ``device`` is computed on access so that importing this package never
    # imports torch, and ``from trainorch_jupyter.runtime import device`` works.
    if name == "device":
        return get_device()
    if name == "KerasReport":  # imports TensorFlow: only when asked for
        from .keras_report import KerasReport

        return KerasReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
