"""Publish this kernel's pool to the sidebar, and run what the sidebar asks of it.

``api`` calls :func:`publish` when a pool starts, attaches or restarts, and
:func:`unpublish` when it stops.  The record (``store/pools.py``) says who owns
the pool (host, pid, kernel id), where its cluster file is, and its engines and
GPUs.  A :class:`~trainorch_jupyter.store.pools.RequestWatcher` thread takes
the server's requests (stop the pool, restart an engine) and runs them through
the same ``api`` functions a notebook would call, which cancel running jobs
first through the usual cancel path; it also rewrites the record when a heal
replaced engines.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable

from .pool.engine_pool import EnginePool
from .store import pools as poolstore
from .store.db import _process_start

_LOCK = threading.Lock()
_WATCHERS: dict[str, poolstore.RequestWatcher] = {}
_LAST: dict[str, dict[str, Any]] = {}


def _kernel_id() -> str:
    try:
        from ipykernel import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:
        return ""
    return name[len("kernel-"):-len(".json")] if name.startswith("kernel-") and name.endswith(".json") else ""


def record(pool: EnginePool, state: str = "running") -> dict[str, Any]:
    """The pool's record: plain data, no handles."""
    cluster = pool.cluster
    engines = []
    for s in pool.slots:
        gpu = s.gpu
        engines.append({
            "slot": s.slot, "engine": s.engine_id, "host": s.host, "pid": s.pid, "device": s.device,
            "threads": s.threads,
            "gpu": None if gpu is None else {"index": gpu.index, "uuid": gpu.uuid, "name": gpu.name,
                                             "memory_mb": gpu.memory_mb, "token": gpu.token},
        })
    pid = os.getpid()
    return {
        "id": pool.id,
        "state": state,
        "owned": pool.owned,
        "launcher": pool.launcher,
        "owner": {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "kernel": _kernel_id()},
        "cluster_file": getattr(cluster, "cluster_file", None) if cluster is not None else None,
        "cluster_id": getattr(cluster, "cluster_id", None) if cluster is not None else None,
        "controller_ip": pool.controller_ip,
        "generation": pool.generation,
        "engines": engines,
        "gpus": [e["gpu"] for e in engines if e["gpu"]],
    }


def _write(pool: EnginePool, state: str, started: float | None = None) -> None:
    rec = record(pool, state)
    with _LOCK:
        prev = _LAST.get(pool.id)
        rec["started"] = started or (prev or {}).get("started") or time.time()
        if prev == rec:
            return
        _LAST[pool.id] = rec
    poolstore.write_record(rec)


def publish(pool: EnginePool, stop: Callable[[], Any], restart: Callable[[int | None], Any]) -> None:
    """Write the pool's record and make sure its request watcher runs.

    ``stop`` and ``restart(engine_id or None)`` are the api's own functions.
    Never raises: the sidebar is bookkeeping, the pool works without it.
    """
    try:
        _write(pool, "running")
        with _LOCK:
            if pool.id in _WATCHERS:
                return

            def do_stop(args: dict[str, Any]) -> dict[str, Any]:
                stop()
                return {"stopped": pool.id}

            def do_restart(args: dict[str, Any]) -> dict[str, Any]:
                engine = args.get("engine")
                if engine is not None:
                    engine = int(engine)
                restart(engine)
                return {"restarted": "all" if engine is None else engine}

            def refresh() -> None:
                if not pool.closed:
                    _write(pool, "running")

            _WATCHERS[pool.id] = poolstore.RequestWatcher(
                pool.id, {"stop": do_stop, "restart": do_restart}, refresh=refresh
            )
    except Exception:
        pass


def unpublish(pool: EnginePool) -> None:
    """The pool stopped: mark its record and stop its watcher."""
    with _LOCK:
        watcher = _WATCHERS.pop(pool.id, None)
    if watcher is not None:
        watcher.stop()
    try:
        _write(pool, "stopped")
    except Exception:
        pass
    with _LOCK:
        _LAST.pop(pool.id, None)
