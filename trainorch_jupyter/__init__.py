"""trainorch-jupyter: training orchestration embedded in Jupyter.

    %load_ext trainorch_jupyter

Loading the extension registers ``%cluster`` and ``%%distribute``; it starts
nothing, claims no GPU and imports no framework.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "trainorch_jupyter"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # the sidebar, built from labextension/ (`jupyter labextension develop .` links it)
    return [{"src": "labextension", "dest": "trainorch-jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .server import load

    load(serverapp)


def load_ipython_extension(ipython: Any) -> None:
    from .magics import TrainorchMagics

    ipython.register_magics(TrainorchMagics)


def unload_ipython_extension(ipython: Any) -> None:
    from . import api

    api.stop_pool()
