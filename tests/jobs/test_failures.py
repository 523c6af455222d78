"""Every failure ends the cell with a clear error, never a hang, and leaves the pool usable."""

import threading
import time

import pytest

from trainorch_jupyter import api, model
from trainorch_jupyter.api import DistributedError, LaunchError
from trainorch_jupyter.backends import UnknownFramework
from trainorch_jupyter.jobs.source import CellError

from .helpers import run

ALL_REDUCE = "import torch, torch.distributed as dist\nt = torch.ones(1)\ndist.all_reduce(t)\nok = t.item()"


def assert_pool_works(pool):
    ns = {}
    run(ALL_REDUCE, ns, gather=["ok"])
    assert ns["ok"] == [2.0, 2.0]
    assert len(pool.alive_ids() & set(pool.engine_ids())) == 2


def test_rank_raises(healthy_pool):
    with pytest.raises(DistributedError) as e:
        run(
            """
            import torch, torch.distributed as dist
            from trainorch_jupyter.runtime import rank
            print("before the error", rank())
            if rank() == 1:
                raise ValueError("boom on purpose")
            dist.all_reduce(torch.ones(1))
            """
        )
    err = e.value
    slot = healthy_pool.slots[1]
    assert err.summary.startswith(f"rank 1 (engine {slot.engine_id} on {slot.host}) failed: ValueError: boom on purpose")
    assert "raise ValueError" in err.details and "Traceback" in err.details
    assert "before the error 1" in err.details  # its last output lines
    assert "other ranks: rank 0" in err.details  # the peer was stopped, not left waiting
    job = api.jobs()[-1]
    assert job.state == model.FAILED
    assert "before the error 0" in job.output(0) and "before the error 1" in job.output(1)
    assert_pool_works(healthy_pool)


@pytest.mark.parametrize("how", ["os._exit(1)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_rank_dies_hard_while_peer_waits_in_all_reduce(healthy_pool, how):
    old = healthy_pool.slots[1].engine_id
    t0 = time.monotonic()
    with pytest.raises(DistributedError) as e:
        run(
            f"""
            import os, signal, time, torch, torch.distributed as dist
            from trainorch_jupyter.runtime import rank
            if rank() == 1:
                time.sleep(0.5)
                {how}
            dist.all_reduce(torch.ones(1))
            """
        )
    elapsed = time.monotonic() - t0
    assert "rank 1" in e.value.summary and "engine died" in e.value.summary
    assert elapsed < 20, f"took {elapsed:.1f} s to notice a dead rank"
    assert "replaced dead engines of rank 1" in e.value.details
    assert healthy_pool.slots[1].engine_id != old
    # the run store has it too
    api._flush_store()
    stored = api.store().job(api.jobs()[-1].id)
    assert stored["state"] == "failed" and stored["ranks"][1]["state"] == "failed"
    assert "engine died" in stored["ranks"][1]["error"]
    assert_pool_works(healthy_pool)


def test_only_some_ranks_join_the_rendezvous(healthy_pool):
    busy = healthy_pool.client[healthy_pool.slots[1].engine_id].apply_async(time.sleep, 60)
    time.sleep(0.3)
    with pytest.raises(DistributedError) as e:
        run(ALL_REDUCE, timeout=3, grace=1)
    assert "rank 0" in e.value.summary and "rendezvous timed out after 3 s" in e.value.summary
    assert busy.ready()  # the stuck engine was killed, not left running the sleep
    assert_pool_works(healthy_pool)


def test_nccl_without_gpus_fails_before_the_group_forms(healthy_pool):
    with pytest.raises(DistributedError, match="--backend nccl needs CUDA"):
        run(ALL_REDUCE, backend="nccl")
    assert_pool_works(healthy_pool)


def test_cancel_stops_python_ranks_and_ranks_blocked_in_a_collective(healthy_pool):
    job = run(
        """
        import time, torch, torch.distributed as dist
        from trainorch_jupyter.runtime import rank
        if rank() == 0:
            while True:
                time.sleep(0.01)
        dist.all_reduce(torch.ones(1))
        """,
        bg=True,
    )
    time.sleep(1.5)
    assert not job.done
    t0 = time.monotonic()
    job.cancel("stopped by test")
    assert job.done and time.monotonic() - t0 < job.grace + 10
    assert job.state == model.CANCELLED
    assert not job.killed  # interrupting rank 0 was enough: rank 1's all_reduce failed at once
    assert_pool_works(healthy_pool)


def test_a_rank_that_ignores_interrupts_is_killed_and_replaced(healthy_pool):
    old = healthy_pool.slots[0].engine_id
    job = run(
        """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(120)
        """,
        bg=True,
        grace=1,
    )
    time.sleep(1)
    job.cancel()
    assert job.done and job.killed and old in job.killed
    assert healthy_pool.slots[0].engine_id != old
    assert_pool_works(healthy_pool)


def test_same_cell_twice_and_after_restart(healthy_pool):
    for _ in range(2):
        assert_pool_works(healthy_pool)
    api.restart_pool()
    assert_pool_works(healthy_pool)
    assert_pool_works(healthy_pool)


def test_bad_input_is_refused_before_anything_is_shipped(healthy_pool):
    before = len(api.jobs())
    with pytest.raises(CellError, match="syntax error in the cell, line 2"):
        run("x = 1\nif x ==\n")
    with pytest.raises(LaunchError, match="-n 5: this pool has 2 engines"):
        run("x = 1", n=5)
    with pytest.raises(UnknownFramework, match="unknown framework 'caffe'"):
        run("x = 1", framework="caffe")
    with pytest.raises(LaunchError, match="--push missing_name: no such name"):
        run("x = 1", {}, push=["missing_name"])
    with pytest.raises(LaunchError, match="--push lock: a lock cannot be sent"):
        run("x = 1", {"lock": threading.Lock()}, push=["lock"])
    with pytest.raises(LaunchError, match="--backend mpx"):
        run(ALL_REDUCE, backend="mpx")
    with pytest.raises(CellError, match="imports torch and sklearn"):
        run("import torch\nimport sklearn")
    assert len(api.jobs()) == before  # nothing was launched
    assert_pool_works(healthy_pool)


def test_pull_of_a_name_the_cell_did_not_define(healthy_pool):
    with pytest.raises(DistributedError, match="--pull nothing_here: the cell did not define"):
        run("x = 1", pull=["nothing_here"])
    assert_pool_works(healthy_pool)


def test_result_of_a_failed_job_raises_its_error(healthy_pool):
    job = run("raise RuntimeError('nope')", bg=True)
    with pytest.raises(DistributedError, match="RuntimeError: nope"):
        job.result("anything")


def test_values_that_cannot_travel_back_are_named(healthy_pool):
    with pytest.raises(DistributedError, match="--pull g: a generator cannot be sent to the notebook"):
        run("g = (i for i in range(3))", pull=["g"])
    assert_pool_works(healthy_pool)


def test_compile_errors_and_bad_numbers_are_refused_before_shipping(healthy_pool):
    with pytest.raises(CellError, match="top-level await does not run on the engines"):
        run("import asyncio\nawait asyncio.sleep(0)")
    with pytest.raises(CellError, match="'return' outside function"):
        run("return 5")
    for kw, msg in [({"timeout": float("nan")}, "--timeout must be a positive, finite"),
                    ({"timeout": float("inf")}, "--timeout must be a positive, finite"),
                    ({"grace": float("inf")}, "--grace must be a finite"),
                    ({"pull": ["x"], "gather": ["x"]}, "x is both pulled and gathered")]:
        with pytest.raises(LaunchError, match=msg):
            run("import torch\nx = 1", **kw)
