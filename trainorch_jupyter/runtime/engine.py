"""Engine-side pool operations: pinning, host facts, rendezvous address."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from ._state import STATE

FRAMEWORK_MODULES = ("torch", "tensorflow", "jax")
VERSIONED = ("torch", "tensorflow", "scikit-learn", "tf_keras", "ipyparallel", "trainorch-jupyter")


def loaded_frameworks() -> list[str]:
    return [m for m in FRAMEWORK_MODULES if m in sys.modules]


def _child_streams() -> None:
    """In a forked child (a DataLoader or joblib worker), print straight to fd 1/2.

    The engine's ``sys.stdout`` sends through its IOPub thread, which a forked child
    does not have, so the child's prints would vanish.  The engine captures its
    file descriptors 1 and 2, so writing there reaches the notebook, labelled
    with this rank like everything else.
    """
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False, errors="replace"))
        except OSError:
            pass


_FORK_HOOK = False


def capture_children() -> None:
    global _FORK_HOOK
    if not _FORK_HOOK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_child_streams)
        _FORK_HOOK = True


def pin(env: dict[str, str], controller_ip: str | None = None) -> dict[str, Any]:
    """Apply this engine's environment (GPU pinning, threads) before any framework import."""
    loaded = loaded_frameworks()
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if loaded and current != env.get("CUDA_VISIBLE_DEVICES"):
        raise RuntimeError(
            f"cannot pin this engine: {', '.join(loaded)} is already imported here, so "
            "CUDA_VISIBLE_DEVICES would not apply; restart it with %cluster restart"
        )
    os.environ.update(env)
    STATE["pinned"] = dict(env)
    capture_children()
    return host_info(controller_ip)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def route_ip(target: str | None) -> str:
    """This host's address on the route towards ``target`` (the controller).

    That is the address peers on other hosts can reach us at; for a pool on one
    machine whose controller listens on loopback, it is the loopback address.
    """
    if target:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((target, 9))  # UDP connect sends nothing; it only picks a route
            return s.getsockname()[0]
        except OSError:
            pass
        finally:
            s.close()
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()


def host_info(controller_ip: str | None = None) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ip": route_ip(controller_ip),
        "cores": _cores(),
        "frameworks": loaded_frameworks(),
        "versions": _versions(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "python": sys.version.split()[0],
    }


def nvidia_smi() -> str | None:
    """Raw GPU listing of this engine's host (for per-host discovery in multi-host pools)."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    out = subprocess.run(
        [exe, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout if out.returncode == 0 else None


def free_port(ip: str) -> int:
    """A TCP port that is free on this host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip if ip else "", 0))
        return s.getsockname()[1]


def rendezvous_address(controller_ip: str | None = None) -> tuple[str, int]:
    """MASTER_ADDR / MASTER_PORT for a job whose rank 0 is this engine."""
    ip = route_ip(controller_ip)
    return ip, free_port(ip)


def namespace_has(names: list[str]) -> list[str]:
    """Which of ``names`` are missing from this engine's namespace."""
    ns = user_namespace()
    return [n for n in names if n not in ns]


def user_namespace() -> dict[str, Any]:
    from IPython import get_ipython

    ip = get_ipython()
    if ip is not None:
        return ip.user_ns
    import __main__

    return __main__.__dict__
