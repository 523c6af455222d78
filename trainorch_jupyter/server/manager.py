"""What the server extension does, without tornado (tested on its own).

It never imports torch, TensorFlow or Optuna, and never touches a file outside
``TRAINORCH_HOME``.  It reads the run store through its query API, the per-rank
log files, and the pool records kernels publish (``store/pools.py``).  Actions
are requests the owning kernel carries out: stopping a job leaves a stop file
in the job's directory, which the job's driver picks up within a tenth of a
second and cancels through the same path as an interrupt or ``job.cancel()``;
stopping a pool or restarting an engine leaves a request its kernel's watcher
runs through ``api.stop_pool`` / ``api.restart_pool``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from typing import Any

from ..model import FINAL_STATES, RUNNING
from ..store import paths
from ..store import pools as poolstore
from ..store.db import RunStore, _process_start
from ..store.location import database_path
from . import gpustats

JOB_ID = re.compile(r"^[0-9a-f]{6,32}$")
LOG_LIMIT = 64 * 1024          # bytes a log page holds by default
LOG_LIMIT_MAX = 1024 * 1024
METRIC_POINTS = 2000           # per rank, the latest
LIST_MAX = 500


class NotFound(LookupError):
    pass


class BadRequest(ValueError):
    pass


def _int(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {n}")
    return n


def _check_job_id(job_id: str) -> None:
    if not JOB_ID.match(job_id or ""):
        raise BadRequest(f"not a job id: {job_id!r}")


def _inside(root: str, *parts: str) -> str:
    """``root/parts...`` resolved (symlinks too); BadRequest if it leaves ``root``."""
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, *parts))
    if not path.startswith(root + os.sep):
        raise BadRequest("path outside TRAINORCH_HOME")
    return path


def _utf8_boundary(data: bytes) -> int:
    """The length of ``data`` without a trailing incomplete UTF-8 character."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        if b < 0x80:
            return n
        need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        return n if back >= need else n - back
    return n


class TrainorchManager:
    def __init__(self) -> None:
        self._store: RunStore | None = None
        self.host = socket.gethostname()

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(database_path()[0])
        return self._store

    def _job_dir(self, job_id: str) -> str:
        _check_job_id(job_id)
        path = _inside(os.path.join(paths.home(), "jobs"), job_id)
        if not os.path.isdir(path):
            raise NotFound(f"no job {job_id}")
        return path

    # -- jobs ------------------------------------------------------------------------------------
    def jobs(self, limit: Any = 50, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.store.jobs(_int(limit, "limit", 50, 1, LIST_MAX), kind or None)
        for j in rows:
            j.pop("source", None)  # the list stays small; the detail has it
            if j["state"] in FINAL_STATES:
                continue
            detail = self.store.job(j["id"])  # running jobs only: a few
            lead = detail["ranks"][0] if detail and detail["ranks"] else {}
            j["step"], j["total"] = lead.get("step"), lead.get("total")
        return rows

    def job(self, job_id: str) -> dict[str, Any]:
        """A job as the panel shows it: fields, ranks (step, total, metrics), study/trials or result."""
        _check_job_id(job_id)
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        ranks = job["ranks"]
        lead = ranks[0] if ranks else {}
        job["step"], job["total"] = lead.get("step"), lead.get("total")
        end = job.get("ended") or (time.time() if job["state"] == RUNNING else None)
        job["elapsed"] = end - job["started"] if end and job.get("started") else None
        job["study"] = next((s for s in self.store.studies(LIST_MAX) if s["job_id"] == job["id"]), None)
        job["trials"] = self.store.trials(job["id"]) if job["study"] else []
        job["result"] = next((v for v in self.store.validations(LIST_MAX) if v["job_id"] == job["id"]), None)
        job["final"] = job["state"] in FINAL_STATES
        return job

    def job_log(self, job_id: str, rank: Any = 0, offset: Any = None, limit: Any = None) -> dict[str, Any]:
        """A page of ``jobs/<id>/rank-<k>.log``: ``limit`` bytes from ``offset``.

        Without ``offset``, the last ``limit`` bytes (starting at a line).  The
        answer's ``next_offset`` is where to ask next to follow the log.
        """
        rank_n = _int(rank, "rank", 0, 0, 100_000)
        limit_n = _int(limit, "limit", LOG_LIMIT, 1, LOG_LIMIT_MAX)
        tail = offset is None or offset == ""
        offset_n = 0 if tail else _int(offset, "offset", 0, 0, 2**62)
        path = _inside(self._job_dir(job_id), f"rank-{rank_n}.log")
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = max(0, size - limit_n) if tail else min(offset_n, size)
                f.seek(start)
                data = f.read(limit_n)
        except FileNotFoundError:
            size, start, data = 0, 0, b""  # the rank printed nothing (yet)
        if tail and start > 0:
            cut = data.find(b"\n")
            if 0 <= cut < len(data) - 1:
                start, data = start + cut + 1, data[cut + 1:]
        data = data[:_utf8_boundary(data)]  # never split a character: the next page has it
        return {
            "job": job_id, "rank": rank_n, "offset": start, "next_offset": start + len(data), "size": size,
            "text": data.decode("utf-8", errors="replace"), "eof": start + len(data) >= size,
        }

    def job_metrics(self, job_id: str, after: Any = None) -> dict[str, Any]:
        """Each rank's reported metrics, in order (``after``: only seq numbers above it)."""
        _check_job_id(job_id)
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        after_n = _int(after, "after", -1, -1, 2**62)
        series: dict[int, list[dict[str, Any]]] = {}
        for m in self.store.metrics(job["id"]):
            if m["seq"] > after_n:
                series.setdefault(m["rank"], []).append(
                    {"seq": m["seq"], "t": m["t"], "step": m["step"], "values": m["values"]})
        return {
            "job": job["id"],
            "ranks": [{"rank": r, "points": pts[-METRIC_POINTS:]} for r, pts in sorted(series.items())],
        }

    def request_stop(self, job_id: str, user: str = "") -> dict[str, Any]:
        path = os.path.join(self._job_dir(job_id), "stop")
        with open(path, "w") as f:
            json.dump({"time": time.time(), "user": user}, f)
        return {"job": job_id, "stop_requested": True}

    # -- studies and validations -------------------------------------------------------------------
    def studies(self, limit: Any = 50) -> list[dict[str, Any]]:
        return self.store.studies(_int(limit, "limit", 50, 1, LIST_MAX))

    def study(self, job_id: str) -> dict[str, Any]:
        _check_job_id(job_id)
        found = [s for s in self.store.studies(LIST_MAX) if s["job_id"].startswith(job_id)]
        if len(found) != 1:
            raise NotFound(f"no study run {job_id}")
        return dict(found[0], trials=self.store.trials(found[0]["job_id"]))

    def validations(self, limit: Any = 50) -> list[dict[str, Any]]:
        return self.store.validations(_int(limit, "limit", 50, 1, LIST_MAX))

    def validation(self, key: str) -> dict[str, Any]:
        if not key or len(key) > 200 or "/" in key:
            raise BadRequest(f"not a validation name or job id: {key!r}")
        found = self.store.validation(key)
        if found is None:
            raise NotFound(f"no validation {key}")
        return found

    # -- pools ---------------------------------------------------------------------------------------
    def _owner_alive(self, owner: dict[str, Any]) -> bool | None:
        """True/False for a kernel on this host; None when it runs elsewhere (we cannot tell)."""
        if owner.get("host") != self.host or not owner.get("pid"):
            return None
        start = _process_start(int(owner["pid"]))
        return start is not None and (owner.get("start") is None or abs(start - owner["start"]) < 1)

    def pools(self) -> dict[str, Any]:
        """Every published pool with its engines' state, and this host's GPU figures."""
        source, gpus = gpustats.query()
        by_uuid = {g["uuid"]: g for g in gpus}
        busy: dict[int, str] = {}
        running = [j for j in self.store.jobs(LIST_MAX) if j["state"] in ("pending", "running")]
        out = []
        for rec in poolstore.read_records():
            alive = self._owner_alive(rec.get("owner") or {})
            state = rec.get("state", "running")
            if state == "running" and alive is False:
                state = "gone"  # its kernel died; the watchdog stopped the engines
            rec["state"] = state
            mine = [j for j in running if j.get("owner_pid") == (rec.get("owner") or {}).get("pid")
                    and j.get("owner_host") == (rec.get("owner") or {}).get("host")]
            busy = {}
            for j in mine:
                detail = self.store.job(j["id"]) or {"ranks": []}
                for r in detail["ranks"]:
                    if r.get("engine_id") is not None:
                        busy[r["engine_id"]] = j["id"]
            for e in rec.get("engines", []):
                if state != "running":
                    e["state"] = "stopped"
                elif e.get("host") == self.host and e.get("pid") and _process_start(int(e["pid"])) is None:
                    e["state"] = "dead"
                elif e.get("engine") in busy:
                    e["state"], e["job"] = "busy", busy[e["engine"]]
                else:
                    e["state"] = "idle"
                gpu = e.get("gpu")
                if gpu and e.get("host") == self.host and gpu.get("uuid") in by_uuid:
                    e["gpu"] = dict(gpu, **{k: by_uuid[gpu["uuid"]][k] for k in
                                            ("memory_total_mb", "memory_used_mb", "utilization_pct")})
            rec["jobs"] = [j["id"] for j in mine]
            out.append(rec)
        return {"host": self.host, "gpu_source": source, "gpus": gpus, "pools": out}

    def _running_pool(self, pool_id: str) -> dict[str, Any]:
        if not poolstore.POOL_ID.match(pool_id or ""):
            raise BadRequest(f"not a pool id: {pool_id!r}")
        rec = poolstore.read_record(pool_id)
        if rec is None:
            raise NotFound(f"no pool {pool_id}")
        if rec.get("state") != "running" or self._owner_alive(rec.get("owner") or {}) is False:
            raise BadRequest(f"pool {pool_id} is not running")
        return rec

    def pool_action(self, pool_id: str, action: str, engine: Any = None, user: str = "") -> dict[str, Any]:
        """Ask the kernel owning ``pool_id`` to ``stop`` it or ``restart`` an engine (all when None)."""
        rec = self._running_pool(pool_id)
        args: dict[str, Any] = {}
        if action == "restart" and engine is not None:
            engine_n = _int(engine, "engine", 0, 0, 1_000_000)
            known = [e.get("engine") for e in rec.get("engines", [])]
            if engine_n not in known:
                raise BadRequest(f"pool {pool_id} has engines {', '.join(map(str, known))}; no engine {engine_n}")
            args["engine"] = engine_n
        elif action not in poolstore.ACTIONS:
            raise BadRequest(f"unknown pool action {action!r}")
        rid = poolstore.request(pool_id, action, args, user)
        return {"pool": pool_id, "action": action, "request": rid, **args}

    def pool_response(self, pool_id: str, request_id: str) -> dict[str, Any]:
        if not poolstore.POOL_ID.match(pool_id or "") or not poolstore.REQUEST_ID.match(request_id or ""):
            raise BadRequest("not a pool or request id")
        found = poolstore.read_response(pool_id, request_id)
        return found if found is not None else {"id": request_id, "pending": True}
