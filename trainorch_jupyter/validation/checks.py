"""Gates on a validation: bounds (``--min``/``--max``) and a stored baseline.

Each check becomes one ``bounds`` entry of the VALIDATION event:
``{"metric", "op" (">=", "<=" or "baseline"), "bound", "value", "passed"}``; a
baseline check also carries ``"baseline"`` (the stored value), ``"tolerance"``
and ``"delta"`` (value - baseline).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from .errors import CheckError, ValidationFailed, describe_failure  # noqa: F401
from .metrics import higher_is_better


def bound_pairs(v: Any, op: str) -> list[tuple[str, float]]:
    """Bounds as the api takes them: {metric: bound}, [(metric, bound)] or ["metric=bound", ...]."""
    items = list(v.items()) if isinstance(v, dict) else list(v or [])
    if items and all(isinstance(i, str) for i in items):
        return parse_bounds(items, op)
    return [(str(k).strip(), float(b)) for k, b in items]


def parse_bounds(items: Iterable[str] | None, op: str) -> list[tuple[str, float]]:
    """``["accuracy=0.9", "f1=0.85"]`` -> ``[("accuracy", 0.9), ("f1", 0.85)]``."""
    flag = "--min" if op == ">=" else "--max"
    out = []
    for item in items or []:
        for part in str(item).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise CheckError(f"{flag} {part}: write metric=value, e.g. {flag} accuracy=0.9")
            try:
                bound = float(value)
            except ValueError:
                raise CheckError(f"{flag} {part}: {value!r} is not a number") from None
            if not math.isfinite(bound):
                raise CheckError(f"{flag} {part}: the bound must be a finite number")
            out.append((name.strip(), bound))
    return out


def bound_checks(values: dict[str, float], bounds: Sequence[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """One entry per (metric, op, bound); a NaN value fails every bound."""
    out = []
    for metric, op, bound in bounds:
        v = values[metric]
        ok = (v >= bound) if op == ">=" else (v <= bound)
        out.append({"metric": metric, "op": op, "bound": bound, "value": v, "passed": bool(ok and v == v)})
    return out


def baseline_checks(values: dict[str, float], baseline: dict[str, Any], tolerance: float,
                    direction: Callable[[str], bool] = higher_is_better,
                    only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Compare with a stored validation: a metric may be worse by at most ``tolerance``.

    Compared are the metrics both have (``only``: just those), in this run's order.
    """
    base = {k: v for k, v in (baseline.get("metrics") or {}).items() if isinstance(v, (int, float))}
    names = [m for m in values if m in base and (only is None or m in only) and not m.endswith("_std")]
    if not names:
        raise CheckError(
            f"baseline {baseline.get('name') or baseline.get('job_id')} has none of the metrics "
            f"{', '.join(values)}; validate with the same --metrics"
        )
    out = []
    for m in names:
        v, b = values[m], float(base[m])
        higher = direction(m)
        limit = b - tolerance if higher else b + tolerance
        ok = v >= limit if higher else v <= limit
        out.append({
            "metric": m, "op": "baseline", "bound": limit, "value": v, "passed": bool(ok and v == v),
            "baseline": b, "tolerance": tolerance, "delta": v - b, "higher_is_better": higher,
        })
    return out
