"""Real ipyparallel pools: pinning, leases, restart, dying with the owner."""

import os

import pytest

from trainorch_jupyter.pool.engine_pool import EnginePool, PoolError
from trainorch_jupyter.pool.leases import GpuLeaseError
from trainorch_jupyter.pool.remote import call


def engine_env(pool, name):
    return {s.slot: pool.client[s.engine_id].apply_sync(call, "os:getenv", name) for s in pool.slots}


def test_one_engine_per_fake_gpu_each_pinned_before_any_import(fake_gpus):
    fake_gpus(2)
    pool = EnginePool.start()
    try:
        assert len(pool.slots) == 2
        pinned = engine_env(pool, "CUDA_VISIBLE_DEVICES")
        assert pinned == {0: "GPU-00000000-fake-uuid-0000-000000000000",
                          1: "GPU-00000001-fake-uuid-0000-000000000001"}
        assert [r["device"] for r in pool.status()] == [f"cuda:{pinned[0]}", f"cuda:{pinned[1]}"]
        cores = len(os.sched_getaffinity(0))
        assert engine_env(pool, "OMP_NUM_THREADS") == {0: str(max(1, cores // 2)), 1: str(max(1, cores // 2))}
        # no framework is imported on the engines by pinning
        for s in pool.slots:
            assert s.info["frameworks"] == []

        # a second pool on the same machine gets only free GPUs: here none
        with pytest.raises(GpuLeaseError) as e:
            EnginePool.start()
        assert f"pool {pool.id}" in str(e.value) and f"kernel pid {os.getpid()}" in str(e.value)

        # restarting one engine keeps its slot's pinning
        old = pool.slots[1].engine_id
        pool.restart(old)
        assert pool.slots[1].engine_id != old
        assert engine_env(pool, "CUDA_VISIBLE_DEVICES")[1] == pinned[1]
    finally:
        pool.stop()
    # leases are released with the pool
    again = EnginePool.start(1)
    again.stop()


def test_second_pool_gets_the_free_gpus(fake_gpus):
    fake_gpus(3)
    first = EnginePool.start(2)
    try:
        second = EnginePool.start()
        try:
            assert len(second.slots) == 1
            assert engine_env(second, "CUDA_VISIBLE_DEVICES") == {0: "GPU-00000002-fake-uuid-0000-000000000002"}
        finally:
            second.stop()
    finally:
        first.stop()


def test_gpus_given_by_slurm_are_kept_as_given(fake_gpus, monkeypatch):
    fake_gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    pool = EnginePool.start()
    try:
        assert engine_env(pool, "CUDA_VISIBLE_DEVICES") == {0: "2", 1: "3"}
    finally:
        pool.stop()


def test_bad_pool_requests():
    with pytest.raises(PoolError, match="unknown launcher"):
        EnginePool.start(2, launcher="kubernetes")
    with pytest.raises(PoolError, match="at least 1"):
        EnginePool.start(0)
    with pytest.raises(PoolError, match="needs an engine count"):
        EnginePool.start(None, launcher="mpi")
