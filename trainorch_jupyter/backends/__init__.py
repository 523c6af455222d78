"""Framework backends behind one small protocol.

A backend module provides:

- ``NAME``: the framework name used by ``--framework``;
- ``MODULES``: top-level imports that mean this framework (for detection);
- ``is_available()``: whether the framework is installed here (no import);
- ``install_hint()``: the pip command that installs it;
- ``rank_env(plan)``: the environment of one rank (a pure function);
- ``SETUP`` / ``TEARDOWN``: names of engine-side runtime functions.

Optional: ``default_backend(devices)``, ``BACKENDS`` and ``DEFAULT_TIMEOUT`` (the backend
forms a group: torch, tensorflow); ``RENDEZVOUS = "every rank"`` (``rank_env`` also gets
``workers``, every rank's ``host:port`` on its own host) instead of rank 0's address only;
``ONCE_PER_PROCESS`` (modules that, once imported on an engine, mean it must be restarted to
join a new group); ``problem()`` (a one-line reason the framework cannot run here, or None);
``PREPARE`` (engine-side conversion of pulled values).
"""

from __future__ import annotations

import importlib
from types import ModuleType

FRAMEWORKS = ("torch", "tensorflow", "sklearn")
_ALIASES = {"pytorch": "torch", "tf": "tensorflow", "keras": "tensorflow", "scikit-learn": "sklearn"}


class UnknownFramework(ValueError):
    pass


def canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FRAMEWORKS:
        raise UnknownFramework(
            f"unknown framework {name!r}: use one of {', '.join(FRAMEWORKS)}, or none"
        )
    return key


def get(name: str) -> ModuleType:
    """The backend module for ``name``."""
    key = canonical(name)
    try:
        return importlib.import_module(f"{__name__}.{key}_backend")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{key}_backend":
            raise UnknownFramework(
                f"framework {key!r} is not supported by %%distribute yet; "
                "use --framework none to run the cell as plain Python on every engine"
            ) from None
        raise
