"""The pool watchdog: a pool started by a kernel dies with it.

Started in its own session by :class:`EnginePool`, it polls the kernel's pid.
When the kernel is gone (even after SIGKILL, which skips every atexit hook) it
stops the cluster through ipyparallel's own launchers (so Slurm/MPI/SSH engines
are stopped the way they were started), then kills any process of this user
still carrying the cluster's ``IPP_CLUSTER_ID``.  It also inherits the pool's
GPU lease descriptors, so leases are released only once the engines are gone.
When the pool is stopped normally the cluster file disappears and the watchdog
exits quietly.

    python -m trainorch_jupyter.pool.watchdog KERNEL_PID CLUSTER_FILE CLUSTER_ID
"""

from __future__ import annotations

import os
import sys
import threading
import time

POLL = 0.5


def _alive(pid: int) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cluster_processes(cluster_id: str) -> list:
    """Processes of this user that belong to the cluster ``cluster_id``."""
    import psutil

    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("IPP_CLUSTER_ID") == cluster_id:
                found.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    return found


def kill_cluster_processes(cluster_id: str, grace: float = 3.0) -> None:
    import psutil

    procs = cluster_processes(cluster_id)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def stop(cluster_file: str, cluster_id: str) -> None:
    def via_launchers() -> None:
        try:
            from ipyparallel import Cluster

            Cluster.from_file(cluster_file).stop_cluster_sync()
        except Exception:
            pass

    t = threading.Thread(target=via_launchers, daemon=True)
    t.start()
    t.join(15)
    kill_cluster_processes(cluster_id)
    try:
        os.remove(cluster_file)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    kernel_pid, cluster_file, cluster_id = int(argv[0]), argv[1], argv[2]
    seen_file = False
    while True:
        exists = os.path.exists(cluster_file)
        seen_file = seen_file or exists
        if seen_file and not exists:
            return 0  # stopped normally
        if not _alive(kernel_pid):
            stop(cluster_file, cluster_id)
            return 0
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
