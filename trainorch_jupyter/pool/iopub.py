"""A lossless tap on an ipyparallel Client's IOPub stream.

ipyparallel folds every engine's output into per-message metadata (and keeps
only the latest ``data_message`` value).  Jobs need every message, in order, as
it arrives: this tap shows each deserialised IOPub message to the hooks, on the
Client's IO thread.  A hook that returns True *claims* a ``stream`` message: it
keeps the text itself (log files, a bounded tail), so the Client does not also
pile the whole output of a long job up in memory.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ipyparallel import Client

Hook = Callable[[dict[str, Any]], Any]


class IOPubTap:
    """Fan every IOPub message of ``client`` out to registered hooks."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        inner = getattr(Client._dispatch_iopub, "__wrapped__", None)
        session = client.session

        def handler(msg_parts: list) -> None:
            if inner is None:  # pragma: no cover - older ipyparallel without the decorator
                client._dispatch_iopub(msg_parts)
            _, parts = session.feed_identities(msg_parts, copy=False)
            try:
                msg = session.deserialize(parts, content=True, copy=False)
            except Exception:
                return
            claimed = False
            for hook in self.hooks():
                try:
                    claimed = bool(hook(msg)) or claimed
                except Exception:  # a broken listener must not break the client
                    client.log.exception("trainorch IOPub hook failed")
            if inner is not None and not (claimed and msg["header"]["msg_type"] == "stream"):
                inner(client, msg)

        done = threading.Event()

        def install() -> None:
            client._iopub_stream.on_recv(handler, copy=False)
            done.set()

        client._io_loop.add_callback(install)
        if not done.wait(10):
            raise RuntimeError("could not attach to the ipyparallel client's IOPub stream")

    def hooks(self) -> list[Hook]:
        with self._lock:
            return list(self._hooks)

    def add(self, hook: Hook) -> None:
        with self._lock:
            self._hooks.append(hook)

    def remove(self, hook: Hook) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)
