import os
import subprocess
import sys
import textwrap

import pytest

from trainorch_jupyter.pool import gpus, leases

G = [gpus.Gpu(i, f"GPU-{i}", "Fake", 1000, f"GPU-{i}") for i in range(3)]


@pytest.fixture
def lease_dir(tmp_path):
    return str(tmp_path / "leases")


def test_acquire_all_free_and_release(lease_dir):
    os.makedirs(lease_dir)
    got = leases.acquire(G, None, "p1", lease_dir)
    assert [lease.gpu.index for lease in got] == [0, 1, 2]
    assert leases.holder(G[0], lease_dir)["pool"] == "p1"
    for lease in got:
        lease.release()
    assert leases.holder(G[0], lease_dir) is None


def test_more_engines_than_gpus_is_refused_plainly(lease_dir):
    os.makedirs(lease_dir)
    with pytest.raises(leases.GpuLeaseError, match="-n 4: only 3 GPUs are visible to this kernel; use -n 3"):
        leases.acquire(G, 4, "p1", lease_dir)


def test_second_pool_gets_the_free_ones(lease_dir):
    os.makedirs(lease_dir)
    first = leases.acquire(G, 2, "p1", lease_dir)
    second = leases.acquire(G, None, "p2", lease_dir)
    assert [lease.gpu.index for lease in second] == [2]
    with pytest.raises(leases.GpuLeaseError) as e:
        leases.acquire(G, 2, "p3", lease_dir)
    msg = str(e.value)
    assert "GPU 0" in msg and "pool p1" in msg and f"kernel pid {os.getpid()}" in msg
    for lease in first + second:
        lease.release()


def test_lease_held_by_another_process_names_it_and_dies_with_it(lease_dir):
    os.makedirs(lease_dir)
    code = textwrap.dedent(
        f"""
        import sys, time
        from trainorch_jupyter.pool import gpus, leases
        g = gpus.Gpu(0, "GPU-0", "Fake", 1000, "GPU-0")
        l = leases.try_acquire(g, leases.owner_record("other"), {lease_dir!r})
        print("held", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        owner = leases.holder(G[0], lease_dir)
        assert owner["pid"] == proc.pid and owner["pool"] == "other"
        with pytest.raises(leases.GpuLeaseError, match=f"kernel pid {proc.pid}"):
            leases.acquire(G[:1], 1, "mine", lease_dir)
    finally:
        proc.kill()
        proc.wait()
    # SIGKILL of the holder releases the lease: nothing stale to clean up
    got = leases.acquire(G[:1], 1, "mine", lease_dir)
    assert got and leases.holder(G[0], lease_dir)["pool"] == "mine"
    got[0].release()
