"""%cluster attach: someone else's running cluster is used, checked, and left running."""

import uuid

import ipyparallel as ipp
import pytest

from trainorch_jupyter import api
from trainorch_jupyter.pool.engine_pool import EnginePool, PoolError
from trainorch_jupyter.pool.watchdog import kill_cluster_processes


@pytest.fixture
def foreign_cluster():
    """A cluster started the way `ipcluster start -n 2` would, outside our pool."""
    cluster = ipp.Cluster(n=2, log_level=40, cluster_id=f"trainorch-test-foreign-{uuid.uuid4().hex[:6]}")
    cluster.start_cluster_sync()
    client = cluster.connect_client_sync()
    client.wait_for_engines(2, timeout=60, interactive=False)
    yield cluster, client
    client.close()
    try:  # engines restarted through the cluster file are known to the file, not to this object
        ipp.Cluster.from_file(cluster.cluster_file).stop_cluster_sync()
    except Exception:
        pass
    cluster.stop_cluster_sync()
    kill_cluster_processes(cluster.cluster_id)


def test_attach_refuses_engines_with_torch_already_imported(foreign_cluster):
    cluster, client = foreign_cluster
    client[client.ids[0]].execute("import torch", block=True)
    with pytest.raises(PoolError, match="torch is already imported on the engines.*--restart"):
        EnginePool.attach(profile="default", cluster_id=cluster.cluster_id)
    # the remedy the message names: restart them through the cluster file, then pin
    pool = EnginePool.attach(profile="default", cluster_id=cluster.cluster_id, restart=True)
    try:
        assert len(pool.slots) == 2 and all(s.info["frameworks"] == [] for s in pool.slots)
        assert not set(pool.engine_ids()) & {0, 1}  # fresh engines
    finally:
        pool.stop()


def test_attach_runs_jobs_and_detaching_leaves_the_cluster_running(foreign_cluster):
    cluster, client = foreign_cluster
    api.stop_pool()  # the shared test pool gives way; the next test that needs it starts it again
    try:
        attached = api.attach_pool(profile="default", cluster_id=cluster.cluster_id)
        assert not attached.owned and len(attached.slots) == 2
        ns = {}
        api.distribute(
            "import torch, torch.distributed as dist\nt = torch.ones(1)\ndist.all_reduce(t)\nok = t.item()",
            namespace=ns, gather=["ok"], show=False,
        )
        assert ns["ok"] == [2.0, 2.0]
        assert api.stop_pool()
        assert len(client.ids) == 2  # still running: we only detached
    finally:
        api.stop_pool()
