"""Call engine-side code by name.

The kernel never imports :mod:`trainorch_jupyter.runtime` (it would drag engine
concerns into the kernel).  It ships :func:`call` - pickled by reference - with
the dotted name of the runtime function to run on the engine.
"""

from __future__ import annotations

import importlib
from typing import Any


def call(target: str, *args: Any, **kwargs: Any) -> Any:
    """Import ``module:function`` on the engine and call it."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)
