"""Run-store data for the server tests, written through RunStore.write_events like a kernel would."""

from __future__ import annotations

import os
import stat

from trainorch_jupyter import model
from trainorch_jupyter.model import Event

STUDY_JOB = "5eed00000001"
VALID_JOB = "fa11da7e0001"

# what `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu` prints
SMI_STATS = ["0, GPU-aaaa-1111, NVIDIA Fake H100, 81559, 20480, 87",
             "1, GPU-bbbb-2222, NVIDIA Fake H100, 81559, [N/A], [Not Supported]"]


def fake_nvidia_smi_with_stats(directory: str) -> str:
    """A fake nvidia-smi that also reports memory used and utilisation (GPU hardware is simulated)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "nvidia-smi")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nprintf '%s\\n' " + " ".join(repr(r) for r in SMI_STATS) + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def study_events(job_id: str = STUDY_JOB) -> list[Event]:
    study = {"name": "digits", "storage": "journal:///x", "directions": ["maximize"], "sampler": "TPESampler",
             "pruner": "MedianPruner", "n_trials": 3}
    evs = [Event(job_id, 0, model.JOB, None, {"kind": model.TUNE, "world_size": 2, "study": study}),
           Event(job_id, 1, model.STATUS, None, {"state": model.RUNNING})]
    updates = [
        {"number": 0, "study": "digits", "state": "RUNNING", "params": {"lr": 0.1}, "engine_id": 0},
        {"number": 1, "study": "digits", "state": "RUNNING", "params": {"lr": 0.01}, "engine_id": 1},
        {"number": 0, "intermediate": {0: 0.5, 1: 0.7}},
        {"number": 1, "state": "PRUNED", "ended": 2.0},
        {"number": 0, "state": "COMPLETE", "value": 0.9, "ended": 3.0},
    ]
    return evs + [Event(job_id, 2 + i, model.TRIAL_UPDATE, None, u) for i, u in enumerate(updates)]


def validation_events(job_id: str = VALID_JOB, acc: float = 0.95) -> list[Event]:
    return [
        Event(job_id, 0, model.JOB, None, {"kind": model.VALIDATE}),
        Event(job_id, 1, model.VALIDATION, None, {
            "name": "digits-mlp", "model": "MLPClassifier", "task": "classification", "n_samples": 360,
            "metrics": {"accuracy": acc}, "passed": acc >= 0.93,
            "bounds": [{"metric": "accuracy", "op": ">=", "bound": 0.93, "value": acc, "passed": acc >= 0.93}],
        }),
        Event(job_id, 2, model.STATUS, None, {"state": model.DONE}),
    ]
