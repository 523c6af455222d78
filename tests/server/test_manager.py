"""The server extension's manager, without tornado."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from trainorch_jupyter.server import gpustats
from trainorch_jupyter.server.manager import BadRequest, NotFound, TrainorchManager
from trainorch_jupyter.store import paths
from trainorch_jupyter.store import pools as poolstore

from .fixtures import STUDY_JOB, VALID_JOB, fake_nvidia_smi_with_stats, study_events, validation_events


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    monkeypatch.setattr(gpustats, "_cache", None)
    return tmp_path / "home"


def test_stop_request_lands_in_the_job_directory(home):
    job_dir = paths.job_dir("abcdef123456")
    m = TrainorchManager()
    assert m.request_stop("abcdef123456", "alice") == {"job": "abcdef123456", "stop_requested": True}
    with open(os.path.join(job_dir, "stop")) as f:
        assert json.load(f)["user"] == "alice"


def test_refuses_bad_ids_and_anything_outside_the_home(home):
    m = TrainorchManager()
    for bad in ("../../etc", "ABC", "abc", "abcdef/../../x", "", "abcdef\x00"):
        with pytest.raises(BadRequest):
            m.request_stop(bad)
        with pytest.raises(BadRequest):
            m.job_log(bad)
    with pytest.raises(NotFound):
        m.request_stop("abcdef000000")  # well formed, but no such job
    assert not (home / "jobs" / "abcdef000000").exists()
    for bad in ("../x", "abc", "ABCDEF12"):
        with pytest.raises(BadRequest):
            m.pool_action(bad, "stop")
    with pytest.raises(BadRequest):
        m.validation("../../etc/passwd")


def test_a_symlink_out_of_the_home_is_not_followed(home, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    job_dir = paths.job_dir("abcdef123456")
    os.symlink(secret, os.path.join(job_dir, "rank-0.log"))
    os.symlink(tmp_path, os.path.join(paths.home(), "jobs", "abcdef654321"))
    m = TrainorchManager()
    with pytest.raises(BadRequest):
        m.job_log("abcdef123456", 0)
    with pytest.raises(BadRequest):
        m.job_log("abcdef654321", 0)


def test_log_pages_follow_a_growing_log(home):
    path = paths.rank_log("abcdef123456", 1)
    with open(path, "w") as f:
        f.write("".join(f"line {i}\n" for i in range(1000)))
    m = TrainorchManager()
    tail = m.job_log("abcdef123456", rank=1, limit=100)
    assert tail["text"].startswith("line ") and tail["text"].endswith("line 999\n")  # starts at a line
    assert tail["eof"] and tail["next_offset"] == tail["size"] == os.path.getsize(path)
    first = m.job_log("abcdef123456", rank="1", offset="0", limit="20")
    assert first["text"] == "line 0\nline 1\nline 2" and not first["eof"]  # 7 bytes a line
    second = m.job_log("abcdef123456", rank=1, offset=first["next_offset"], limit=20)
    assert second["text"].startswith("\nline 3\nline 4")
    with open(path, "a") as f:
        f.write("more\n")
    more = m.job_log("abcdef123456", rank=1, offset=tail["next_offset"])
    assert more["text"] == "more\n" and more["eof"]
    # a rank that printed nothing yet is an empty page, not an error
    assert m.job_log("abcdef123456", rank=0)["text"] == ""
    for kw in ({"rank": "x"}, {"rank": -1}, {"limit": 0}, {"limit": 10**9}, {"offset": "-5"}):
        with pytest.raises(BadRequest):
            m.job_log("abcdef123456", **kw)


def test_a_page_never_splits_a_character(home):
    path = paths.rank_log("abcdef123456", 0)
    with open(path, "w", encoding="utf-8") as f:
        f.write("aé€😀z\n")  # 1 + 2 + 3 + 4 byte characters
    m = TrainorchManager()
    text, offset = "", 0
    while True:
        page = m.job_log("abcdef123456", offset=offset, limit=4)
        assert "\ufffd" not in page["text"]
        text += page["text"]
        offset = page["next_offset"]
        if page["eof"]:
            break
    assert text == "aé€😀z\n"


def test_jobs_metrics_studies_and_validations_come_from_the_store(home):
    from tests.store.test_db import job_events

    m = TrainorchManager()
    m.store.write_events(job_events("aaaaaa111111"))
    m.store.write_events(study_events())
    m.store.write_events(validation_events())
    assert {j["id"] for j in m.jobs()} == {"aaaaaa111111", STUDY_JOB, VALID_JOB}
    assert [j["id"] for j in m.jobs(kind="tune")] == [STUDY_JOB]
    assert all("source" not in j for j in m.jobs())
    job = m.job("aaaaaa111111")
    assert job["state"] == "done" and job["final"] and job["step"] == 3 and job["total"] == 3
    assert [r["metrics"]["loss"] for r in job["ranks"]] == [pytest.approx(1 / 3)] * 2
    assert job["study"] is None and job["result"] is None
    with pytest.raises(NotFound):
        m.job("bbbbbb222222")
    series = m.job_metrics("aaaaaa111111")
    assert [r["rank"] for r in series["ranks"]] == [0, 1]
    assert [p["step"] for p in series["ranks"][0]["points"]] == [1, 2, 3]
    assert [p["step"] for p in m.job_metrics("aaaaaa111111", after=0)["ranks"][0]["points"]] == [2, 3]

    [study] = m.studies()
    assert study["name"] == "digits" and study["counts"] == {"COMPLETE": 1, "PRUNED": 1}
    assert study["best"]["number"] == 0 and study["best"]["value"] == 0.9
    detail = m.study(STUDY_JOB[:8])
    assert [(t["number"], t["state"]) for t in detail["trials"]] == [(0, "COMPLETE"), (1, "PRUNED")]
    assert detail["trials"][0]["intermediate"] == {"0": 0.5, "1": 0.7}
    assert m.job(STUDY_JOB)["trials"][0]["params"] == {"lr": 0.1}
    with pytest.raises(NotFound):
        m.study("abcdef000000")

    [val] = m.validations()
    assert val["name"] == "digits-mlp" and val["passed"] is True and val["metrics"] == {"accuracy": 0.95}
    assert m.validation("digits-mlp")["job_id"] == VALID_JOB
    assert m.job(VALID_JOB)["result"]["bounds"][0]["bound"] == 0.93
    with pytest.raises(NotFound):
        m.validation("nothing-here")


def _record(pool_id, pid, engines, state="running", gpus=()):
    import socket

    from trainorch_jupyter.store.db import _process_start

    return {"id": pool_id, "state": state, "owned": True, "launcher": "local", "started": time.time(),
            "owner": {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "kernel": "k1"},
            "cluster_file": "/x/cluster.json", "engines": engines, "gpus": list(gpus)}


def test_pools_show_engine_states_and_gpu_figures(home, tmp_path, monkeypatch):
    smi = tmp_path / "smi"
    fake_nvidia_smi_with_stats(str(smi))
    monkeypatch.setenv("PATH", str(smi) + os.pathsep + os.environ["PATH"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        gpu0 = {"index": 0, "uuid": "GPU-aaaa-1111", "name": "NVIDIA Fake H100", "memory_mb": 81559, "token": "0"}
        gpu1 = dict(gpu0, index=1, uuid="GPU-bbbb-2222", token="1")
        import socket

        host = socket.gethostname()
        engines = [{"slot": 0, "engine": 0, "host": host, "pid": sleeper.pid, "device": "cuda:0", "gpu": gpu0},
                   {"slot": 1, "engine": 1, "host": host, "pid": dead.pid, "device": "cuda:1", "gpu": gpu1}]
        poolstore.write_record(_record("0a0a0a0a", os.getpid(), engines, gpus=[gpu0, gpu1]))
        poolstore.write_record(_record("0b0b0b0b", dead.pid, [dict(engines[0])]))  # its kernel died
        m = TrainorchManager()
        out = m.pools()
        assert out["gpu_source"] == "nvidia-smi" and [g["index"] for g in out["gpus"]] == [0, 1]
        assert out["gpus"][0]["memory_used_mb"] == 20480 and out["gpus"][0]["utilization_pct"] == 87
        assert out["gpus"][1]["memory_used_mb"] is None and out["gpus"][1]["utilization_pct"] is None
        by_id = {p["id"]: p for p in out["pools"]}
        live, gone = by_id["0a0a0a0a"], by_id["0b0b0b0b"]
        assert [e["state"] for e in live["engines"]] == ["idle", "dead"]
        assert live["engines"][0]["gpu"]["memory_used_mb"] == 20480
        assert live["engines"][0]["gpu"]["utilization_pct"] == 87
        assert gone["state"] == "gone" and gone["engines"][0]["state"] == "stopped"
        with pytest.raises(BadRequest):
            m.pool_action("0b0b0b0b", "stop")  # nobody to ask
        with pytest.raises(NotFound):
            m.pool_action("0c0c0c0c", "stop")
        with pytest.raises(BadRequest):
            m.pool_action("0a0a0a0a", "restart", engine=7)
        with pytest.raises(BadRequest):
            m.pool_action("0a0a0a0a", "explode")
        ask = m.pool_action("0a0a0a0a", "restart", engine="1", user="alice")
        assert ask["engine"] == 1 and m.pool_response("0a0a0a0a", ask["request"]) == {
            "id": ask["request"], "pending": True}
        [req] = poolstore.take_requests("0a0a0a0a")
        assert req["action"] == "restart" and req["args"] == {"engine": 1} and req["user"] == "alice"
        assert poolstore.take_requests("0a0a0a0a") == []  # taken once
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_busy_engine_names_its_job(home, monkeypatch):
    from tests.store.test_db import job_events

    monkeypatch.setenv("PATH", "/nonexistent")
    m = TrainorchManager()
    evs = job_events("cccccc333333", state="running")
    evs[0] = evs[0].__class__(evs[0].job_id, 0, evs[0].kind, None, dict(
        evs[0].data, ranks=[{"rank": 0, "engine_id": 4, "device": "cpu"}, {"rank": 1, "engine_id": 5, "device": "cpu"}]))
    m.store.write_events(evs)
    engines = [{"slot": k, "engine": 4 + k, "host": "elsewhere", "pid": 1, "device": "cpu", "gpu": None}
               for k in range(3)]
    engines[2]["engine"] = 9
    poolstore.write_record(_record("0d0d0d0d", os.getpid(), engines))
    [pool] = m.pools()["pools"]
    assert [(e["state"], e.get("job")) for e in pool["engines"]] == [
        ("busy", "cccccc333333"), ("busy", "cccccc333333"), ("idle", None)]
    assert pool["jobs"] == ["cccccc333333"] and m.pools()["gpu_source"] == "none"
    [listed] = m.jobs()
    assert (listed["step"], listed["total"]) == (3, 3)  # running jobs carry their progress


def test_the_watcher_runs_requests_and_answers(home):
    done = []
    w = poolstore.RequestWatcher("0e0e0e0e", {"restart": lambda a: done.append(a) or {"restarted": a["engine"]},
                                             "stop": lambda a: 1 / 0}, interval=0.02)
    try:
        poolstore.pool_dir("0e0e0e0e")
        ok = poolstore.request("0e0e0e0e", "restart", {"engine": 3})
        bad = poolstore.request("0e0e0e0e", "stop")
        deadline = time.monotonic() + 10
        while poolstore.read_response("0e0e0e0e", bad) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert poolstore.read_response("0e0e0e0e", ok)["restarted"] == 3 and done == [{"engine": 3}]
        err = poolstore.read_response("0e0e0e0e", bad)
        assert err["ok"] is False and "ZeroDivisionError" in err["error"]
    finally:
        w.stop()


def test_the_server_imports_no_framework(tmp_path):
    """The server's environment may lack torch/TF/Optuna: using every endpoint imports none of them."""
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["TRAINORCH_HOME"] = {str(tmp_path / "home")!r}
        from trainorch_jupyter.server import handlers
        from trainorch_jupyter.server.manager import TrainorchManager
        from tests.server.fixtures import study_events, validation_events
        m = TrainorchManager()
        m.store.write_events(study_events()); m.store.write_events(validation_events())
        m.pools(); m.jobs(); m.studies(); m.validations(); m.study("5eed00000001"); m.job("5eed00000001")
        heavy = sorted(n for n in ("torch", "tensorflow", "optuna", "keras", "jax", "ipyparallel", "sklearn")
                       if n in sys.modules)
        print("HEAVY", heavy)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_records_of_stopped_or_orphaned_pools_are_pruned(home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for k in range(poolstore.KEEP_STOPPED + 5):
        rec = _record(f"{k:08x}", dead.pid if k % 2 else os.getpid(), [], state="running" if k % 2 else "stopped")
        rec["started"] = k
        poolstore.write_record(rec)
    live = _record("ffffffff", os.getpid(), [])
    poolstore.write_record(live)
    kept = poolstore.read_records()
    assert len(kept) == poolstore.KEEP_STOPPED + 1 and kept[0]["id"] == "ffffffff"
    assert kept[-1]["id"] == f"{5:08x}"  # the 5 oldest of 25 finished ones went
