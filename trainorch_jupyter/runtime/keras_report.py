"""``KerasReport``: a Keras callback that streams fit progress through ``report()``.

    from trainorch_jupyter.runtime import KerasReport
    model.fit(x, y, epochs=10, callbacks=[KerasReport()])

Importing this module imports TensorFlow (the callback subclasses ``tf.keras``'s
own ``Callback``); ``trainorch_jupyter.runtime`` loads it only when
``KerasReport`` is first used.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .report import report

UNITS = ("batch", "epoch")


class KerasReport(tf.keras.callbacks.Callback):
    """Report progress and metrics while ``fit`` runs, so the panel shows them live.

    ``every="batch"`` (default): progress counts batches (``step`` of
    ``epochs * steps``), with the running metrics after each batch and the epoch's
    metrics (validation included) at its end.  ``every="epoch"``: one report per
    epoch, progress in epochs.  ``prefix`` is put before every metric name.
    """

    def __init__(self, every: str = "batch", prefix: str = "") -> None:
        super().__init__()
        if every not in UNITS:
            raise ValueError(f"KerasReport(every={every!r}): use one of {', '.join(UNITS)}")
        self.every = every
        self.prefix = prefix
        self._epoch = 0
        self._steps: int | None = None
        self._epochs = 1

    def _metrics(self, logs: dict[str, Any] | None) -> dict[str, Any]:
        return {f"{self.prefix}{k}": v for k, v in (logs or {}).items()}

    def _batch_progress(self) -> bool:
        return self.every == "batch" and self._steps is not None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        params = self.params or {}
        self._epochs = int(params.get("epochs") or 1)
        steps = params.get("steps")
        self._steps = int(steps) if steps else None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._batch_progress():
            step = self._epoch * self._steps + batch + 1
            report(step=step, total=self._epochs * self._steps, **self._metrics(logs))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = self._metrics(logs)
        metrics[f"{self.prefix}epoch"] = epoch + 1
        if self._batch_progress():
            report(step=(epoch + 1) * self._steps, total=self._epochs * self._steps, **metrics)
        else:
            report(step=epoch + 1, total=self._epochs, **metrics)
