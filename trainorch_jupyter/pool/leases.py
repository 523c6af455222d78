"""GPU leases: two pools on one machine never pin the same GPU.

A lease is an exclusive ``flock`` on ``<lease dir>/gpu-<uuid>.lock``.  The lock
lives exactly as long as the file descriptors that hold it: the kernel holds
them and hands them to its pool watchdog, so a lease is released when the pool
is stopped, or when both the kernel and the watchdog are gone - even after
SIGKILL.  No stale lease files to clean up.  The file's content names the
holder, so a refused pool can say who has the GPU.

The lease directory is machine-local (``/tmp`` by default) and shared by all
users of the machine (mode 1777), which is what a JupyterHub node needs.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .gpus import Gpu


class GpuLeaseError(RuntimeError):
    """The GPUs asked for are held by another pool."""


def lease_dir() -> str:
    path = os.environ.get("TRAINORCH_LEASE_DIR") or os.path.join(
        tempfile.gettempdir(), "trainorch-gpu-leases"
    )
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        try:
            os.chmod(path, 0o1777)
        except PermissionError:
            pass
    return path


def _path(gpu: Gpu, directory: str) -> str:
    key = (gpu.uuid or f"index-{gpu.index}").replace("/", "_")
    return os.path.join(directory, f"gpu-{key}.lock")


@dataclass
class Lease:
    gpu: Gpu
    fd: int
    path: str

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)  # closing the last descriptor drops the flock
            finally:
                self.fd = -1


def _open(path: str) -> int:
    old = os.umask(0)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.umask(old)


def holder(gpu: Gpu, directory: str | None = None) -> dict[str, Any] | None:
    """Who holds ``gpu`` now, or None if it is free."""
    path = _path(gpu, directory or lease_dir())
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return _read_owner(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_owner(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    return "user {user} (kernel pid {pid} on {host}, pool {pool})".format(
        user=owner.get("user", "?"),
        pid=owner.get("pid", "?"),
        host=owner.get("host", "?"),
        pool=owner.get("pool", "?"),
    )


def try_acquire(gpu: Gpu, owner: dict[str, Any], directory: str | None = None) -> Lease | None:
    """Lease ``gpu`` for ``owner``; None when someone else holds it."""
    path = _path(gpu, directory or lease_dir())
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
    except OSError:
        pass  # read-only lease file: the lock still holds, only the label is stale
    return Lease(gpu, fd, path)


def owner_record(pool_id: str) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return {
        "user": user,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pool": pool_id,
        "since": time.time(),
    }


def acquire(
    gpus: list[Gpu], n: int | None, pool_id: str, directory: str | None = None
) -> list[Lease]:
    """Lease ``n`` of ``gpus`` (all free ones when ``n`` is None).

    Raises GpuLeaseError naming the holders when fewer than needed are free.
    """
    if n is not None and n > len(gpus):
        raise GpuLeaseError(
            f"-n {n}: only {len(gpus)} GPU{'s are' if len(gpus) != 1 else ' is'} visible to this kernel; "
            f"use -n {len(gpus)} or less (one engine per GPU)"
        )
    owner = owner_record(pool_id)
    got: list[Lease] = []
    busy: list[str] = []
    for gpu in gpus:
        if n is not None and len(got) >= n:
            break
        lease = try_acquire(gpu, owner, directory)
        if lease is None:
            busy.append(f"{gpu.label} is held by {describe_owner(holder(gpu, directory))}")
        else:
            got.append(lease)
    wanted = len(gpus) if n is None else n
    if (n is not None and len(got) < n) or (n is None and not got and gpus):
        for lease in got:
            lease.release()
        raise GpuLeaseError(
            f"only {len(got)} of {wanted} GPUs are free: " + "; ".join(busy)
            + ". Stop that pool, or start a smaller one with %cluster start -n K."
        )
    return got
