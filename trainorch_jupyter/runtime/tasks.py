"""Run one joblib batch on this engine, for a ``--framework sklearn`` job."""

from __future__ import annotations

import traceback
from typing import Any

import cloudpickle


def run_batch(batch: Any) -> tuple:
    """Call a joblib batch; return ``("ok", results)``, ``("interrupted",)`` or
    ``("error", pickled exception or None, traceback text, one-line summary)``.

    Errors come back as values so the kernel can raise the task's own exception
    (a ValueError stays a ValueError), with this engine's traceback as its cause.
    """
    try:
        return ("ok", batch())
    except KeyboardInterrupt:
        return ("interrupted",)
    except BaseException as e:
        text = traceback.format_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        summary = f"{type(e).__name__}: {first}" if first else type(e).__name__
        try:
            blob = cloudpickle.dumps(e)
        except Exception:
            blob = None
        return ("error", blob, text, summary)
