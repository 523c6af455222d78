"""%%distribute --framework sklearn on a real 2-engine pool: the cell runs in the kernel,
joblib's tasks on the engines."""

from __future__ import annotations

import os
import threading
import time
import _thread

import numpy as np
import pytest

from trainorch_jupyter import api, model
from trainorch_jupyter.api import DistributedError, LaunchError
from trainorch_jupyter.jobs.kernel_job import RemoteTraceback
from trainorch_jupyter.store import paths

from .helpers import run

SEARCH = """
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV
from tests.jobs.sk_estimators import Recording
X, y = load_breast_cancer(return_X_y=True)
gs = GridSearchCV(Recording(log=LOG, **EXTRA), {{"shrink": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}},
                  cv=3, n_jobs={n_jobs}, refit=False, error_score="raise")
gs.fit(X, y)
scores = list(gs.cv_results_["mean_test_score"])
"""
FITS = 18


def search(tmp_path, **extra):
    log = str(tmp_path / f"pids-{time.monotonic_ns()}")
    ns = {"LOG": log, "EXTRA": extra}
    return ns, log


def local_scores(tmp_path):
    ns, _ = search(tmp_path)
    exec(SEARCH.format(n_jobs=1), ns)
    return ns["scores"]


def pids(log):
    with open(log) as f:
        return [int(line) for line in f.read().split()]


def wait_idle(pool, timeout=20.0):
    """The pool's engines still busy after ``timeout`` (dead engines' old entries do not count)."""
    deadline = time.monotonic() + timeout
    while pool.busy_ids() & set(pool.engine_ids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pool.busy_ids() & set(pool.engine_ids())


def test_grid_search_runs_on_the_engines_with_the_same_result_as_n_jobs_1(healthy_pool, tmp_path):
    ns, log = search(tmp_path)
    job = run(SEARCH.format(n_jobs=-1), ns)
    # the fits ran on both engines, never in this process
    ran = set(pids(log))
    assert ran == {s.pid for s in healthy_pool.slots}, ran
    assert os.getpid() not in ran
    assert len(pids(log)) == FITS
    assert all(n > 0 for n in job.tasks_by_engine.values()) and sum(job.tasks_by_engine.values()) == FITS
    assert np.allclose(ns["scores"], local_scores(tmp_path))
    # a job like the others: kind, framework, state, progress in tasks
    snap = job.snapshot
    assert (snap.kind, snap.framework, snap.state) == (model.DISTRIBUTE, "sklearn", model.DONE)
    assert (snap.step, snap.total) == (FITS, FITS)
    assert api.job_text(job).splitlines()[0] == f"sklearn job on 2 engines (joblib): done, {FITS}/{FITS} tasks"
    assert f"{FITS}/{FITS} tasks" in job.printed  # the final text under the cell


def test_minus_n_uses_the_first_engines_only(healthy_pool, tmp_path):
    ns, log = search(tmp_path)
    job = run(SEARCH.format(n_jobs=-1), ns, n=1)
    assert set(pids(log)) == {healthy_pool.slots[0].pid}  # one engine still gets the work, not the kernel
    assert job.tasks_by_engine == {healthy_pool.slots[0].engine_id: FITS}
    assert api.job_text(job).splitlines()[0] == f"sklearn job on 1 engine (joblib): done, {FITS}/{FITS} tasks"


def test_progress_events_reach_the_run_store(healthy_pool, tmp_path):
    ns, _ = search(tmp_path)
    job = run(SEARCH.format(n_jobs=-1), ns)
    api._flush_store()
    st = api.store()
    stored = st.job(job.id)
    assert (stored["kind"], stored["framework"], stored["state"]) == ("distribute", "sklearn", "done")
    progress = st.metrics(job.id, rank=-1)
    steps = [m["step"] for m in progress]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == FITS
    assert progress[-1]["total"] == FITS
    assert len(progress) > 3  # live, batch by batch, not only at the end
    per_engine = {r["rank"]: r["step"] for r in stored["ranks"]}
    assert sum(per_engine.values()) == FITS and all(v > 0 for v in per_engine.values())
    assert [r["engine_id"] for r in stored["ranks"]] == [s.engine_id for s in healthy_pool.slots]


def test_detected_from_the_imports_and_engine_output_reaches_the_rank_logs(healthy_pool):
    job = run(
        """
        from joblib import Parallel, delayed
        import sklearn
        from tests.jobs.sk_estimators import shout
        squares = Parallel(n_jobs=-1)(delayed(shout)(i) for i in range(8))
        """
    )
    assert job.snapshot.framework == "sklearn"
    out = {s.slot: job.output(s.slot) for s in healthy_pool.slots}
    for slot in healthy_pool.slots:
        assert f"on pid {slot.pid}" in out[slot.slot]  # each engine's prints in its own log
        assert f"on pid {healthy_pool.slots[1 - slot.slot].pid}" not in out[slot.slot]
    assert sum(out[k].count("task ") for k in out) == 8


def test_joblib_inside_a_task_uses_threads_on_its_engine(healthy_pool):
    ns = {}
    run(
        """
        import sklearn
        from joblib import Parallel, delayed
        from tests.jobs.sk_estimators import active_backend
        inner = Parallel(n_jobs=-1)(delayed(active_backend)() for _ in range(4))
        """,
        ns,
    )
    assert ns["inner"] == [("ThreadingBackend", healthy_pool.slots[0].threads)] * 4


def test_a_task_that_raises_fails_the_cell_with_its_error(healthy_pool, tmp_path):
    ns, log = search(tmp_path, fail_on=0.3)
    with pytest.raises(ValueError, match="boom on purpose for shrink=0.3") as e:
        run(SEARCH.format(n_jobs=-1), ns)
    cause = e.value.__cause__
    assert isinstance(cause, RemoteTraceback) and "on engine" in str(cause) and "in fit\nValueError: boom on purpose" in str(cause)
    job = api.jobs()[-1]
    assert job.state == model.FAILED and "ValueError: boom on purpose" in job.snapshot.error
    assert wait_idle(healthy_pool) == set()
    ns, _ = search(tmp_path)
    assert run(SEARCH.format(n_jobs=-1), ns).state == model.DONE  # the pool is fine


def test_an_engine_killed_mid_search_is_retried_and_the_pool_healed(healthy_pool, tmp_path):
    victim = healthy_pool.slots[1]
    old_id = victim.engine_id
    marker = tmp_path / "die"
    marker.write_text(str(victim.pid))
    ns, log = search(tmp_path, die_marker=str(marker))
    job = run(SEARCH.format(n_jobs=-1), ns)
    assert not marker.exists()  # the engine did exit in a fit
    assert np.allclose(ns["scores"], local_scores(tmp_path))  # every fit was kept or rerun
    assert job.state == model.DONE
    assert f"engine {old_id} (rank 1) died while running a task; the task ran again on another engine" in job.printed
    assert "replaced dead engine of rank 1; the pool is ready" in job.printed
    assert job.snapshot.ranks[1].state == model.FAILED and "engine died" in job.snapshot.ranks[1].error
    assert healthy_pool.slots[1].engine_id != old_id
    assert set(healthy_pool.engine_ids()) <= healthy_pool.alive_ids()
    ns, log = search(tmp_path)
    run(SEARCH.format(n_jobs=-1), ns)
    assert set(pids(log)) == {s.pid for s in healthy_pool.slots}  # the new engine works


def test_engines_that_keep_dying_fail_the_cell_with_one_line_naming_them(healthy_pool, tmp_path):
    ids = [s.engine_id for s in healthy_pool.slots]
    with pytest.raises(DistributedError) as e:
        run(
            """
            import os
            from joblib import Parallel, delayed
            import sklearn
            Parallel(n_jobs=-1)(delayed(os._exit)(1) for _ in range(4))
            """
        )
    summary = e.value.summary
    assert "\n" not in summary and summary.startswith("a task's engine died: engine ")
    assert any(f"engine {i} " in summary for i in ids)
    assert "replaced dead engines of ranks 0, 1; the pool is ready" in e.value.details
    assert api.jobs()[-1].state == model.FAILED
    assert len(set(healthy_pool.engine_ids()) & healthy_pool.alive_ids()) == 2
    assert not set(ids) & set(healthy_pool.engine_ids())


LONG = """
from joblib import Parallel, delayed
import sklearn
from tests.jobs.sk_estimators import slow
out = Parallel(n_jobs=-1)(delayed(slow)(i, 0.5) for i in range(40))
"""


def interrupt_when(ready, timeout=60.0):
    """Interrupt the main thread (as the kernel's interrupt does) once ``ready(job)`` holds."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [j for j in api.jobs() if not j.done]
            if running and ready(running[0]):
                _thread.interrupt_main()
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_interrupt_cancels_outstanding_tasks_and_the_engines_end_idle(healthy_pool):
    watcher = interrupt_when(lambda j: j.tasks_done >= 2)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(LONG)
    watcher.join()
    assert time.monotonic() - t0 < 15
    job = api.jobs()[-1]
    assert job.state == model.CANCELLED
    assert 0 < job.tasks_done < 40
    assert wait_idle(healthy_pool, 5) == set()
    assert run(LONG.replace("range(40)", "range(4)")).state == model.DONE


def test_a_task_that_ignores_the_interrupt_is_killed_after_the_grace_period(healthy_pool, tmp_path):
    ids = sorted(s.engine_id for s in healthy_pool.slots)
    lines = []
    watcher = interrupt_when(lambda j: len(os.listdir(tmp_path)) == 2)  # both engines ignore SIGINT now
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(
            """
            import sklearn
            from joblib import Parallel, delayed
            from tests.jobs.sk_estimators import stubborn
            Parallel(n_jobs=-1)(delayed(stubborn)(READY) for _ in range(4))
            """,
            {"READY": str(tmp_path)}, grace=1.0, log=lines.append,
        )
    watcher.join()
    assert time.monotonic() - t0 < 30
    job = api.jobs()[-1]
    assert sorted(job.killed) == ids and job.state == model.CANCELLED
    assert "trainorch: replaced dead engines of ranks 0, 1; the pool is ready" in "\n".join(lines), (job.notices, job.error)
    assert len(set(healthy_pool.engine_ids()) & healthy_pool.alive_ids()) == 2
    assert wait_idle(healthy_pool, 5) == set()


def test_stop_from_the_panel_cancels_the_job(healthy_pool):
    def press_stop():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            running = [j for j in api.jobs() if not j.done]
            if running and running[0].tasks_done >= 2:
                # what the server's Stop handler does: leave a stop request for the job
                open(os.path.join(paths.job_dir(running[0].id), "stop"), "w").close()
                return
            time.sleep(0.05)

    presser = threading.Thread(target=press_stop)
    presser.start()
    with pytest.raises(DistributedError) as e:
        run(LONG)
    presser.join()
    assert e.value.summary == "job stopped from the panel"
    job = api.jobs()[-1]
    assert job.state == model.CANCELLED and job.tasks_done < 40
    assert wait_idle(healthy_pool, 5) == set()


def test_a_cell_without_parallel_work_says_so(healthy_pool):
    ns = {}
    job = run("from sklearn.svm import SVC\nfrom sklearn.datasets import load_iris\n"
              "model = SVC().fit(*load_iris(return_X_y=True))\n", ns)
    assert job.state == model.DONE and "model" in ns  # ran here, in the notebook's namespace
    assert "trainorch: no joblib work reached the engines; use n_jobs=-1" in job.printed
    assert "sklearn job on 2 engines (joblib): done, 0 tasks" in job.printed


@pytest.mark.parametrize("flag", [{"pull": ["gs"]}, {"push": ["x"]}, {"bg": True}, {"backend": "gloo"}])
def test_engine_only_flags_are_a_clear_error(healthy_pool, flag):
    with pytest.raises(LaunchError, match=r"^--\w+ does not apply to --framework sklearn: the cell runs in the notebook"):
        run("import sklearn\n", {"x": 1}, framework="sklearn", **flag)


def test_sklearn_not_installed_gives_the_install_hint(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(LaunchError) as e:
        run("from sklearn.svm import SVC\n")
    assert str(e.value) == 'sklearn is not installed: pip install "trainorch-jupyter[sklearn]"'
