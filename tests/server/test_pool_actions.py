"""A real pool publishes its record, and the server's requests restart and stop it (real engines)."""

from __future__ import annotations

import os
import time

from trainorch_jupyter import api
from trainorch_jupyter.server.manager import TrainorchManager
from trainorch_jupyter.store import pools as poolstore


def _answer(m: TrainorchManager, pool_id: str, rid: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = m.pool_response(pool_id, rid)
        if not got.get("pending"):
            return got
        time.sleep(0.1)
    raise AssertionError(f"no answer to {rid} within {timeout} s")


def _mine(m: TrainorchManager, pool_id: str) -> dict:
    return next(p for p in m.pools()["pools"] if p["id"] == pool_id)


def test_restart_an_engine_then_stop_the_pool_with_a_job_running(healthy_pool):
    pool = healthy_pool
    m = TrainorchManager()
    rec = _mine(m, pool.id)
    assert rec["state"] == "running" and rec["owner"]["pid"] == os.getpid()
    assert [e["engine"] for e in rec["engines"]] == pool.engine_ids()
    assert [e["state"] for e in rec["engines"]] == ["idle", "idle"]
    assert rec["cluster_file"] and os.path.exists(rec["cluster_file"])

    old = pool.engine_ids()
    ask = m.pool_action(pool.id, "restart", engine=old[1], user="tester")
    got = _answer(m, pool.id, ask["request"])
    assert got["ok"] and got["restarted"] == old[1], got
    new = pool.engine_ids()
    assert new[0] == old[0] and new[1] != old[1]
    assert [e["engine"] for e in _mine(m, pool.id)["engines"]] == new  # the record follows

    # an engine dies and a heal replaces it: the record catches up within a few seconds
    pool.kill([new[0]])
    assert [e["state"] for e in _mine(m, pool.id)["engines"]][0] == "dead"  # its pid is gone
    assert pool.heal() == [0]
    healed = pool.engine_ids()
    deadline = time.monotonic() + 15
    while [e["engine"] for e in _mine(m, pool.id)["engines"]] != healed and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [e["engine"] for e in _mine(m, pool.id)["engines"]] == healed
    assert [e["state"] for e in _mine(m, pool.id)["engines"]] == ["idle", "idle"]

    job = api.distribute("import time\nfor i in range(600):\n    time.sleep(0.1)\n", framework="none",
                         bg=True, show=False)
    deadline = time.monotonic() + 30
    while "busy" not in [e["state"] for e in _mine(m, pool.id)["engines"]] and time.monotonic() < deadline:
        time.sleep(0.2)  # the job's rows reach the store a moment after it starts
    assert _mine(m, pool.id)["jobs"] == [job.id]
    ask = m.pool_action(pool.id, "stop")
    got = _answer(m, pool.id, ask["request"])
    assert got["ok"] and got["stopped"] == pool.id
    assert job.done and job.snapshot.state == "cancelled"  # the usual cancel path ran first
    assert pool.closed and api.current_pool() is None
    rec = _mine(m, pool.id)
    assert rec["state"] == "stopped" and {e["state"] for e in rec["engines"]} == {"stopped"}
    assert poolstore.take_requests(pool.id) == []
