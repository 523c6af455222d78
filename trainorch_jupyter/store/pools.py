"""Pool records and pool requests: how the server sees and asks a kernel's pool.

The server does not own the pool: the kernel that started it does.  So the
kernel keeps a small JSON record of its pool under ``TRAINORCH_HOME/pools/<id>/``
(owning kernel, cluster file, engines, GPUs), rewritten on start, stop,
restart and heal; and the server asks for an action by dropping a request file
into ``requests/`` there, which the owning kernel's :class:`RequestWatcher`
picks up within a quarter of a second (like a job's stop file).  The answer
lands in ``responses/<request id>.json``.

Files are written whole (temporary file, then ``os.replace``), so a reader
never sees half a record.  Nothing here imports the pool: the kernel side hands
in plain dicts and callables.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from typing import Any, Callable

from . import paths

POOL_ID = re.compile(r"^[0-9a-f]{8}$")
REQUEST_ID = re.compile(r"^[0-9]{13}-[0-9a-f]{12}$")
ACTIONS = ("stop", "restart")
KEEP_STOPPED = 20  # records of stopped pools kept for the sidebar's history


def pools_dir() -> str:
    path = os.path.join(paths.home(), "pools")
    os.makedirs(path, exist_ok=True)
    return path


def pool_dir(pool_id: str, create: bool = True) -> str:
    if not POOL_ID.match(pool_id or ""):
        raise ValueError(f"not a pool id: {pool_id!r}")
    path = os.path.join(pools_dir(), pool_id)
    if create:
        os.makedirs(os.path.join(path, "requests"), exist_ok=True)
        os.makedirs(os.path.join(path, "responses"), exist_ok=True)
    return path


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, default=str)
    os.replace(tmp, path)


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- records (written by the owning kernel) --------------------------------------------------
def write_record(record: dict[str, Any]) -> str:
    """Write a pool's record (``record["id"]`` names it); returns its path."""
    record = dict(record, updated=time.time())
    path = os.path.join(pool_dir(record["id"]), "pool.json")
    _write_json(path, record)
    if record.get("state") == "stopped":
        _prune_stopped()
    return path


def read_record(pool_id: str) -> dict[str, Any] | None:
    if not POOL_ID.match(pool_id or ""):
        return None
    return _read_json(os.path.join(pools_dir(), pool_id, "pool.json"))


def read_records() -> list[dict[str, Any]]:
    """Every pool record, newest first."""
    out = []
    for name in os.listdir(pools_dir()):
        rec = read_record(name) if POOL_ID.match(name) else None
        if rec is not None:
            out.append(rec)
    return sorted(out, key=lambda r: r.get("started") or 0, reverse=True)


def _finished(rec: dict[str, Any]) -> bool:
    """Stopped, or its kernel is gone (checked on this host only)."""
    if rec.get("state") == "stopped":
        return True
    owner = rec.get("owner") or {}
    if owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return False
    from .db import _process_start

    start = _process_start(int(owner["pid"]))
    return start is None or (owner.get("start") is not None and abs(start - owner["start"]) >= 1)


def _prune_stopped() -> None:
    stopped = [r for r in read_records() if _finished(r)]
    for rec in stopped[KEEP_STOPPED:]:
        d = pool_dir(rec["id"], create=False)
        for sub in ("requests", "responses"):
            for name in os.listdir(os.path.join(d, sub)) if os.path.isdir(os.path.join(d, sub)) else []:
                _remove(os.path.join(d, sub, name))
            try:
                os.rmdir(os.path.join(d, sub))
            except OSError:
                pass
        _remove(os.path.join(d, "pool.json"))
        try:
            os.rmdir(d)
        except OSError:
            pass


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# -- requests (written by the server, taken by the owning kernel) ------------------------------
def request(pool_id: str, action: str, args: dict[str, Any] | None = None, user: str = "") -> str:
    """Ask the kernel owning ``pool_id`` to ``stop`` its pool or ``restart`` engines; returns the request id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown pool action {action!r}: use one of {', '.join(ACTIONS)}")
    rid = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}"
    req = {"id": rid, "pool": pool_id, "action": action, "args": args or {}, "user": user, "time": time.time()}
    _write_json(os.path.join(pool_dir(pool_id), "requests", f"{rid}.json"), req)
    return rid


def take_requests(pool_id: str) -> list[dict[str, Any]]:
    """Pending requests, oldest first; each is removed as it is taken (so it runs once)."""
    d = os.path.join(pool_dir(pool_id, create=False), "requests")
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = os.path.join(d, name)
        req = _read_json(path)
        try:
            os.remove(path)
        except FileNotFoundError:
            continue  # someone else took it
        if req is not None and REQUEST_ID.match(str(req.get("id", ""))):
            out.append(req)
    return out


def write_response(pool_id: str, request_id: str, result: dict[str, Any]) -> None:
    if REQUEST_ID.match(request_id or ""):
        _write_json(os.path.join(pool_dir(pool_id), "responses", f"{request_id}.json"),
                    dict(result, id=request_id, time=time.time()))


def read_response(pool_id: str, request_id: str) -> dict[str, Any] | None:
    if not (POOL_ID.match(pool_id or "") and REQUEST_ID.match(request_id or "")):
        return None
    return _read_json(os.path.join(pools_dir(), pool_id, "responses", f"{request_id}.json"))


class RequestWatcher:
    """A daemon thread in the owning kernel: runs the server's requests for one pool.

    ``handlers`` maps an action to a callable taking the request's args and
    returning a dict (the response); an exception becomes ``{"ok": False,
    "error": ...}``.  ``refresh`` (optional) is called every ``refresh_every``
    seconds to keep the record current (engines replaced by a heal).
    """

    def __init__(self, pool_id: str, handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]],
                 interval: float = 0.25, refresh: Callable[[], None] | None = None,
                 refresh_every: float = 2.0) -> None:
        self.pool_id = pool_id
        self.handlers = handlers
        self.interval = interval
        self.refresh = refresh
        self.refresh_every = refresh_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"trainorch-pool-{pool_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            for req in take_requests(self.pool_id):
                self._run(req)
                if self._stop.is_set():
                    return
            if self.refresh is not None and time.monotonic() - last > self.refresh_every:
                last = time.monotonic()
                try:
                    self.refresh()
                except Exception:
                    pass  # bookkeeping never breaks the pool

    def _run(self, req: dict[str, Any]) -> None:
        fn = self.handlers.get(req.get("action", ""))
        try:
            if fn is None:
                raise ValueError(f"unknown pool action {req.get('action')!r}")
            result = {"ok": True, **(fn(req.get("args") or {}) or {})}
        except Exception as e:
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            write_response(self.pool_id, req["id"], result)
        except OSError:
            pass

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(5)
