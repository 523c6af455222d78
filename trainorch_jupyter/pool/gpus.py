"""GPU discovery without initialising CUDA.

NVML (``pynvml``) when it is installed, else ``nvidia-smi``.  Neither creates a
CUDA context.  The kernel's own ``CUDA_VISIBLE_DEVICES`` (set by Slurm or a Hub
spawner) is honoured: only the GPUs it names are used, and they are pinned with
the very token it gave (index, ``GPU-`` UUID or ``MIG-`` id).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Mapping

QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str = ""
    memory_mb: int = 0
    token: str = ""  # what to put in an engine's CUDA_VISIBLE_DEVICES

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name or self.uuid})"


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` CSV output."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        mem = parts[3] if len(parts) > 3 else "0"
        gpus.append(
            Gpu(
                index=int(parts[0]),
                uuid=parts[1],
                name=parts[2] if len(parts) > 2 else "",
                memory_mb=int(float(mem)) if mem.replace(".", "", 1).isdigit() else 0,
            )
        )
    return gpus


def query_nvidia_smi(exe: str | None = None, timeout: float = 10.0) -> list[Gpu] | None:
    """GPUs as nvidia-smi lists them, or None when there is no nvidia-smi."""
    exe = exe or shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, *QUERY], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return parse_nvidia_smi(out.stdout)


def query_nvml() -> list[Gpu] | None:
    """GPUs as NVML lists them, or None when NVML is not usable."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024)
            gpus.append(Gpu(i, _s(uuid), _s(name), int(mem)))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def visible(gpus: list[Gpu], cuda_visible_devices: str | None) -> list[Gpu]:
    """Restrict ``gpus`` to what ``CUDA_VISIBLE_DEVICES`` allows, keeping its tokens.

    Unset: every GPU, pinned by UUID (stable, unlike indices under
    CUDA_DEVICE_ORDER).  Empty or ``-1``: none.  Otherwise each token (an index,
    a UUID or a prefix of one, or a MIG id) is kept as given.
    """
    if cuda_visible_devices is None:
        return [_with_token(g, g.uuid or str(g.index)) for g in gpus]
    out: list[Gpu] = []
    for raw in cuda_visible_devices.split(","):
        token = raw.strip()
        if not token or token == "-1":
            break  # CUDA stops at the first invalid entry
        match = None
        if token.isdigit():
            match = next((g for g in gpus if g.index == int(token)), None)
        elif token.startswith("MIG-"):
            match = Gpu(index=len(out), uuid=token, name="MIG instance")
        else:
            match = next((g for g in gpus if g.uuid.startswith(token)), None)
        if match is None:
            break
        out.append(_with_token(match, token))
    return out


def _with_token(g: Gpu, token: str) -> Gpu:
    return Gpu(g.index, g.uuid, g.name, g.memory_mb, token)


def discover(environ: Mapping[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process may use, found without initialising CUDA."""
    environ = os.environ if environ is None else environ
    gpus = query_nvml()
    if gpus is None:
        gpus = query_nvidia_smi() or []
    return visible(gpus, environ.get("CUDA_VISIBLE_DEVICES"))
