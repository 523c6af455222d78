"""Stop pool and Restart from the sidebar while a notebook cell blocks in a real kernel."""

from __future__ import annotations

import threading
import time

import pytest

from tests.kernel_client import Kernel
from trainorch_jupyter.server.manager import TrainorchManager

CELL = (
    "%%distribute\n"
    "import time\n"
    "for i in range(1200):\n"
    "    time.sleep(0.05)\n"
)


@pytest.fixture
def kernel():
    k = Kernel()
    k.ok("%load_ext trainorch_jupyter")
    yield k
    k.run("%cluster stop")
    k.shutdown()


def _pool_of(m: TrainorchManager, pid: int, state: str = "running") -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mine = [p for p in m.pools()["pools"] if p["owner"]["pid"] == pid and p["state"] == state]
        if mine:
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no {state} pool of kernel {pid}")


def _answer(m: TrainorchManager, pool_id: str, rid: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = m.pool_response(pool_id, rid)
        if not got.get("pending"):
            return got
        time.sleep(0.1)
    raise AssertionError(f"no answer to {rid}")


def _run_in_thread(k: Kernel, code: str) -> tuple[threading.Thread, dict]:
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("res", k.run(code, timeout=180)), daemon=True)
    t.start()
    return t, out


def test_restart_then_stop_the_pool_of_a_busy_kernel(kernel):
    m = TrainorchManager()
    pid = kernel.pid()
    kernel.ok("%cluster start -n 2")
    pool = _pool_of(m, pid)

    # restart every engine while a blocking cell runs: the cell ends cancelled, the pool is usable
    t, out = _run_in_thread(kernel, CELL)
    deadline = time.monotonic() + 60
    while "busy" not in [e["state"] for e in _pool_of(m, pid)["engines"]] and time.monotonic() < deadline:
        time.sleep(0.2)
    before = [e["engine"] for e in _pool_of(m, pid)["engines"]]
    got = _answer(m, pool["id"], m.pool_action(pool["id"], "restart")["request"])
    assert got["ok"] and got["restarted"] == "all", got
    t.join(60)
    assert not t.is_alive(), "the cell did not end after the restart"
    res = out["res"]
    assert "cancelled" in res.text + res.stdout + res.stderr + res.evalue, (res.text, res.stderr, res.evalue)
    after = [e["engine"] for e in _pool_of(m, pid)["engines"]]
    assert len(after) == 2 and not set(after) & set(before)
    # (output is matched to its cell by message id; kernel_client's reply matching is not, so no .ok() here)
    assert "[rank 1] ok" in kernel.run("%%distribute\nprint('ok')").stdout

    # stop the pool while a blocking cell runs: the cell ends, the kernel still answers
    t, out = _run_in_thread(kernel, CELL)
    deadline = time.monotonic() + 60
    while "busy" not in [e["state"] for e in _pool_of(m, pid)["engines"]] and time.monotonic() < deadline:
        time.sleep(0.2)
    got = _answer(m, pool["id"], m.pool_action(pool["id"], "stop")["request"])
    assert got["ok"] and got["stopped"] == pool["id"], got
    t.join(60)
    assert not t.is_alive(), "the cell did not end after the pool stopped"
    assert _pool_of(m, pid, state="stopped")["id"] == pool["id"]
    assert "No pool is running" in kernel.run("%cluster status").stdout
