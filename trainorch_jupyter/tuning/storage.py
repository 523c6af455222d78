"""Where a study lives: storage that the kernel and every engine open at once.

A storage *spec* is a string both sides can open:

- ``journal:PATH``: Optuna's JournalStorage on a file (the default, one file per
  study under ``TRAINORCH_HOME/studies``), locked with ``flock`` so that many engine
  processes append safely and a waiting writer wakes at once (Optuna's own file
  locks poll with a back-off of up to a second), and appended without an fsync
  per write (see ``_journal``);
- an Optuna RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``).
  SQLite transactions start with ``BEGIN IMMEDIATE`` and wait up to a minute for
  the lock: Optuna reads before it writes, and two deferred SQLite transactions
  that both upgrade fail at once with "database is locked" (the busy timeout is
  not even consulted), which is what several engines starting together hit.

The kernel opens with ``create=True`` (tables are created once, here); engines
connect with ``create=False``.  Imports only Optuna and SQLAlchemy: engines load
this module by name.
"""

from __future__ import annotations

import fcntl
import os
import re
from typing import Any

SQLITE_TIMEOUT = 60.0  # seconds a writer waits for the SQLite lock
_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "oracle", "mssql")


class StorageProblem(ValueError):
    """The storage spec cannot be opened; the message says what to do."""


def default_spec(study: str, home: str) -> str:
    """The default storage of ``study``: a journal file under ``home``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:120] or "study"
    directory = os.path.join(home, "studies")
    os.makedirs(directory, exist_ok=True)
    return f"journal:{os.path.join(directory, safe + '.journal')}"


def check_spec(spec: str) -> str:
    """Normalise ``spec`` or raise StorageProblem (without opening anything)."""
    spec = spec.strip()
    if spec.startswith("journal:"):
        path = os.path.abspath(os.path.expanduser(spec[len("journal:"):]))
        if not os.path.isdir(os.path.dirname(path)):
            raise StorageProblem(f"--storage {spec}: the folder {os.path.dirname(path)} does not exist")
        return f"journal:{path}"
    if spec.endswith((".journal", ".log")) and "://" not in spec:
        return check_spec(f"journal:{spec}")
    scheme = spec.split("://", 1)[0].split("+", 1)[0].lower() if "://" in spec else ""
    if scheme not in _SCHEMES:
        raise StorageProblem(
            f"--storage {spec!r}: not a storage URL; use sqlite:///PATH.db, postgresql://user@host/db "
            "or journal:PATH"
        )
    return spec


class FlockLock:
    """A journal-file lock on ``flock``: blocking, released by the kernel if the holder dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _journal(path: str) -> Any:
    import json

    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.storages.journal._file import BaseJournalFileLock

    class Backend(JournalFileBackend):
        """Optuna's journal file, appended without an fsync per write.

        Each append is one ``write`` under the lock, so it reaches the operating
        system at once and survives the kernel or an engine being killed; only a
        crash of the machine itself could lose the last writes.  The fsync Optuna
        does on every append costs about 20 ms per trial here (a trial appends a
        few times), four times the whole per-trial budget.
        """

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            lock, file_path = getattr(self, "_lock", None), getattr(self, "_file_path", None)
            if lock is None or file_path is None:  # another Optuna layout: keep its own way
                return super().append_logs(logs)
            data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
            lock.acquire()
            try:
                with open(file_path, "ab") as f:
                    f.write(data)
            finally:
                lock.release()

    lock_cls = type("FlockJournalLock", (FlockLock, BaseJournalFileLock), {})
    return JournalStorage(Backend(path, lock_obj=lock_cls(path + ".lock")))


def _sqlite_immediate(engine: Any) -> None:
    """Every transaction on this engine takes the write lock up front (waiting for it)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN from pysqlite
        dbapi_conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT * 1000)}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(spec: str, create: bool = True) -> Any:
    """Open the storage of ``spec`` (see the module docstring)."""
    if spec.startswith("journal:"):
        return _journal(spec[len("journal:"):])
    import optuna

    kwargs: dict[str, Any] = {}
    sqlite = spec.startswith("sqlite")
    if sqlite:
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    if sqlite and create:
        # create the tables on a connection that already begins IMMEDIATE
        import sqlalchemy

        engine = sqlalchemy.create_engine(spec, **kwargs["engine_kwargs"])
        _sqlite_immediate(engine)
        from optuna.storages._rdb import models

        models.BaseModel.metadata.create_all(engine)
        engine.dispose()
    storage = optuna.storages.RDBStorage(spec, skip_table_creation=sqlite or not create, **kwargs)
    if sqlite:
        _sqlite_immediate(storage.engine)
        storage.engine.dispose()  # connections made before the hooks are dropped
    return storage


def connect(spec: str) -> Any:
    """Engine side: open a storage the kernel created."""
    return open_storage(spec, create=False)
