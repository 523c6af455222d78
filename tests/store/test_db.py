"""The run store: schema and migrations, lost jobs, concurrent writers, NFS placement."""

import os
import subprocess
import sys
import textwrap

import pytest

from trainorch_jupyter import model
from trainorch_jupyter.model import Event
from trainorch_jupyter.store import location
from trainorch_jupyter.store.db import MIGRATIONS, RunStore, StoreWriter


def job_events(job_id, state=model.DONE, n_metrics=3):
    evs = [
        Event(job_id, 0, model.JOB, None, {"framework": "torch", "world_size": 2, "backend": "gloo",
                                          "source": "x = 1", "ranks": [{"rank": 0, "device": "cpu"},
                                                                      {"rank": 1, "device": "cpu"}]}),
        Event(job_id, 1, model.STATUS, None, {"state": model.RUNNING}),
    ]
    seq = 2
    for i in range(n_metrics):
        for r in (0, 1):
            evs.append(Event(job_id, seq, model.METRIC, r, {"seq": i, "step": i + 1, "total": n_metrics,
                                                           "metrics": {"loss": 1.0 / (i + 1)}}))
            seq += 1
    if state != model.RUNNING:
        evs.append(Event(job_id, seq, model.STATUS, 1, {"state": model.FAILED if state == model.FAILED else model.DONE,
                                                       "error": "ValueError: x" if state == model.FAILED else None}))
        evs.append(Event(job_id, seq + 1, model.STATUS, None, {"state": state}))
    return evs


def test_schema_is_versioned_and_migrations_apply_once(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    st = RunStore(path)
    assert st.version() == MIGRATIONS[-1][0]
    extra = MIGRATIONS + [(99, "CREATE TABLE later_feature (id TEXT PRIMARY KEY)")]
    assert st.migrate(extra) == 99
    assert st.migrate(extra) == 99  # idempotent
    st2 = RunStore(path)  # reopening does not re-run anything
    assert st2.version() == 99
    assert st2.connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_success_and_failure_are_recorded(tmp_path):
    st = RunStore(str(tmp_path / "runs.sqlite"))
    st.write_events(job_events("ok1"))
    st.write_events(job_events("bad1", state=model.FAILED))
    ok, bad = st.job("ok1"), st.job("bad")
    assert ok["state"] == "done" and [r["state"] for r in ok["ranks"]] == ["done", "done"]
    assert ok["ranks"][0]["step"] == 3 and ok["ranks"][0]["metrics"] == {"loss": pytest.approx(1 / 3)}
    assert bad["state"] == "failed" and bad["ranks"][1]["error"] == "ValueError: x"
    assert len(st.metrics("ok1")) == 6 and [m["step"] for m in st.metrics("ok1", rank=0)] == [1, 2, 3]
    assert [j["id"] for j in st.jobs()] == ["bad1", "ok1"]
    assert [e["kind"] for e in st.events("ok1")][:2] == ["job", "status"]


def test_a_job_left_running_by_a_killed_kernel_is_marked_lost(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    code = textwrap.dedent(
        f"""
        import os, signal
        from trainorch_jupyter.store.db import RunStore
        from tests.store.test_db import job_events
        from trainorch_jupyter import model
        st = RunStore({path!r})
        st.write_events(job_events("dying", state=model.RUNNING))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == -9
    st = RunStore(path)
    assert st.lost == ["dying"]
    job = st.job("dying")
    assert job["state"] == "lost" and {r["state"] for r in job["ranks"]} == {"lost"}
    assert len(st.metrics("dying")) == 6  # what was written before the kill is kept


def test_two_kernels_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    RunStore(path)
    code = textwrap.dedent(
        """
        import sys
        from trainorch_jupyter.store.db import RunStore, StoreWriter
        from tests.store.test_db import job_events
        st = RunStore(sys.argv[1])
        w = StoreWriter(st, interval=0.01)
        for j in range(40):
            for ev in job_events(f"{sys.argv[2]}-{j}", n_metrics=50):
                w(ev)
        w.close()
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    procs = [subprocess.Popen([sys.executable, "-c", code, path, name], cwd=root, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert not any("locked" in e for e in errs), errs
    st = RunStore(path)
    con = st.connect()
    assert con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 80
    assert con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 80 * 100
    assert con.execute("SELECT COUNT(*) FROM jobs WHERE state='done'").fetchone()[0] == 80


def test_writer_flushes_within_its_interval(tmp_path):
    st = RunStore(str(tmp_path / "runs.sqlite"))
    w = StoreWriter(st, interval=0.05)
    for ev in job_events("w1"):
        w(ev)
    w.flush()
    assert st.job("w1")["state"] == "done"
    w.close()


def test_network_home_puts_the_database_on_a_node_local_path(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"rootfs / ext4 rw 0 0\nserver:/export {home} nfs4 rw 0 0\n")
    monkeypatch.setenv("TRAINORCH_HOME", str(home))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    assert location.filesystem_type(str(home / "x"), str(mounts)) == "nfs4"
    path, note = location.database_path(str(mounts))
    assert not path.startswith(str(home)) and path.endswith("runs.sqlite")
    assert "network filesystem (nfs4)" in note and "TRAINORCH_DB" in note
    mounts.write_text(f"rootfs / ext4 rw 0 0\n")
    path, note = location.database_path(str(mounts))
    assert path == str(home / "runs.sqlite") and note is None
    monkeypatch.setenv("TRAINORCH_DB", str(tmp_path / "elsewhere" / "db.sqlite"))
    assert location.database_path(str(mounts))[0] == str(tmp_path / "elsewhere" / "db.sqlite")


def test_trials_are_mirrored_and_merged(tmp_path):
    """A tune job's trial updates (partial, in order) become one row per trial; the best is derived."""
    st = RunStore(str(tmp_path / "runs.sqlite"))
    study = {"name": "digits", "storage": "journal:///x", "directions": ["maximize"], "sampler": "tpe",
             "pruner": "median", "n_trials": 3}
    evs = [Event("tune1", 0, model.JOB, None, {"kind": model.TUNE, "world_size": 2, "study": study}),
           Event("tune1", 1, model.STATUS, None, {"state": model.RUNNING})]
    updates = [
        {"number": 0, "study": "digits", "state": "RUNNING", "params": {"lr": 0.1}, "engine_id": 0,
         "device": "cpu", "started": 1.0},
        {"number": 1, "study": "digits", "state": "RUNNING", "params": {"lr": 0.01}, "engine_id": 1},
        {"number": 0, "intermediate": {0: 0.5}},
        {"number": 0, "intermediate": {1: 0.7}},
        {"number": 1, "state": "FAIL", "error": "ValueError: nan", "ended": 2.0},
        {"number": 0, "state": "COMPLETE", "value": 0.9, "ended": 3.0},
        {"number": 2, "study": "digits", "state": "PRUNED", "params": {"lr": 1.0}, "intermediate": {0: 0.1}},
    ]
    evs += [Event("tune1", 2 + i, model.TRIAL_UPDATE, None, u) for i, u in enumerate(updates)]
    snap = model.reduce(evs)
    assert snap.study["name"] == "digits" and snap.trials[0]["intermediate"] == {0: 0.5, 1: 0.7}
    st.write_events(evs[:5])
    st.write_events(evs[5:])
    trials = st.trials("tune1")
    assert [(t["number"], t["state"]) for t in trials] == [(0, "COMPLETE"), (1, "FAIL"), (2, "PRUNED")]
    assert trials[0]["params"] == {"lr": 0.1} and trials[0]["intermediate"] == {"0": 0.5, "1": 0.7}
    assert trials[0]["engine_id"] == 0 and trials[0]["started"] == 1.0 and trials[0]["value"] == 0.9
    assert trials[1]["error"] == "ValueError: nan" and trials[1]["params"] == {"lr": 0.01}
    [row] = st.studies()
    assert row["name"] == "digits" and row["directions"] == ["maximize"] and row["job_state"] == "running"
    assert row["counts"] == {"COMPLETE": 1, "FAIL": 1, "PRUNED": 1} and row["best"]["number"] == 0
    assert st.studies(name="other") == []


def test_validations_are_found_by_name_or_id(tmp_path):
    st = RunStore(str(tmp_path / "runs.sqlite"))
    for i, (job, acc) in enumerate([("val1aa", 0.95), ("val2bb", 0.91)]):
        st.write_events([
            Event(job, 0, model.JOB, None, {"kind": model.VALIDATE}),
            Event(job, 1, model.VALIDATION, None, {
                "name": "digits-mlp", "model": "MLP", "task": "classification", "n_samples": 360,
                "metrics": {"accuracy": acc}, "passed": acc > 0.93,
                "bounds": [{"metric": "accuracy", "op": ">=", "bound": 0.93, "value": acc, "passed": acc > 0.93}],
            }),
            Event(job, 2, model.STATUS, None, {"state": model.DONE}),
        ])
    latest = st.validation("digits-mlp")
    assert latest["job_id"] == "val2bb" and latest["passed"] is False
    assert latest["bounds"][0]["bound"] == 0.93 and latest["metrics"] == {"accuracy": 0.91}
    assert st.validation("val1")["metrics"] == {"accuracy": 0.95}
    assert st.validation("nothing") is None
    assert [v["job_id"] for v in st.validations()] == ["val2bb", "val1aa"]


def test_a_store_from_an_older_version_is_migrated_keeping_its_jobs(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    old = RunStore.__new__(RunStore)  # a store as the first release wrote it: schema version 1 only
    old.path, old._local, old._lock = path, __import__("threading").local(), __import__("threading").Lock()
    old.host, old.pid, old.pid_start = "h", os.getpid(), None
    with old._write() as con:
        con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    assert old.migrate(MIGRATIONS[:1]) == 1
    old.write_events(job_events("old1"))
    st = RunStore(path)
    assert st.version() == MIGRATIONS[-1][0] >= 3
    assert st.job("old1")["state"] == "done" and st.trials("old1") == [] and st.validations() == []


def test_runs_table_shows_a_studys_best_and_a_validations_verdict(tmp_path):
    from trainorch_jupyter.views.runs import jobs_table

    st = RunStore(str(tmp_path / "runs.sqlite"))
    st.write_events(job_events("dist01"))
    study = {"name": "s", "directions": ["maximize"], "n_trials": 2}
    st.write_events([
        Event("tune01", 0, model.JOB, None, {"kind": model.TUNE, "study": study, "source": "%tune f"}),
        Event("tune01", 1, model.TRIAL_UPDATE, None, {"number": 0, "state": "COMPLETE", "value": 0.5}),
        Event("tune01", 2, model.TRIAL_UPDATE, None, {"number": 1, "state": "COMPLETE", "value": 0.75}),
        Event("tune01", 3, model.STATUS, None, {"state": model.DONE}),
    ])
    for job, passed in (("valok1", True), ("valbad", False)):
        st.write_events([
            Event(job, 0, model.JOB, None, {"kind": model.VALIDATE, "framework": "sklearn", "source": "%validate m"}),
            Event(job, 1, model.VALIDATION, None, {"metrics": {"accuracy": 0.9, "confusion_matrix": [[1]]},
                                                   "passed": passed}),
            Event(job, 2, model.STATUS, None, {"state": model.DONE}),
        ])
    jobs = st.jobs()
    final, verdicts = st.final_figures(jobs)
    assert final["tune01"] == {"best": 0.75, "trial": 1} and final["dist01"] == {"loss": pytest.approx(1 / 3)}
    assert final["valbad"] == {"accuracy": 0.9} and verdicts == {"valok1": "passed", "valbad": "gate failed"}
    rows = {line.split()[0]: line for line in jobs_table(jobs, final, verdicts).splitlines()[1:]}
    assert "validate:sklearn" in rows["valbad"] and " gate failed " in rows["valbad"]
    assert " passed " in rows["valok1"] and " tune " in rows["tune01"] and "best=0.75" in rows["tune01"]
    assert " torch " in rows["dist01"] and " done " in rows["dist01"]
