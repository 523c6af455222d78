"""GPU memory and utilisation for the sidebar, read where the server runs.

NVML (``pynvml``) when it is installed, else ``nvidia-smi``; neither creates a
CUDA context.  Without either there are no figures, which is not an error.  A
result is cached for a couple of seconds: every open sidebar polls, and
``nvidia-smi`` takes tens of milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Any

QUERY = ["--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"]
CACHE_S = 2.0

_cache: tuple[float, str, list[dict[str, Any]]] | None = None
_lock = threading.Lock()


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse(text: str) -> list[dict[str, Any]]:
    """Parse the CSV ``nvidia-smi`` prints for :data:`QUERY`."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        out.append({
            "index": int(parts[0]), "uuid": parts[1], "name": parts[2],
            "memory_total_mb": _num(parts[3]), "memory_used_mb": _num(parts[4]),
            "utilization_pct": _num(parts[5]),
        })
    return out


def _nvml() -> list[dict[str, Any]] | None:
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                util = None
            uuid, name = pynvml.nvmlDeviceGetUUID(h), pynvml.nvmlDeviceGetName(h)
            out.append({
                "index": i, "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_total_mb": mem.total / 2**20, "memory_used_mb": mem.used / 2**20,
                "utilization_pct": util,
            })
        return out
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _smi(timeout: float = 5.0) -> tuple[str, list[dict[str, Any]]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return "none", []
    try:
        out = subprocess.run([exe, *QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "none", []
    return ("nvidia-smi", parse(out.stdout)) if out.returncode == 0 else ("none", [])


def query(max_age: float = CACHE_S) -> tuple[str, list[dict[str, Any]]]:
    """(source: 'nvml', 'nvidia-smi' or 'none'; one dict per GPU on this host)."""
    global _cache
    with _lock:
        if _cache is not None and time.monotonic() - _cache[0] < max_age:
            return _cache[1], _cache[2]
        gpus = _nvml()
        source, gpus = ("nvml", gpus) if gpus is not None else _smi()
        _cache = (time.monotonic(), source, gpus)
        return source, gpus
