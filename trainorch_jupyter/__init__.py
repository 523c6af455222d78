"""trainorch-jupyter: training orchestration embedded in Jupyter.

    %load_ext trainorch_jupyter

Loading the extension registers ``%cluster`` and ``%%distribute``; it starts
nothing, claims no GPU and imports no framework.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from .magics import TrainorchMagics

    ipython.register_magics(TrainorchMagics)


def unload_ipython_extension(ipython: Any) -> None:
    from . import api

    api.stop_pool()
