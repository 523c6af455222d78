"""A lossless tap on an ipyparallel Client's IOPub stream.

ipyparallel folds every engine's output into per-message metadata (and keeps
only the latest ``data_message`` value).  Jobs need every message, in order, as
it arrives: this tap sees each deserialised IOPub message right after the
Client's own handler has, on the Client's IO thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ipyparallel import Client

Hook = Callable[[dict[str, Any]], None]


class IOPubTap:
    """Fan every IOPub message of ``client`` out to registered hooks."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        inner = getattr(Client._dispatch_iopub, "__wrapped__", None)
        session = client.session

        def handler(msg_parts: list) -> None:
            if inner is not None:
                _, parts = session.feed_identities(msg_parts, copy=False)
                try:
                    msg = session.deserialize(parts, content=True, copy=False)
                except Exception:
                    return
                inner(client, msg)
            else:  # pragma: no cover - older ipyparallel without the decorator
                client._dispatch_iopub(msg_parts)
                _, parts = session.feed_identities(msg_parts, copy=False)
                msg = session.deserialize(parts, content=True, copy=False)
            for hook in self.hooks():
                try:
                    hook(msg)
                except Exception:  # a broken listener must not break the client
                    client.log.exception("trainorch IOPub hook failed")

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
