"""EnginePool: a real ipyparallel cluster, one engine per GPU (or CPU engines).

A pool is either *owned* (started here through ``ipyparallel.Cluster`` with any
of its launchers, pinned, leased, watched, and stopped with its kernel) or
*attached* (someone else's cluster: we connect and leave it running).

Engines are kept in *slots*: slot ``k`` is rank ``k`` of a job that uses the
whole pool, and owns its GPU pinning.  When an engine dies or is killed, a new
engine takes over its slot with the same pinning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import ipyparallel as ipp

from . import env as envmod
from . import gpus as gpumod
from . import leases as leasemod
from .iopub import IOPubTap
from .remote import call

RUNTIME = "trainorch_jupyter.runtime.engine"
HEARTBEAT_MS = 100          # registration completes on the first heartbeat: keep it short
HEARTBEAT_MISSES = 50       # ... and tolerate 5 s of silence before declaring an engine dead
DEFAULT_CPU_ENGINES = 2
LAUNCHERS = ("local", "mpi", "slurm", "ssh", "pbs", "sge", "lsf", "htcondor", "batch")


class PoolError(RuntimeError):
    """The pool cannot do what was asked; the message says what to do."""


@dataclass
class EngineSlot:
    slot: int
    engine_id: int | None = None
    gpu: gpumod.Gpu | None = None
    host: str = ""
    ip: str = ""
    pid: int | None = None
    threads: int = 1
    local_rank: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu.token}" if self.gpu is not None else "cpu"

    def env(self) -> dict[str, str]:
        return envmod.engine_env(self.gpu.token if self.gpu else None, self.threads)


@contextlib.contextmanager
def _engine_environment() -> Iterator[None]:
    """Launch engines without ``PYTEST_CURRENT_TEST``.

    ipykernel stops capturing file descriptors 1/2 (the output of a rank's child
    processes) when it sees that variable, and a kernel run by nbval or pytest
    has it.  An engine is not a test, so it must not inherit it.
    """
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


class EnginePool:
    """A pool of ipyparallel engines, pinned one per GPU."""

    def __init__(
        self,
        client: ipp.Client,
        *,
        cluster: ipp.Cluster | None,
        owned: bool,
        launcher: str,
        pool_id: str,
        leases: list[leasemod.Lease] | None = None,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.owned = owned
        self.launcher = launcher
        self.id = pool_id
        self.leases = leases or []
        self.slots: list[EngineSlot] = []
        self.generation = 0        # bumps whenever an engine is replaced
        self.group_key: str | None = None  # the framework group the engines share, if any
        # its rendezvous address: (MASTER_ADDR, MASTER_PORT), or every rank's "host:port" (TensorFlow)
        self.group_addr: tuple | None = None
        self.tap = IOPubTap(client)
        self.watchdog: subprocess.Popen | None = None
        self.controller_ip = self._controller_ip()
        self.closed = False
        self._views: dict[int, Any] = {}

    # -- construction --------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        n: int | None = None,
        *,
        launcher: str = "local",
        config: Any = None,
        timeout: float = 120.0,
        log: Callable[[str], None] | None = None,
    ) -> "EnginePool":
        """Start a controller and engines; default size is one engine per free GPU."""
        if launcher not in LAUNCHERS:
            raise PoolError(f"unknown launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}")
        if n is not None and n < 1:
            raise PoolError(f"-n must be at least 1, got {n}")
        pool_id = uuid.uuid4().hex[:8]
        leases: list[leasemod.Lease] = []
        gpus: list[gpumod.Gpu] = []
        if launcher == "local":
            gpus = gpumod.discover()
            if gpus:
                leases = leasemod.acquire(gpus, n, pool_id)
                gpus = [lease.gpu for lease in leases]
                n = len(gpus)
            n = n or DEFAULT_CPU_ENGINES
        elif n is None:
            raise PoolError(f"--launcher {launcher} needs an engine count: %cluster start -n N")
        kwargs: dict[str, Any] = dict(
            n=n,
            engines=launcher,
            cluster_id=f"trainorch-{pool_id}",
            log_level=40,
            controller_args=[
                f"--HeartMonitor.period={HEARTBEAT_MS}",
                f"--HeartMonitor.max_heartmonitor_misses={HEARTBEAT_MISSES}",
            ],
            engine_timeout=timeout,
        )
        if launcher != "local":
            kwargs["controller_ip"] = "*"
        if config is not None:
            kwargs["config"] = config
        try:
            cluster = ipp.Cluster(**kwargs)
            with _engine_environment():
                cluster.start_cluster_sync()
            client = cluster.connect_client_sync()
            client.wait_for_engines(n, timeout=timeout, interactive=False)
        except Exception as e:
            for lease in leases:
                lease.release()
            try:
                cluster.stop_cluster_sync()  # type: ignore[possibly-undefined]
            except Exception:
                pass
            raise PoolError(f"could not start {n} engines with the {launcher} launcher: {e}") from e
        pool = cls(client, cluster=cluster, owned=True, launcher=launcher, pool_id=pool_id, leases=leases)
        try:
            threads = envmod.threads_per_engine(_cores(), n)
            pool.slots = [
                EngineSlot(slot=k, gpu=gpus[k] if k < len(gpus) else None, threads=threads)
                for k in range(n)
            ]
            pool._bind(sorted(client.ids)[:n], pool.slots)
            if launcher != "local":
                pool._pin_remote_gpus()
            pool._start_watchdog()
        except BaseException:
            pool.stop()
            raise
        return pool

    @classmethod
    def attach(
        cls,
        *,
        profile: str | None = None,
        cluster_id: str | None = None,
        url_file: str | None = None,
        timeout: float = 30.0,
        pin: bool = True,
        restart: bool = False,
    ) -> "EnginePool":
        """Connect to a running cluster (``ipcluster start``, or an administrator's).

        ``restart=True`` first restarts its engines through the cluster file, for
        engines that already imported a framework (so pinning cannot apply).
        """
        cluster = None
        try:
            if url_file:
                client = ipp.Client(url_file, timeout=timeout)
            else:
                cluster = ipp.Cluster.from_file(profile=profile or "default", cluster_id=cluster_id or "")
                client = cluster.connect_client_sync()
        except Exception as e:
            raise PoolError(
                f"no running cluster found ({e}); start one with `ipcluster start -n N` "
                "or use %cluster start"
            ) from e
        try:
            client.wait_for_engines(1, timeout=timeout, interactive=False)
        except Exception:
            client.close()
            raise PoolError("the cluster has no engines; start some with `ipengine` or ipcluster")
        if restart:
            if cluster is None or not cluster.engines:
                client.close()
                raise PoolError(
                    "--restart needs the cluster file of an ipcluster-started cluster "
                    "(--profile/--cluster-id); restart these engines where they were started"
                )
            n = len(client.ids)
            before = set(client.ids)
            cluster.stop_engines_sync()
            with _engine_environment():
                cluster.start_engines_sync(n)
            deadline = time.monotonic() + timeout + 60
            while len(set(client.ids) - before) < n:
                if time.monotonic() > deadline:
                    client.close()
                    raise PoolError(f"the restarted engines did not register within {timeout + 60:g} s")
                time.sleep(0.1)
        pool = cls(client, cluster=cluster, owned=False, launcher="attached", pool_id=uuid.uuid4().hex[:8])
        ids = sorted(client.ids)
        pool.slots = [EngineSlot(slot=k) for k in range(len(ids))]
        infos = pool._run(ids, "host_info", pool.controller_ip)
        for s, eid, info in zip(pool.slots, ids, infos):
            pool._fill(s, eid, info)
        try:
            pool._check_attached(infos)
            client[ids].use_cloudpickle()
            if pin:
                pool._pin_remote_gpus(infos)
        except BaseException:
            pool.stop()
            raise
        pool._assign_local_ranks()
        return pool

    # -- engines ---------------------------------------------------------------------------
    def _run(self, ids: list[int], fn: str, *args: Any, timeout: float = 60) -> list[Any]:
        ars = [self.client[eid].apply_async(call, f"{RUNTIME}:{fn}", *args) for eid in ids]
        return [ar.get(timeout=timeout) for ar in ars]

    def _bind(self, ids: list[int], slots: list[EngineSlot]) -> None:
        """Pin engines ``ids`` into ``slots`` (in order) and record what they report."""
        self.client[ids].use_cloudpickle()
        ars = [
            self.client[eid].apply_async(call, f"{RUNTIME}:pin", s.env(), self.controller_ip)
            for eid, s in zip(ids, slots)
        ]
        for s, eid, ar in zip(slots, ids, ars):
            try:
                info = ar.get(timeout=60)
            except ipp.RemoteError as e:
                raise PoolError(f"engine {eid}: {e.evalue}") from None
            self._fill(s, eid, info)
        self._assign_local_ranks()

    def _fill(self, s: EngineSlot, eid: int, info: dict[str, Any]) -> None:
        s.engine_id, s.info = eid, info
        s.host, s.ip, s.pid = info["host"], info["ip"], info["pid"]

    def _assign_local_ranks(self) -> None:
        per_host: dict[str, int] = {}
        for s in self.slots:
            s.local_rank = per_host.get(s.host, 0)
            per_host[s.host] = s.local_rank + 1

    def _pin_remote_gpus(self, infos: list[dict[str, Any]] | None = None) -> None:
        """Multi-host pools: discover GPUs per host, on the engines, and pin by local rank."""
        ids = [s.engine_id for s in self.slots]
        if infos is None:
            infos = [s.info for s in self.slots]
        listings = self._run(ids, "nvidia_smi")
        by_host: dict[str, list[int]] = {}
        for k, info in enumerate(infos):
            by_host.setdefault(info["host"], []).append(k)
        for host, members in by_host.items():
            for local, k in enumerate(members):
                given = infos[k].get("cuda_visible_devices")
                gpus = gpumod.visible(gpumod.parse_nvidia_smi(listings[k] or ""), given)
                if gpus and len(members) > len(gpus):
                    raise PoolError(
                        f"host {host} runs {len(members)} engines but has {len(gpus)} GPUs; "
                        "start one engine per GPU on each host"
                    )
                s = self.slots[k]
                s.gpu = gpus[local] if gpus else None
                s.threads = envmod.threads_per_engine(infos[k].get("cores", 1), len(members))
                if infos[k].get("frameworks"):
                    continue  # cannot pin: reported by _check_attached
                info = self.client[ids[k]].apply_sync(call, f"{RUNTIME}:pin", s.env(), self.controller_ip)
                infos[k] = info
                if s.engine_id is not None:
                    self._fill(s, ids[k], info)

    def _check_attached(self, infos: list[dict[str, Any]]) -> None:
        loaded = sorted({f for i in infos for f in i.get("frameworks", [])})
        if loaded:
            raise PoolError(
                f"{', '.join(loaded)} is already imported on the engines, so they cannot be "
                "pinned to GPUs; restart them: %cluster attach --restart (clusters started with "
                "ipcluster), or where they were started"
            )
        for dist in ("torch", "tensorflow", "ipyparallel"):
            seen = {i.get("versions", {}).get(dist) for i in infos}
            seen.discard(None)
            if len(seen) > 1:
                raise PoolError(
                    f"engines run different {dist} versions ({', '.join(sorted(seen))}); "
                    "every rank needs the same one"
                )

    def view(self, engine_id: int) -> Any:
        """A cached DirectView on one engine (views are cheap, but not free)."""
        v = self._views.get(engine_id)
        if v is None:
            v = self._views[engine_id] = self.client[engine_id]
        return v

    def engine_ids(self) -> list[int]:
        return [s.engine_id for s in self.slots if s.engine_id is not None]

    def alive_ids(self) -> set[int]:
        return set(self.client.ids)

    def busy_ids(self) -> set[int]:
        try:
            qs = self.client.queue_status()
        except Exception:
            return set()
        return {k for k, v in qs.items() if isinstance(k, int) and v.get("tasks", 0) + v.get("queue", 0) > 0}

    def kill(self, engine_ids: list[int], timeout: float = 10.0) -> None:
        """Kill engines at once (SIGKILL through their nanny; locally by pid as well)."""
        alive = [e for e in engine_ids if e in self.alive_ids()]
        if not alive:
            return
        try:
            self.client.send_signal(signal.SIGKILL, targets=alive, block=False)
        except Exception:
            pass
        for s in self.slots:
            if s.engine_id in alive and s.pid and s.host == os.uname().nodename:
                try:
                    os.kill(s.pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(alive) & self.alive_ids():
            time.sleep(0.05)

    def interrupt(self, engine_ids: list[int]) -> None:
        """Send SIGINT to engines (KeyboardInterrupt in the running cell)."""
        if engine_ids:
            try:
                self.client.send_signal(signal.SIGINT, targets=engine_ids, block=False)
            except Exception:
                pass

    def replace(self, slots: list[EngineSlot], timeout: float = 120.0) -> None:
        """Start fresh engines for ``slots`` (their engines are dead or killed)."""
        if not slots:
            return
        if self.cluster is None:
            raise PoolError(
                "engines of an attached cluster cannot be replaced from here; "
                "restart them where they were started, then %cluster attach again"
            )
        self.kill([s.engine_id for s in slots if s.engine_id is not None])
        self.generation += 1
        self.group_key = self.group_addr = None
        known = self.alive_ids()
        with _engine_environment():
            self.cluster.start_engines_sync(len(slots))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(self.alive_ids() - known)
            if len(new) >= len(slots):
                break
            time.sleep(0.05)
        else:
            raise PoolError(f"replacement engines did not register within {timeout:g} s")
        self._bind(new[: len(slots)], slots)

    def heal(self) -> list[int]:
        """Replace every slot whose engine has died; returns the slots replaced."""
        alive = self.alive_ids()
        dead = [s for s in self.slots if s.engine_id not in alive]
        if dead and self.owned:
            self.replace(dead)
        return [s.slot for s in dead]

    def restart(self, engine: int | None = None) -> None:
        """Restart one engine (by engine id) or all of them, keeping slots and pinning."""
        if engine is None:
            targets = list(self.slots)
        else:
            targets = [s for s in self.slots if s.engine_id == engine]
            if not targets:
                raise PoolError(
                    f"no engine {engine} in this pool; engines are {', '.join(map(str, self.engine_ids()))}"
                )
        self.replace(targets)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        alive, busy = self.alive_ids(), self.busy_ids()
        rows = []
        for s in self.slots:
            state = "dead" if s.engine_id not in alive else ("busy" if s.engine_id in busy else "idle")
            rows.append(
                {
                    "engine": s.engine_id,
                    "rank": s.slot,
                    "host": s.host,
                    "pid": s.pid,
                    "device": s.device,
                    "threads": s.threads,
                    "state": state,
                }
            )
        return rows

    def describe(self) -> str:
        kind = "GPU" if any(s.gpu for s in self.slots) else "CPU"
        return f"{len(self.slots)} {kind} engine{'s' if len(self.slots) != 1 else ''}"

    # -- lifecycle ----------------------------------------------------------------------------
    def _controller_ip(self) -> str:
        cfg = getattr(self.client, "_config", {}) or {}
        iface = str(cfg.get("interface", ""))
        host = iface.split("://", 1)[-1]
        if host in ("*", "0.0.0.0", ""):
            host = str(cfg.get("location", "")) or "127.0.0.1"
        return host

    def _start_watchdog(self) -> None:
        if self.cluster is None:
            return
        fds = [lease.fd for lease in self.leases if lease.fd >= 0]
        self.watchdog = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainorch_jupyter.pool.watchdog",
                str(os.getpid()),
                self.cluster.cluster_file,
                self.cluster.cluster_id,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=fds,
            close_fds=True,
        )

    def stop(self) -> None:
        """Stop an owned pool (controller and engines); detach from an attached one."""
        if self.closed:
            return
        self.closed = True
        try:
            self.client.close()
        except Exception:
            pass
        if self.owned and self.cluster is not None:
            try:
                self.cluster.stop_cluster_sync()
            except Exception:
                pass
            from .watchdog import kill_cluster_processes

            kill_cluster_processes(self.cluster.cluster_id)
            try:
                os.remove(self.cluster.cluster_file)
            except OSError:
                pass
        if self.watchdog is not None:
            try:
                self.watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
        for lease in self.leases:
            lease.release()
