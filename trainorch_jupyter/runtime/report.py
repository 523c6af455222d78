"""``report()``: an ordered, lossless stream of progress and metrics.

ipyparallel's ``datapub`` alone keeps only the latest value per key.  Here every
call gets a sequence number and is buffered; batches go out as one IOPub
``data_message`` each (at most every 0.1 s, or every 512 reports), with a
background flush for the last few and a final flush when the cell ends.  The
kernel re-orders by sequence number and can tell when anything went missing.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


KEY = "__trainorch_reports__"
MAX_BATCH = 512
INTERVAL = 0.1


class _Reporter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buffer: list[tuple] = []
        self.seq = 0
        self.last_flush = 0.0
        self.parent: dict | None = None
        self.job_id: str | None = None
        self.thread: threading.Thread | None = None
        self.active = False
        self.pid = -1

    # -- lifecycle, driven by runtime.cell -------------------------------------------
    def start(self, job_id: str) -> None:
        with self.lock:
            self.pid = os.getpid()
            self.job_id = job_id
            self.seq = 0
            self.buffer.clear()
            self.parent = _current_parent()
            self.active = True
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._loop, name="trainorch-report", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.flush()
        with self.lock:
            self.active = False

    # -- the stream ----------------------------------------------------------------------
    def add(self, step: int | None, total: int | None, metrics: dict[str, Any]) -> None:
        now = time.time()
        clean = {str(k): _number(v) for k, v in metrics.items()}
        step, total = _int(step), _int(total)  # never ship a tensor: the kernel must not import torch
        with self.lock:
            self.buffer.append((self.seq, now, step, total, clean))
            self.seq += 1
            due = len(self.buffer) >= MAX_BATCH or now - self.last_flush >= INTERVAL
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.buffer or not self.active:
                return
            batch, self.buffer = self.buffer, []
            self.last_flush = time.time()
            _publish({KEY: {"job": self.job_id, "items": batch}}, self.parent)

    def _loop(self) -> None:
        while True:
            time.sleep(INTERVAL)
            if self.buffer and time.time() - self.last_flush >= INTERVAL:
                try:
                    self.flush()
                except Exception:  # never kill the engine over a report
                    pass


def _number(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        text = str(v)
        return text if len(text) <= 200 else text[:200] + "..."


def _int(v: Any) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _current_parent() -> dict | None:
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell

        if ZMQInteractiveShell.initialized():
            return dict(ZMQInteractiveShell.instance().data_pub.parent_header)
    except Exception:
        pass
    return None


def _publish(data: dict, parent: dict | None) -> None:
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
    except ImportError:
        return
    if not ZMQInteractiveShell.initialized():
        return  # not on an engine (plain Python): reports go nowhere
    pub = ZMQInteractiveShell.instance().data_pub
    from ipyparallel.serialize import serialize_object

    session = pub.session
    buffers = serialize_object(
        data, buffer_threshold=session.buffer_threshold, item_threshold=session.item_threshold
    )
    session.send(
        pub.pub_socket,
        "data_message",
        content={"keys": list(data)},
        parent=parent if parent is not None else pub.parent_header,
        buffers=buffers,
        ident=pub.topic,
    )


REPORTER = _Reporter()


def report(step: int | None = None, total: int | None = None, **metrics: Any) -> None:
    """Publish progress (``step`` of ``total``) and metrics to the notebook.

    Cheap enough to call every step: values are batched and sent in order.
    Tensors and numpy scalars are converted with ``float()``.
    Outside a ``%%distribute`` job, and in child processes of a rank (DataLoader
    workers), it does nothing: report from the rank's own process.
    """
    if not REPORTER.active or os.getpid() != REPORTER.pid:
        return  # outside a job, or in a forked child (e.g. a DataLoader worker): sockets are not ours
    REPORTER.add(step, total, metrics)
