"""``%validate``: gate a model on its metrics, its bounds and a stored baseline.

Independent of any UI: imports jobs, pool, store and model only.
"""

from __future__ import annotations

from .errors import PROBLEMS, CheckError, MetricError, ModelError, ValidationFailed

__all__ = ["ValidationFailed", "ModelError", "MetricError", "CheckError", "PROBLEMS"]
