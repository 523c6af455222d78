"""A finished study as a Snapshot again (``%tune --show NAME``).

From the run store when it has the study (the latest run by that name; a run
lists the trials of the runs before it too), else from Optuna's storage: the
default journal file of that name, or ``--storage``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import model
from ..model import Event, Snapshot
from ..store import paths
from ..store.db import RunStore
from .options import TuneProblem


def from_store(store: RunStore, name: str) -> Snapshot | None:
    found = store.studies(1, name=name)
    if not found:
        return None
    s = found[0]
    job = store.job(s["job_id"]) or {}
    snap = Snapshot(id=s["job_id"], kind=model.TUNE, state=s.get("job_state") or job.get("state", ""),
                    created=s.get("created"), started=job.get("started"), ended=s.get("ended"),
                    error=job.get("error") or "")
    snap.study = {k: s.get(k) for k in ("name", "storage", "directions", "sampler", "pruner", "n_trials")}
    for t in store.trials(s["job_id"]):
        t = {k: v for k, v in t.items() if k != "job_id" and v is not None}
        t["intermediate"] = {int(k): v for k, v in (t.get("intermediate") or {}).items()}
        snap.trials[t["number"]] = t
    return snap


def from_storage(name: str, spec: str) -> Snapshot:
    from .options import require_optuna
    from .storage import open_storage
    from .study_job import _epoch

    optuna = require_optuna()
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(spec, create=False))
    except KeyError:
        raise TuneProblem(f"no study {name!r} in {spec}; %tune ... --study {name} creates it") from None
    except Exception as e:
        raise TuneProblem(f"--storage {spec}: cannot read it ({type(e).__name__}: {str(e)[:120]})") from None
    snap = Snapshot(kind=model.TUNE, state=model.DONE)
    snap.study = {"name": name, "storage": spec, "directions": [d.name.lower() for d in study.directions],
                  "sampler": "?", "pruner": "?"}
    seq = 0
    for ft in study.get_trials(deepcopy=False):
        data: dict[str, Any] = {"number": ft.number, "study": name, "state": ft.state.name,
                                "params": dict(ft.params), "intermediate": dict(ft.intermediate_values),
                                "started": _epoch(ft.datetime_start), "ended": _epoch(ft.datetime_complete)}
        if ft.values is not None:
            data.update(value=ft.values[0], values=list(ft.values))
        snap.apply(Event("", seq, model.TRIAL_UPDATE, None, data))
        seq += 1
    return snap


def study_snapshot(store: RunStore, name: str, storage: str | None = None) -> Snapshot:
    if storage is None:
        snap = from_store(store, name)
        if snap is not None:
            return snap
        from .storage import default_spec

        spec = default_spec(name, paths.home())
        if not os.path.exists(spec[len("journal:"):]):
            raise TuneProblem(f"no study {name!r} in the run store or under {paths.home()}; "
                              "give its --storage URL")
        return from_storage(name, spec)
    from .storage import StorageProblem, check_spec

    try:
        spec = check_spec(storage)
    except StorageProblem as e:
        raise TuneProblem(str(e)) from None
    return from_storage(name, spec)
