"""Run one ``%%distribute`` cell on this engine, as one rank of a job."""

from __future__ import annotations

import importlib

import cloudpickle
import linecache
import os
from typing import Any

from ._state import STATE
from .engine import user_namespace
from .report import REPORTER


def _call(target: str | None, *args: Any) -> Any:
    if not target:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


_CODE: dict[tuple[str, str], Any] = {}


def _compile(source: str, filename: str) -> Any:
    """Compile a cell once per engine (the same cell is often run again and again)."""
    key = (source, filename)
    code = _CODE.get(key)
    if code is None:
        from IPython import get_ipython

        ip = get_ipython()
        text = ip.transform_cell(source) if ip is not None else source
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        code = _CODE[key] = compile(text, filename, "exec")
        if len(_CODE) > 64:
            _CODE.pop(next(iter(_CODE)))
    return code


def run(source: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Set this rank up, run ``source`` in the engine namespace, return what was asked for.

    On any failure (an exception, an interrupt) the rank tears down its process
    group before the error leaves the engine, so peers blocked in a collective
    with it fail at once instead of waiting for a timeout.
    """
    for key in STATE.get("job_env", ()):
        if key not in spec["env"]:
            os.environ.pop(key, None)  # the previous job's RANK, MASTER_* ... do not leak
    os.environ.update(spec["env"])
    STATE["job_env"] = list(spec["env"])
    for key in ("rank", "world_size", "local_rank", "local_world_size", "job_id", "framework"):
        STATE[key] = spec[key]
    REPORTER.start(spec["job_id"])
    ns = user_namespace()
    try:
        _call(spec.get("setup"), spec)
        code = _compile(source, spec["filename"])
        exec(code, ns)
        out: dict[str, Any] = {"pull": {}, "gather": {}}
        wanted = [("gather", n) for n in spec.get("gather", [])]
        if spec["rank"] == 0:
            wanted += [("pull", n) for n in spec.get("pull", [])]
        for kind, name in wanted:
            if name not in ns:
                raise NameError(
                    f"--{kind} {name}: the cell did not define {name!r} on rank {spec['rank']}"
                )
            value = ns[name]
            if spec.get("prepare"):
                value = _call(spec["prepare"], value)
            try:
                # pickled here, once, so a value that cannot travel is named
                out[kind][name] = cloudpickle.dumps(value)
            except Exception as e:
                raise TypeError(
                    f"--{kind} {name}: a {type(value).__name__} cannot be sent to the notebook "
                    f"({type(e).__name__}: {e}); pull something picklable, such as a state_dict"
                ) from None
        return out
    except BaseException:
        try:
            _call(spec.get("teardown"))
        except Exception:
            pass
        raise
    finally:
        # Output needs no flush here: the engine flushes its streams before it goes
        # idle, and a flush from this thread is a round trip to the IOPub thread.
        REPORTER.stop()


def teardown(target: str | None) -> None:
    """Tear down the framework's distributed state on this engine."""
    _call(target)
