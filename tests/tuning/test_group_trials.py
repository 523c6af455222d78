"""%tune --engines-per-trial K: each trial is a torch job of its own on K engines."""

from __future__ import annotations

import threading
import time

from trainorch_jupyter import api
from trainorch_jupyter.server.manager import TrainorchManager

from .test_tune import define, overlaps

GROUP = """
import time
def objective(trial):
    import torch, torch.distributed as dist, optuna
    x = trial.suggest_float("x", 0, 1)           # sampled on rank 0, the same on every rank
    bad = trial.number >= 6
    for step in range(3):
        t = torch.tensor([x + dist.get_rank()])
        dist.all_reduce(t)                       # the trial's own process group
        trial.report(10.0 if bad else t.item(), step)
        if trial.should_prune():                 # rank 0 decides, every rank stops
            raise optuna.TrialPruned()
    if trial.number == 2 and dist.get_rank() == 1:
        raise ValueError("rank 1 of trial 2 fails")
    return t.item()
"""


def test_each_trial_is_a_child_torch_job_with_pruning(healthy_pool):
    job = api.tune(define(GROUP)["objective"], n_trials=7, engines_per_trial=2, seed=0, catch=True, show=False)
    trials = job.snapshot.trials
    states = {n: t["state"] for n, t in trials.items()}
    assert states[2] == "FAIL" and "rank 1" in trials[2]["error"] and "rank 1 of trial 2 fails" in trials[2]["error"]
    assert [states[n] for n in (0, 1, 3, 4, 5)] == ["COMPLETE"] * 5
    assert states[6] == states[7] == "PRUNED"  # the median pruner, after 5 complete trials
    for n in (0, 1, 3, 4, 5):  # x + (x + 1): both ranks had rank 0's x
        assert abs(trials[n]["value"] - (2 * trials[n]["params"]["x"] + 1)) < 1e-5
    api._flush_store()
    children = {j["id"]: j for j in api.store().jobs(50, kind="trial") if j["parent_id"] == job.id}
    assert {t["child_job_id"] for t in trials.values()} == set(children)
    assert all(j["world_size"] == 2 for j in children.values())
    assert children[trials[0]["child_job_id"]]["state"] == "done"
    assert children[trials[2]["child_job_id"]]["state"] == "failed"
    assert all(t["device"] == "cpu,cpu" for t in trials.values())
    assert len(healthy_pool.alive_ids() & set(healthy_pool.engine_ids())) == 2


def test_stop_cancels_the_running_child_job(healthy_pool):
    fn = define("import time\ndef objective(trial):\n    trial.suggest_int('k', 0, 9)\n"
                "    time.sleep(60)\n    return 1.0")["objective"]
    known = set(map(id, api.jobs()))
    result = {}
    t = threading.Thread(target=lambda: result.update(job=api.tune(fn, n_trials=3, engines_per_trial=2,
                                                                   show=False)))
    t.start()
    job, deadline = None, time.monotonic() + 60
    while time.monotonic() < deadline and job is None:
        new = [j for j in api.jobs() if id(j) not in known]
        if new and any(tr.get("state") == "RUNNING" for tr in new[0].snapshot.trials.values()):
            job = new[0]
        time.sleep(0.2)
    assert job is not None
    time.sleep(2)  # into the sleep on both ranks
    TrainorchManager().request_stop(job.id)
    t.join(90)
    assert not t.is_alive() and job.state == "cancelled"
    assert [tr["state"] for tr in job.snapshot.trials.values()] == ["FAIL"]
    api._flush_store()
    child = api.store().job(job.snapshot.trials[0]["child_job_id"])
    assert child["state"] in ("cancelled", "failed")
    assert api.tune(define(GROUP)["objective"], n_trials=1, engines_per_trial=2, show=False).state == "done"


def test_two_groups_of_two_run_at_once():
    api.stop_pool()
    pool = api.start_pool(4)
    try:
        src = GROUP.replace('if trial.number == 2 and dist.get_rank() == 1:', 'if False:') \
                   .replace("bad = trial.number >= 6", "bad = False; time.sleep(0.5)")
        job = api.tune(define(src)["objective"], n_trials=4, engines_per_trial=2, pruner="none", show=False)
        trials = list(job.snapshot.trials.values())
        assert [t["state"] for t in trials] == ["COMPLETE"] * 4
        assert {t["engine_id"] for t in trials} == {pool.slots[0].engine_id, pool.slots[2].engine_id}
        assert any(overlaps(a, b) for a in trials for b in trials if a["engine_id"] != b["engine_id"])
    finally:
        api.stop_pool()
