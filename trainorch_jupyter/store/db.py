"""The run store's database: schema, migrations, writes and the query API.

SQLite in WAL mode.  The kernel is the only writer of its own jobs; several
kernels may write to one store at once (each write is a short ``BEGIN
IMMEDIATE`` transaction with a generous busy timeout).  ``%tune`` and
``%validate`` add their tables as further migrations.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable

from ..model import FINAL_STATES, JOB, LOST, METRIC, STATUS, TRIAL_UPDATE, VALIDATION, Event

BUSY_TIMEOUT_MS = 30_000

# (version, statements). Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            parent_id TEXT,
            framework TEXT,
            backend TEXT,
            world_size INTEGER,
            state TEXT NOT NULL,
            source TEXT,
            created REAL,
            started REAL,
            ended REAL,
            error TEXT,
            owner_host TEXT,
            owner_pid INTEGER,
            owner_start REAL,
            heartbeat REAL
        );
        CREATE INDEX jobs_created ON jobs(created);
        CREATE TABLE ranks (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            rank INTEGER NOT NULL,
            engine_id INTEGER,
            host TEXT,
            device TEXT,
            state TEXT,
            step INTEGER,
            total INTEGER,
            metrics TEXT,
            error TEXT,
            PRIMARY KEY (job_id, rank)
        );
        CREATE TABLE metrics (
            job_id TEXT NOT NULL,
            rank INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            t REAL,
            step INTEGER,
            total INTEGER,
            values_json TEXT,
            PRIMARY KEY (job_id, rank, seq)
        );
        CREATE TABLE events (
            job_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            rank INTEGER,
            t REAL,
            data TEXT,
            PRIMARY KEY (job_id, seq)
        );
        """,
    ),
    (
        2,
        # %tune: a study run is a job of kind 'tune'; its trials are mirrored here as
        # they change, so readers (the sidebar) never need Optuna.  With
        # --engines-per-trial a trial also has its own child job (child_job_id).
        """
        CREATE TABLE studies (
            job_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            storage TEXT,
            directions TEXT,
            sampler TEXT,
            pruner TEXT,
            n_trials INTEGER
        );
        CREATE INDEX studies_name ON studies(name);
        CREATE TABLE trials (
            job_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            study TEXT,
            state TEXT NOT NULL,
            params TEXT,
            value REAL,
            values_json TEXT,
            intermediate TEXT,
            engine_id INTEGER,
            device TEXT,
            child_job_id TEXT,
            started REAL,
            ended REAL,
            error TEXT,
            PRIMARY KEY (job_id, number)
        );
        """,
    ),
    (
        3,
        # %validate: one row per validate job; --baseline looks rows up by name
        """
        CREATE TABLE validations (
            job_id TEXT PRIMARY KEY,
            name TEXT,
            model TEXT,
            model_job_id TEXT,
            task TEXT,
            n_samples INTEGER,
            metrics TEXT,
            bounds TEXT,
            baseline_id TEXT,
            passed INTEGER,
            created REAL
        );
        CREATE INDEX validations_name ON validations(name, created);
        """,
    ),
]

TRIAL_FIELDS = ("study", "state", "params", "value", "values", "intermediate", "engine_id", "device",
                "child_job_id", "started", "ended", "error")


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started, or None if it is gone (a zombie counts as gone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except Exception:
        return None


class RunStore:
    """One SQLite database of jobs, ranks, metrics and status events."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = _process_start(self.pid)
        with self._write() as con:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.migrate()
        self.lost = self.mark_lost()

    # -- connections ---------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.row_factory = sqlite3.Row
            self._local.con = con
        return con

    class _Tx:
        def __init__(self, con: sqlite3.Connection) -> None:
            self.con = con

        def __enter__(self) -> sqlite3.Connection:
            # IMMEDIATE: take the write lock now, waiting (busy_timeout) instead of
            # failing halfway with "database is locked"
            self.con.execute("BEGIN IMMEDIATE")
            return self.con

        def __exit__(self, exc_type: Any, *rest: Any) -> None:
            self.con.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> "_Tx":
        return self._Tx(self.connect())

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- schema ---------------------------------------------------------------------------
    def version(self) -> int:
        row = self.connect().execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self, migrations: list[tuple[int, str]] | None = None) -> int:
        """Apply every migration newer than the database, each in its own transaction."""
        for version, sql in migrations or MIGRATIONS:
            with self._write() as con:
                row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                current = int(row[0]) if row else 0
                if version <= current:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(version),)
                )
        return self.version()

    # -- writes (the kernel's own jobs) ---------------------------------------------------------
    def write_events(self, events: Iterable[Event]) -> None:
        """Persist a batch of events in one transaction."""
        events = list(events)
        if not events:
            return
        now = time.time()
        metrics = [ev for ev in events if ev.kind == METRIC]
        with self._lock, self._write() as con:
            for ev in events:
                if ev.kind != METRIC:
                    self._apply(con, ev)
            if metrics:
                self._write_metrics(con, metrics)
            for job_id in {ev.job_id for ev in events}:
                con.execute("UPDATE jobs SET heartbeat=? WHERE id=?", (now, job_id))

    def _apply(self, con: sqlite3.Connection, ev: Event) -> None:
        d = ev.data
        if ev.kind == JOB:
            con.execute(
                "INSERT OR IGNORE INTO jobs(id, kind, parent_id, framework, backend, world_size, state,"
                " source, created, owner_host, owner_pid, owner_start, heartbeat)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ev.job_id, d.get("kind", "distribute"), d.get("parent_id"), d.get("framework"),
                 d.get("backend"), d.get("world_size"), "pending", d.get("source"), ev.time,
                 self.host, self.pid, self.pid_start, ev.time),
            )
            study = d.get("study")
            if study:
                con.execute(
                    "INSERT OR IGNORE INTO studies(job_id, name, storage, directions, sampler, pruner, n_trials)"
                    " VALUES(?,?,?,?,?,?,?)",
                    (ev.job_id, study.get("name"), study.get("storage"), json.dumps(study.get("directions", [])),
                     study.get("sampler"), study.get("pruner"), study.get("n_trials")),
                )
            for r in d.get("ranks", []):
                con.execute(
                    "INSERT OR IGNORE INTO ranks(job_id, rank, engine_id, host, device, state, metrics)"
                    " VALUES(?,?,?,?,?,?,?)",
                    (ev.job_id, r["rank"], r.get("engine_id"), r.get("host"), r.get("device"), "pending", "{}"),
                )
        elif ev.kind == STATUS:
            state = d["state"]
            if ev.rank is None:
                con.execute(
                    "UPDATE jobs SET state=?, started=COALESCE(started, CASE WHEN ?='running' THEN ? END),"
                    " ended=CASE WHEN ? IN ('done','failed','cancelled','lost') THEN ? ELSE ended END,"
                    " error=COALESCE(?, error) WHERE id=?",
                    (state, state, ev.time, state, ev.time, d.get("error"), ev.job_id),
                )
                if state in FINAL_STATES:
                    con.execute(
                        "UPDATE ranks SET state=? WHERE job_id=? AND state IN ('pending','running')",
                        (state, ev.job_id),
                    )
            else:
                con.execute(
                    "UPDATE ranks SET state=?, error=COALESCE(?, error) WHERE job_id=? AND rank=?",
                    (state, d.get("error"), ev.job_id, ev.rank),
                )
        elif ev.kind == TRIAL_UPDATE:
            self._apply_trial(con, ev)
            return  # the trials table is the record: no copy in events
        elif ev.kind == VALIDATION:
            con.execute(
                "INSERT OR REPLACE INTO validations(job_id, name, model, model_job_id, task, n_samples,"
                " metrics, bounds, baseline_id, passed, created) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (ev.job_id, d.get("name"), d.get("model"), d.get("model_job_id"), d.get("task"),
                 d.get("n_samples"), json.dumps(d.get("metrics", {}), default=str),
                 json.dumps(d.get("bounds", []), default=str), d.get("baseline_id"),
                 None if d.get("passed") is None else int(bool(d["passed"])), ev.time),
            )
        else:
            return  # output lives in the rank log files
        con.execute(
            "INSERT OR IGNORE INTO events(job_id, seq, kind, rank, t, data) VALUES(?,?,?,?,?,?)",
            (ev.job_id, ev.seq, ev.kind, ev.rank, ev.time, json.dumps(_jsonable(d))),
        )

    def _apply_trial(self, con: sqlite3.Connection, ev: Event) -> None:
        """Merge a trial update into its row (updates carry only what changed)."""
        d = ev.data
        row = con.execute("SELECT * FROM trials WHERE job_id=? AND number=?", (ev.job_id, d["number"])).fetchone()
        cur: dict[str, Any] = _trial_dict(row) if row else {"state": "RUNNING", "intermediate": {}}
        for key in TRIAL_FIELDS:
            if key == "intermediate" and d.get(key):
                cur["intermediate"].update({str(k): v for k, v in d[key].items()})
            elif key in d:
                cur[key] = d[key]
        con.execute(
            "INSERT OR REPLACE INTO trials(job_id, number, study, state, params, value, values_json, intermediate,"
            " engine_id, device, child_job_id, started, ended, error) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ev.job_id, d["number"], cur.get("study"), cur.get("state") or "RUNNING",
             json.dumps(_jsonable(cur.get("params") or {})), cur.get("value"),
             json.dumps(cur.get("values")) if cur.get("values") is not None else None,
             json.dumps(cur["intermediate"]), cur.get("engine_id"), cur.get("device"), cur.get("child_job_id"),
             cur.get("started"), cur.get("ended"), cur.get("error")),
        )

    def _write_metrics(self, con: sqlite3.Connection, events: list[Event]) -> None:
        """Metric rows in bulk, then each rank's latest step and merged metrics once."""
        con.executemany(
            "INSERT OR IGNORE INTO metrics(job_id, rank, seq, t, step, total, values_json) VALUES(?,?,?,?,?,?,?)",
            [
                (ev.job_id, ev.rank, ev.data.get("seq", ev.seq), ev.data.get("t", ev.time),
                 ev.data.get("step"), ev.data.get("total"), json.dumps(ev.data.get("metrics", {})))
                for ev in events
            ],
        )
        latest: dict[tuple[str, int], dict[str, Any]] = {}
        for ev in events:
            cur = latest.setdefault((ev.job_id, ev.rank), {"metrics": {}, "step": None, "total": None})
            cur["metrics"].update(ev.data.get("metrics", {}))
            for k in ("step", "total"):
                if ev.data.get(k) is not None:
                    cur[k] = ev.data[k]
        for (job_id, rank), cur in latest.items():
            row = con.execute("SELECT metrics FROM ranks WHERE job_id=? AND rank=?", (job_id, rank)).fetchone()
            merged = json.loads(row[0] or "{}") if row else {}
            merged.update(cur["metrics"])
            con.execute(
                "UPDATE ranks SET step=COALESCE(?, step), total=COALESCE(?, total), metrics=? WHERE job_id=? AND rank=?",
                (cur["step"], cur["total"], json.dumps(merged), job_id, rank),
            )

    def mark_lost(self) -> list[str]:
        """Jobs left 'running' by a kernel that no longer exists on this host become 'lost'."""
        lost = []
        rows = self.connect().execute(
            "SELECT id, owner_host, owner_pid, owner_start FROM jobs WHERE state IN ('pending','running')"
        ).fetchall()
        for row in rows:
            if row["owner_host"] != self.host:
                continue  # another node's kernel: we cannot tell
            start = _process_start(row["owner_pid"]) if row["owner_pid"] else None
            alive = start is not None and (row["owner_start"] is None or abs(start - row["owner_start"]) < 1)
            if not alive:
                lost.append(row["id"])
        if lost:
            now = time.time()
            with self._lock, self._write() as con:
                for job_id in lost:
                    con.execute(
                        "UPDATE jobs SET state=?, ended=COALESCE(heartbeat, ?),"
                        " error=COALESCE(error, 'the kernel running it exited') WHERE id=?",
                        (LOST, now, job_id),
                    )
                    con.execute(
                        "UPDATE ranks SET state=? WHERE job_id=? AND state IN ('pending','running')",
                        (LOST, job_id),
                    )
        return lost

    # -- queries (also the server's only way in) ----------------------------------------------------
    def jobs(self, limit: int = 20, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM jobs" + (" WHERE kind=?" if kind else "") + " ORDER BY created DESC LIMIT ?"
        args = (kind, limit) if kind else (limit,)
        return [dict(r) for r in self.connect().execute(sql, args).fetchall()]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A job with its ranks; ``job_id`` may be a unique prefix."""
        con = self.connect()
        rows = con.execute("SELECT * FROM jobs WHERE id LIKE ? LIMIT 2", (job_id + "%",)).fetchall()
        if len(rows) != 1:
            return None
        job = dict(rows[0])
        ranks = con.execute("SELECT * FROM ranks WHERE job_id=? ORDER BY rank", (job["id"],)).fetchall()
        job["ranks"] = [dict(r, metrics=json.loads(r["metrics"] or "{}")) for r in ranks]
        return job

    def metrics(self, job_id: str, rank: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM metrics WHERE job_id=?" + (" AND rank=?" if rank is not None else "")
        args = (job_id, rank) if rank is not None else (job_id,)
        rows = self.connect().execute(sql + " ORDER BY rank, seq", args).fetchall()
        return [dict(r, values=json.loads(r["values_json"] or "{}")) for r in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.connect().execute("SELECT * FROM events WHERE job_id=? ORDER BY seq", (job_id,)).fetchall()
        return [dict(r, data=json.loads(r["data"] or "{}")) for r in rows]

    def final_figures(self, jobs: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """What ``%runs`` shows of each job: its final metrics (rank 0's; a study's best trial; a
        validation's metrics) and, for validations, the gate's verdict."""
        final: dict[str, dict[str, Any]] = {}
        verdicts: dict[str, str] = {}
        studies = {s["job_id"]: s for s in self.studies(limit=200)} if any(j["kind"] == "tune" for j in jobs) else {}
        for j in jobs:
            if j["kind"] == "validate":
                v = self.validation(j["id"])
                if v is not None:
                    final[j["id"]] = {k: x for k, x in v["metrics"].items() if isinstance(x, (int, float))}
                    verdicts[j["id"]] = "passed" if v["passed"] else "gate failed"
            elif j["kind"] == "tune":
                best = (studies.get(j["id"]) or {}).get("best")
                final[j["id"]] = {"best": best["value"], "trial": best["number"]} if best else {}
            else:
                detail = self.job(j["id"])
                final[j["id"]] = detail["ranks"][0]["metrics"] if detail and detail["ranks"] else {}
        return final, verdicts

    # studies and trials (%tune) ...........................................................
    def studies(self, limit: int = 20, name: str | None = None) -> list[dict[str, Any]]:
        """Study runs, newest first: the study's fields, its job's state, trial counts and best."""
        sql = ("SELECT s.*, j.state AS job_state, j.created, j.ended FROM studies s JOIN jobs j ON j.id = s.job_id"
               + (" WHERE s.name=?" if name else "") + " ORDER BY j.created DESC LIMIT ?")
        args = (name, limit) if name else (limit,)
        out = []
        for r in self.connect().execute(sql, args).fetchall():
            study = dict(r, directions=json.loads(r["directions"] or "[]"))
            trials = self.trials(study["job_id"])
            study["counts"] = {}
            for t in trials:
                study["counts"][t["state"]] = study["counts"].get(t["state"], 0) + 1
            study["best"] = best_trial(trials, study["directions"])
            out.append(study)
        return out

    def trials(self, job_id: str) -> list[dict[str, Any]]:
        """The trials a tune job ran, by number."""
        rows = self.connect().execute(
            "SELECT * FROM trials WHERE job_id=? ORDER BY number", (job_id,)
        ).fetchall()
        return [_trial_dict(r) for r in rows]

    # validations (%validate) ...............................................................
    def validations(self, limit: int = 20, name: str | None = None) -> list[dict[str, Any]]:
        """Validation results, newest first (optionally only those with ``name``)."""
        sql = "SELECT * FROM validations" + (" WHERE name=?" if name else "") + " ORDER BY created DESC LIMIT ?"
        args = (name, limit) if name else (limit,)
        return [_validation_dict(r) for r in self.connect().execute(sql, args).fetchall()]

    def validation(self, key: str) -> dict[str, Any] | None:
        """The latest validation named ``key``, else the one whose job id starts with ``key``."""
        named = self.validations(1, name=key)
        if named:
            return named[0]
        rows = self.connect().execute(
            "SELECT * FROM validations WHERE job_id LIKE ? LIMIT 2", (key + "%",)
        ).fetchall()
        return _validation_dict(rows[0]) if len(rows) == 1 else None


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def _trial_dict(row: sqlite3.Row) -> dict[str, Any]:
    t = dict(row)
    t["params"] = json.loads(t["params"] or "{}")
    t["values"] = json.loads(t.pop("values_json") or "null")
    t["intermediate"] = json.loads(t["intermediate"] or "{}")
    return t


def _validation_dict(row: sqlite3.Row) -> dict[str, Any]:
    v = dict(row)
    v["metrics"] = json.loads(v["metrics"] or "{}")
    v["bounds"] = json.loads(v["bounds"] or "[]")
    v["passed"] = None if v["passed"] is None else bool(v["passed"])
    return v


def best_trial(trials: list[dict[str, Any]], directions: list[str]) -> dict[str, Any] | None:
    """The best COMPLETE trial of a single-objective study (None for multi-objective or none done)."""
    if len(directions) > 1:
        return None
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    if not done:
        return None
    sign = -1.0 if directions and directions[0] == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t["value"], t["number"]))


class StoreWriter:
    """Batches a job's events into the store from a background thread.

    Events are written as they happen, at most ``interval`` seconds late: a kernel
    killed with SIGKILL loses at most that much.
    """

    def __init__(self, store: "RunStore | Callable[[], RunStore]", interval: float = 0.25,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        # a callable is opened on the writer's thread: opening (and migrating) a
        # store never delays the first job
        self._open = store if callable(store) and not isinstance(store, RunStore) else None
        self.store = None if self._open else store
        self.interval = interval
        self.on_error = on_error
        self._buf: list[Event] = []
        self._writing = False
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="trainorch-store", daemon=True)
        self._thread.start()

    def __call__(self, ev: Event) -> None:
        if ev.kind not in (JOB, STATUS, METRIC, TRIAL_UPDATE, VALIDATION):
            return
        with self._cv:
            self._buf.append(ev)
            if ev.kind != METRIC:
                self._cv.notify()  # state changes go out at once

    def _loop(self) -> None:
        if self._open is not None:
            try:
                self.store = self._open()
            except BaseException as e:
                if self.on_error:
                    self.on_error(e)
                return
        while True:
            with self._cv:
                if not self._buf and not self._stop:
                    self._cv.wait(self.interval)
                batch, self._buf = self._buf, []
                stop = self._stop
                self._writing = bool(batch)
            if batch:
                try:
                    self.store.write_events(batch)
                except BaseException as e:  # never break the job over bookkeeping
                    if self.on_error:
                        self.on_error(e)
                finally:
                    with self._cv:
                        self._writing = False
            if stop and not self._buf:
                return
            time.sleep(self.interval / 5)

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything buffered now (waits for the writer thread)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._cv.notify()
        while time.monotonic() < deadline:
            with self._cv:
                if not self._buf and not self._writing:
                    break
            time.sleep(0.01)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(10)
