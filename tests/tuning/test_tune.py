"""%tune with real engines and real Optuna storage: concurrency, pruning, resume, failures."""

from __future__ import annotations

import linecache
import os
import textwrap
import threading
import time

import pytest

from trainorch_jupyter import api
from trainorch_jupyter.server.manager import TrainorchManager
from trainorch_jupyter.tuning.study_job import TrialError

FINAL = {"COMPLETE", "PRUNED", "FAIL"}


def define(src: str) -> dict:
    """Functions as a notebook defines them: module __main__ (they travel by value), source
    only in the kernel's linecache, under a cell file name (as IPython does)."""
    src = textwrap.dedent(src)
    filename = f"/tmp/ipykernel_0/{abs(hash(src))}.py"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns = {"__name__": "__main__"}
    exec(compile(src, filename, "exec"), ns)
    return ns


def overlaps(a: dict, b: dict) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


SLOW = """
import time
def objective(trial):
    x = trial.suggest_float("x", -1, 1)
    for step in range(3):
        trial.report(x * x + 1 / (step + 1), step)
        time.sleep(0.2)
    return x * x
"""


def test_trials_run_at_once_one_per_engine_and_reach_the_store(healthy_pool):
    job = api.tune(define(SLOW)["objective"], n_trials=4, sampler="random", seed=0, pruner="none", show=False)
    trials = [job.snapshot.trials[n] for n in sorted(job.snapshot.trials)]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 4
    devices = {s.engine_id: s.device for s in healthy_pool.slots}
    assert {t["engine_id"] for t in trials} == set(devices)
    for a in trials:
        assert a["device"] == devices[a["engine_id"]]
        for b in trials:
            if a is not b and a["engine_id"] == b["engine_id"]:
                assert not overlaps(a, b), "two trials ran on one engine at once"
    assert any(overlaps(a, b) for a in trials for b in trials if a["engine_id"] != b["engine_id"])
    assert all(len(t["intermediate"]) == 3 for t in trials)
    api._flush_store()
    stored = api.store().trials(job.id)
    assert [t["state"] for t in stored] == ["COMPLETE"] * 4
    assert [len(t["intermediate"]) for t in stored] == [3] * 4
    assert {t["engine_id"] for t in stored} == set(devices)
    study = api.store().studies(1, name=job.name)[0]
    assert study["job_state"] == "done" and study["counts"] == {"COMPLETE": 4}
    assert study["best"]["value"] == pytest.approx(job.study.best_value)
    assert job.study.best_params == job.snapshot.trials[study["best"]["number"]]["params"]


PRUNE = """
import time, optuna
def objective(trial):
    bad = trial.number >= 6          # later trials report worse than every earlier one
    trial.suggest_float("x", 0, 1)
    for step in range(3):
        trial.report(10.0 if bad else 0.0, step)
        if trial.should_prune():     # evaluated on the engine, against the shared storage
            raise optuna.TrialPruned()
        time.sleep(0.3 if bad else 0.05)
    return 10.0 if bad else 0.0
"""


def test_pruning_on_the_engines(healthy_pool):
    job = api.tune(define(PRUNE)["objective"], n_trials=8, pruner="median", seed=1, show=False)
    states = {n: t["state"] for n, t in job.snapshot.trials.items()}
    assert [states[n] for n in range(6)] == ["COMPLETE"] * 6
    assert states[6] == states[7] == "PRUNED"
    # pruned at its first step, or at the next one when the kernel had not yet told Optuna that the
    # trial before it on the same engine was complete (the 5 the median pruner waits for)
    assert set(job.snapshot.trials[6]["intermediate"].values()) == {10.0}
    assert len(job.snapshot.trials[6]["intermediate"]) <= 2


def test_same_study_resumes_and_adds_n_more(healthy_pool):
    fn = define(SLOW)["objective"]
    first = api.tune(fn, n_trials=3, study="resume-me", sampler="random", seed=0, pruner="none", show=False)
    second = api.tune(fn, n_trials=2, study="resume-me", sampler="random", seed=0, pruner="none", show=False)
    assert sorted(first.snapshot.trials) == [0, 1, 2]
    assert [t.state.name for t in second.study.trials] == ["COMPLETE"] * 5
    assert sorted(second.snapshot.trials) == [0, 1, 2, 3, 4]  # the run shows the study's past trials
    # trial k is sampled with seed + k: a trial's params do not depend on which engine or when
    assert second.snapshot.trials[0]["params"] == first.snapshot.trials[0]["params"]
    with pytest.raises(api.UsageProblem, match="exists with direction minimize"):
        api.tune(fn, n_trials=1, study="resume-me", direction="maximize", show=False)


RAISES = """
import time
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.3)
    if trial.number == 1:
        print("about to fail")
        raise ValueError(f"bad x {x:.2f}")
    if trial.number == 2:
        time.sleep(1.5)            # ends after trial 1 has failed
        return "not a number"
    return x
"""


def test_a_raising_objective_stops_the_search_with_its_traceback(healthy_pool):
    with pytest.raises(TrialError) as info:
        api.tune(define(RAISES)["objective"], n_trials=6, sampler="random", show=False)
    err = info.value
    assert "trial 1" in err.summary and "ValueError: bad x" in err.summary and "--catch" in err.summary
    assert 'raise ValueError(f"bad x {x:.2f}")' in err.details and "runtime/tune.py" not in err.details
    job = api.jobs()[-1]
    assert job.state == "failed"
    assert job.snapshot.trials[1]["state"] == "FAIL"
    assert all(t["state"] in FINAL for t in job.snapshot.trials.values())  # none left RUNNING
    assert not job.study.get_trials(states=[__import__("optuna").trial.TrialState.RUNNING])
    ok = api.tune(define(SLOW)["objective"], n_trials=2, pruner="none", show=False)  # the pool still works
    assert ok.state == "done"


def test_catch_records_failures_and_goes_on(healthy_pool):
    lines = []
    job = api.tune(define(RAISES)["objective"], n_trials=3, sampler="random", catch=True, log=lines.append)
    states = {n: t["state"] for n, t in job.snapshot.trials.items()}
    assert job.state == "done" and list(states.values()).count("COMPLETE") == 3
    assert states[1] == states[2] == "FAIL"
    assert "ValueError: bad x" in job.snapshot.trials[1]["error"]
    assert "return a float" in job.snapshot.trials[2]["error"]
    with open(os.path.join(os.environ["TRAINORCH_HOME"], "jobs", job.id, "trial-1.log")) as f:
        assert "about to fail" in f.read()  # what a trial printed is kept per trial
    printed = "\n".join(lines)
    assert "trial 1 failed:" in printed and 'raise ValueError(f"bad x' in printed
    assert "best_params: {'x':" in printed


DIES = """
import os, signal, time
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1:
        os.kill(os.getpid(), signal.SIGKILL)   # the engine dies in the middle of the trial
    time.sleep(0.2)
    return x
"""


def test_an_engine_that_dies_mid_trial_fails_that_trial_and_is_replaced(healthy_pool):
    before = set(healthy_pool.engine_ids())
    job = api.tune(define(DIES)["objective"], n_trials=3, sampler="random", show=False)
    states = {n: t["state"] for n, t in job.snapshot.trials.items()}
    assert states[1] == "FAIL" and "died" in job.snapshot.trials[1]["error"]
    assert list(states.values()).count("COMPLETE") == 3 and job.state == "done"
    assert job.healed and set(healthy_pool.engine_ids()) != before
    assert len(healthy_pool.alive_ids() & set(healthy_pool.engine_ids())) == 2


def test_stop_from_the_panel_fails_running_trials_and_leaves_engines_idle(healthy_pool):
    fn = define("import time\ndef objective(trial):\n    trial.suggest_int('k', 0, 9)\n    time.sleep(30)\n    return 1.0")["objective"]
    known = set(map(id, api.jobs()))
    result = {}
    t = threading.Thread(target=lambda: result.update(job=api.tune(fn, n_trials=4, show=False)))
    t.start()
    deadline = time.monotonic() + 60
    job = None
    while time.monotonic() < deadline:
        new = [j for j in api.jobs() if id(j) not in known]
        if new and sum(tr.get("state") == "RUNNING" for tr in new[0].snapshot.trials.values()) == 2:
            job = new[0]
            break
        time.sleep(0.05)
    assert job is not None
    TrainorchManager().request_stop(job.id)  # what the Stop button's POST does
    t.join(60)
    assert not t.is_alive() and result["job"] is job
    assert job.state == "cancelled"
    trials = list(job.snapshot.trials.values())
    # two ran (one per engine), the others waited behind them on their engines: all FAIL now
    assert {tr["state"] for tr in trials} == {"FAIL"} and sum("started" in tr for tr in trials) == 2
    assert all("stopped from the panel" in tr["error"] for tr in trials)
    assert not job.study.get_trials(states=[__import__("optuna").trial.TrialState.RUNNING])
    ours = set(healthy_pool.engine_ids())
    deadline = time.monotonic() + 20
    while healthy_pool.busy_ids() & ours and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not healthy_pool.busy_ids() & ours, (healthy_pool.busy_ids(), ours)


def test_bad_input_is_one_line(healthy_pool):
    fn = define(SLOW)["objective"]
    cases = [
        (dict(objective=fn, sampler="bogus"), "unknown sampler"),
        (dict(objective=fn, pruner="bogus"), "unknown pruner"),
        (dict(objective=42), "not a function"),
        (dict(objective=lambda a, b: 0), "cannot be called with one argument"),
        (dict(objective=fn, storage="nosuch://x"), "not a storage URL"),
        (dict(objective=fn, storage="postgresql://nobody@127.0.0.1:1/none"), "cannot open it"),
        (dict(objective=fn, engines_per_trial=3), "--engines-per-trial 3: this pool has 2 engines"),
    ]
    for kw, message in cases:
        with pytest.raises(api.UsageProblem) as info:
            api.tune(n_trials=2, show=False, **kw)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert api.tune(fn, n_trials=1, pruner="none", show=False).state == "done"


WRITES = """
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    y = trial.suggest_int("y", 0, 9)
    for step in range(5):
        trial.report(x + step, step)   # many writes from every engine at once
    return x + y
"""


def test_four_engines_at_once_on_sqlite(tmp_path):
    api.stop_pool()
    pool = api.start_pool(4)
    try:
        url = f"sqlite:///{tmp_path / 'study.db'}"
        job = api.tune(define(WRITES)["objective"], n_trials=12, storage=url, study="sqlite", pruner="none",
                       show=False)
        states = [t["state"] for t in job.snapshot.trials.values()]
        assert states == ["COMPLETE"] * 12, [t.get("error") for t in job.snapshot.trials.values()]
        assert len({t["engine_id"] for t in job.snapshot.trials.values()}) == 4
        assert len(pool.slots) == 4
    finally:
        api.stop_pool()


def test_several_objectives_with_nsga2(healthy_pool):
    fn = define("def objective(trial):\n    x = trial.suggest_float('x', 0, 1)\n    return x, (x - 1) ** 2")["objective"]
    lines = []
    job = api.tune(fn, n_trials=6, directions=["minimize", "minimize"], sampler="nsga2", pruner="none", seed=0,
                   log=lines.append)
    trials = job.snapshot.trials.values()
    assert [t["state"] for t in trials] == ["COMPLETE"] * 6
    assert all(len(t["values"]) == 2 and t["values"][1] == pytest.approx((t["params"]["x"] - 1) ** 2)
               for t in trials)
    assert "best trials (Pareto front):" in "\n".join(lines)
    bad = define("def objective(trial):\n    return trial.suggest_float('x', 0, 1)")["objective"]
    with pytest.raises(TrialError, match="must return 2 values"):
        api.tune(bad, n_trials=2, directions=["minimize", "maximize"], pruner="none", show=False)


def test_a_grid_ends_when_every_point_was_tried(healthy_pool):
    fn = define("def objective(trial):\n    return trial.suggest_int('a', 0, 9) * trial.suggest_float('b', 0, 1)"
                )["objective"]
    job = api.tune(fn, n_trials=50, sampler="grid", grid={"a": [1, 2, 3], "b": [0.5, 1.0]}, pruner="none",
                   show=False)
    done = [t for t in job.snapshot.trials.values() if t["state"] == "COMPLETE"]
    assert job.state == "done"
    assert {(t["params"]["a"], t["params"]["b"]) for t in done} == \
        {(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0), (3, 0.5), (3, 1.0)}
    # the search stops by itself once every point is tried; trials already asked for when the
    # last point started may repeat one (as Optuna's GridSampler does in any distributed run)
    assert 6 <= len(done) <= 6 + 2 * 2


QUICK = """
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 30:
        raise RuntimeError("trial thirty")
    return x
"""


def test_short_trials_travel_in_batches(healthy_pool):
    job = api.tune(define(QUICK)["objective"], n_trials=60, sampler="random", pruner="none", catch=True,
                   show=False)
    trials = job.snapshot.trials
    assert job.state == "done" and [t["state"] for t in trials.values()].count("COMPLETE") == 60
    assert trials[30]["state"] == "FAIL" and 'raise RuntimeError("trial thirty")' in trials[30]["error"]
    assert "runtime/tune.py" not in trials[30]["error"]
    assert job.messages < len(trials)  # several trials per message once they are known to be short
    assert all(t["state"] in FINAL for t in trials.values())


def test_a_trial_left_running_by_a_dead_kernel_is_failed_on_resume(healthy_pool):
    import optuna

    from trainorch_jupyter import model
    from trainorch_jupyter.model import Event
    from trainorch_jupyter.store import paths
    from trainorch_jupyter.tuning.storage import default_spec, open_storage

    # a run whose kernel was SIGKILLed: the store marked its job lost, its trial is still RUNNING
    api.store().write_events([Event("dead0000beef", 0, model.JOB, None, {"kind": model.TUNE}),
                              Event("dead0000beef", 1, model.STATUS, None, {"state": model.LOST})])
    storage = open_storage(default_spec("orphans", paths.home()))
    study = optuna.create_study(study_name="orphans", storage=storage)
    trial = study.ask()
    storage.set_trial_system_attr(trial._trial_id, "trainorch_job", "dead0000beef")
    alive = study.ask()  # one of a run the store does not know: left alone
    storage.set_trial_system_attr(alive._trial_id, "trainorch_job", "0123456789ab")
    job = api.tune(define(SLOW)["objective"], n_trials=1, study="orphans", pruner="none", show=False)
    trials = job.snapshot.trials
    assert trials[0]["state"] == "FAIL" and "kernel exited" in trials[0]["error"]
    assert trials[1]["state"] == "RUNNING" and trials[2]["state"] == "COMPLETE"
    assert job.orphans == [0]


@pytest.mark.parametrize("sampler,pruner", [("cmaes", "hyperband"), ("tpe", "successive-halving"),
                                            ("random", "median")])
def test_every_sampler_and_pruner_runs_on_the_engines(healthy_pool, sampler, pruner):
    fn = define("""
def objective(trial):
    import optuna
    x = trial.suggest_float("x", -2, 2)
    y = trial.suggest_float("y", -2, 2)
    for step in range(4):
        trial.report((x - 1) ** 2 + y * y + 1 / (step + 1), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return (x - 1) ** 2 + y * y
""")["objective"]
    job = api.tune(fn, n_trials=8, sampler=sampler, pruner=pruner, seed=0, show=False)
    states = [t["state"] for t in job.snapshot.trials.values()]
    assert job.state == "done" and len(states) == 8 and set(states) <= {"COMPLETE", "PRUNED"}


def test_timeout_starts_no_trial_after_the_deadline(healthy_pool):
    fn = define("import time\ndef objective(trial):\n    time.sleep(0.5)\n    return trial.suggest_float('x', 0, 1)"
                )["objective"]
    t0 = time.monotonic()
    job = api.tune(fn, n_trials=100, timeout=1.5, pruner="none", show=False)
    assert time.monotonic() - t0 < 30
    trials = list(job.snapshot.trials.values())
    assert job.state == "done" and 2 <= len(trials) < 20
    assert {t["state"] for t in trials} == {"COMPLETE"}  # the running ones finished; none waited
    assert all(t["started"] - job.snapshot.started <= 1.5 + 1.0 for t in trials)
