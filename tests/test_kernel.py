"""End to end in a real IPython kernel: the magics as a notebook runs them."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time

import psutil
import pytest

from trainorch_jupyter.pool.watchdog import cluster_processes

from .kernel_client import Kernel

FRAMEWORKS = "import sys; print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))"


def held_leases() -> list[str]:
    """Lease files whose lock somebody holds right now."""
    directory = os.environ["TRAINORCH_LEASE_DIR"]
    held = []
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            held.append(name)
        finally:
            os.close(fd)
    return held


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    yield k
    k.run("%cluster stop")
    k.shutdown()


def test_loading_the_extension_starts_nothing_and_imports_no_framework(kernel):
    kernel.ok("%load_ext trainorch_jupyter")
    assert kernel.ok(FRAMEWORKS).stdout.strip() == "[]"
    assert "No pool is running" in kernel.ok("%cluster status").stdout
    assert held_leases() == []  # no GPU was claimed


def test_first_distribute_starts_the_default_pool_and_keeps_the_kernel_light(kernel):
    kernel.ok("def triple(x):\n    return 3 * x")
    res = kernel.ok(
        "%%distribute --push triple --gather total\n"
        "import torch, torch.distributed as dist\n"
        "from trainorch_jupyter.runtime import rank\n"
        "t = torch.tensor([float(triple(rank() + 1))])\n"
        "dist.all_reduce(t)\n"
        "total = t.item()\n"
        "print('sum', total)"
    )
    assert "Started the default pool: 2 CPU engines" in res.stdout
    assert "[rank 0] sum 9.0" in res.stdout and "[rank 1] sum 9.0" in res.stdout
    assert "torch job on 2 ranks (gloo): done" in res.text
    assert kernel.ok("print(total)").stdout.strip() == "[9.0, 9.0]"
    # no framework reached the kernel, so CUDA cannot have been initialised here
    assert kernel.ok(FRAMEWORKS).stdout.strip() == "[]"
    status = kernel.ok("%cluster status").stdout
    assert "2 CPU engines" in status and status.count(" idle") == 2
    listing = kernel.ok("%runs -n 1").stdout.splitlines()
    assert listing[0].split()[:3] == ["id", "cell", "framework"] and " done " in listing[1]


def test_bad_flags_are_one_line_usage_errors(kernel):
    cases = {
        "%%distribute --bogus\nx = 1": "unrecognized arguments: --bogus",
        "%%distribute -n 7\nx = 1": "-n 7: this pool has 2 engines",
        "%%distribute --framework caffe\nx = 1": "unknown framework 'caffe'",
        "%%distribute --push nope\nx = 1": "--push nope: no such name",
        "%%distribute\nfor x in\n": "syntax error in the cell, line 1",
        "%cluster frobnicate": "unknown command",
        "%cluster start --bogus": "unknown option --bogus",
        "%cluster restart --engine 99": "no engine 99 in this pool",
        "%runs show nosuch": "no job 'nosuch' in the run store",
        "%runs frob": "usage: %runs",
        "%cluster start -n 2": "a pool is already running",
    }
    for code, expected in cases.items():
        res = kernel.run(code)
        assert res.status == "error" and res.ename == "UsageError", (code, res.ename, res.evalue)
        assert expected in res.evalue and "\n" not in res.evalue.strip(), (code, res.evalue)
    # the pool is unharmed
    assert kernel.ok("%cluster status").stdout.count(" idle") == 2


@pytest.mark.parametrize("where", ["python", "all_reduce"])
def test_interrupt_stops_the_engines_and_the_next_cell_runs(kernel, where):
    rank1 = "time.sleep(600)" if where == "python" else "dist.all_reduce(torch.ones(1))"
    code = (
        "%%distribute\n"
        "import time, torch, torch.distributed as dist\n"
        "from trainorch_jupyter.runtime import rank\n"
        "print('started', flush=True)\n"
        "if rank() == 0:\n"
        "    time.sleep(600)\n"
        f"{rank1}\n"
    )
    timer = threading.Timer(4.0, kernel.km.interrupt_kernel)
    t0 = time.monotonic()
    res = kernel.run(code, timeout=60, on_start=timer.start)
    ended = time.monotonic()
    assert res.status == "error" and res.ename == "KeyboardInterrupt"
    assert ended - t0 < 4.0 + 5.0 + 10, "the cell did not end within the grace period"
    t1 = time.monotonic()
    res = kernel.ok("%%distribute --gather ok\nimport torch, torch.distributed as dist\nt = torch.ones(1)\ndist.all_reduce(t)\nok = t.item()")
    assert kernel.ok("print(ok)").stdout.strip() == "[2.0, 2.0]"
    assert time.monotonic() - t1 < 30


def test_two_quick_interrupts_end_the_cell_cleanly(kernel):
    # ranks that ignore SIGINT: the cancel takes the grace period, so the second
    # interrupt lands while the first is still being handled
    code = "%%distribute --grace 2\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)\n"

    def twice():
        kernel.km.interrupt_kernel()
        time.sleep(0.3)
        kernel.km.interrupt_kernel()

    timer = threading.Timer(3.0, twice)
    res = kernel.run(code, timeout=60, on_start=timer.start)
    assert res.status == "error" and res.ename == "KeyboardInterrupt"
    assert "During handling" not in res.stderr + res.stdout
    kernel.ok("%%distribute --gather r\nfrom trainorch_jupyter.runtime import rank\nr = rank()")
    assert kernel.ok("print(r)").stdout.strip() == "[0, 1]"


def test_background_job_panel_keeps_updating_while_other_cells_run(kernel):
    kernel.ok(
        "%%distribute --bg\n"
        "import time\n"
        "from trainorch_jupyter.runtime import report, rank\n"
        "for i in range(60):\n"
        "    report(step=i + 1, total=60, loss=1.0 / (i + 1))\n"
        "    print('step', i, flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    res = kernel.ok("import time\ntime.sleep(1.5)\nx = 1")
    # ipykernel sends a thread's comm messages under whatever cell is running now
    updates = [m for m in res.others + res.raw if m["msg_type"] == "comm_msg"
               and m["content"].get("data", {}).get("method") == "update"]
    assert len(updates) >= 5, "the panel did not update while another cell ran"
    kernel.ok("_job.wait()\n_job.panel.thread.join(5)")  # the panel's last refresh follows the job's end
    state = json.loads(kernel.ok("print(_job.panel.panel.state_json())").stdout)
    assert set(state["rows"]) == {"0", "1"}
    for row in state["rows"].values():
        assert row["bar"] == 1.0 and row["step"] == "60/60" and "loss=0.01667" in row["metrics"], state
        assert "done" in row["state"]
    assert "step 59" in state["logs"][0] and "step 59" in state["logs"][1]
    assert state["stop"] == ""  # no Stop button once the job has ended
    assert "done" in state["header"]


def test_panel_of_a_quick_job_misses_nothing(kernel):
    kernel.ok(
        "%%distribute\n"
        "from trainorch_jupyter.runtime import report\n"
        "print('first line', flush=True)\n"
        "report(step=1, total=2, loss=1.0)\n"
        "report(step=2, total=2, loss=0.5)\n"
    )
    state = json.loads(kernel.ok("print(_job.panel.panel.state_json())").stdout)
    assert "first line" in state["logs"][0] and "first line" in state["logs"][1]
    points = kernel.ok("print(len(_job.panel.panel.history['loss'][0]))").stdout.strip()
    assert points == "2"  # the report sent before the panel subscribed is on the chart


def test_torch_and_cuda_probing_in_the_kernel_do_not_break_launch(kernel):
    kernel.ok("import torch\ntorch.cuda.is_available()\nx = torch.ones(3) * 2")
    res = kernel.ok("%%distribute --gather r\nfrom trainorch_jupyter.runtime import rank\nr = rank()")
    assert kernel.ok("print(r)").stdout.strip() == "[0, 1]"


def _cluster_pids(kernel) -> tuple[str, list[int]]:
    out = kernel.ok(
        "import json\nfrom trainorch_jupyter import api\n"
        "p = api.current_pool()\n"
        "print(json.dumps([p.cluster.cluster_id, [s.pid for s in p.slots]]))"
    ).stdout
    cid, pids = json.loads(out.strip().splitlines()[-1])
    return cid, pids


def test_a_pool_dies_with_its_kernel_after_sigkill():
    k = Kernel()
    try:
        k.ok("%load_ext trainorch_jupyter")
        k.ok("%cluster start -n 2")
        cid, engine_pids = _cluster_pids(k)
        procs = cluster_processes(cid)
        assert len(procs) >= 3  # controller, engines (and their nannies)
        assert set(engine_pids) <= {p.pid for p in procs}
        res = k.ok(
            "%%distribute --bg\n"
            "import time\n"
            "from trainorch_jupyter.runtime import report\n"
            "for i in range(100000):\n"
            "    report(step=i, loss=1.0 / (i + 1))\n"
            "    print('tick', i, flush=True)\n"
            "    time.sleep(0.01)\n"
        )
        job_id = k.ok("print(_job.id)").stdout.strip()
        time.sleep(3)
        killed_at = time.time()
        os.kill(k.km.provisioner.pid if hasattr(k.km, "provisioner") else k.km.kernel.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            time.sleep(0.5)
        left = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"still running 30 s after the kernel was killed: {left}"
        # the run store kept what happened up to about a second before the kill
        from trainorch_jupyter.store.db import RunStore
        from trainorch_jupyter.store.location import database_path

        store = RunStore(database_path()[0])
        assert job_id in store.lost
        job = store.job(job_id)
        assert job["state"] == "lost" and {r["state"] for r in job["ranks"]} == {"lost"}
        last = max(m["t"] for m in store.metrics(job_id, rank=0))
        assert killed_at - last < 1.5, f"lost {killed_at - last:.2f} s of metrics"
        log = os.path.join(os.environ["TRAINORCH_HOME"], "jobs", job_id, "rank-0.log")
        assert open(log).read().count("tick") > 100
    finally:
        try:
            k.km.shutdown_kernel(now=True)
        except Exception:
            pass


def test_four_ranks_printing_fast_stay_under_the_iopub_rate_limit():
    k = Kernel()
    try:
        k.ok("%load_ext trainorch_jupyter")
        k.ok("%cluster start -n 4")
        res = k.ok(
            "%%distribute\n"
            "from trainorch_jupyter.runtime import rank\n"
            "for i in range(10_000):\n"
            "    print(f'rank {rank()} line {i}')\n",
            timeout=300,
        )
        times = [t for t, kind, _ in res.messages]
        sizes = [(t, size) for t, kind, size in res.messages]
        # Jupyter server defaults: 1000 messages/s, 1 MB/s averaged over 3 s windows
        for t0 in times:
            assert sum(1 for t in times if t0 <= t < t0 + 1.0) < 1000
            assert sum(s for t, s in sizes if t0 <= t < t0 + 3.0) < 3_000_000
        assert "more lines not shown here" in res.stdout  # the view keeps a bounded tail
        logs = k.ok(
            "from trainorch_jupyter import api\n"
            "job = api.jobs()[-1]\n"
            "print([job.output(r).count('\\n') for r in range(4)])"
        ).stdout.strip()
        assert logs == "[10000, 10000, 10000, 10000]"
        k.ok("%cluster stop")
    finally:
        k.shutdown()
