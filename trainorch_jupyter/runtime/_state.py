"""Engine-side state of the current rank (one engine process = one rank)."""

from __future__ import annotations

from typing import Any

STATE: dict[str, Any] = {
    "rank": 0,
    "world_size": 1,
    "local_rank": 0,
    "local_world_size": 1,
    "job_id": None,
    "framework": None,
    "group_key": None,
    "pinned": None,
}
