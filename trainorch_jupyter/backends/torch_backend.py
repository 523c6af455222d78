"""PyTorch: DDP over torch.distributed (gloo on CPU, nccl on GPU).

Kernel side only: nothing here imports torch.
"""

from __future__ import annotations

import importlib.util

NAME = "torch"
MODULES = ("torch", "torchvision", "torchaudio", "lightning", "pytorch_lightning")
SETUP = "trainorch_jupyter.runtime.torch_dist:setup"
TEARDOWN = "trainorch_jupyter.runtime.torch_dist:teardown"
PREPARE = "trainorch_jupyter.runtime.torch_dist:to_kernel"
BACKENDS = ("gloo", "nccl", "mpi")
DEFAULT_TIMEOUT = 300.0  # seconds, for rendezvous and every collective (torch's own is 30 min)


def is_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def install_hint() -> str:
    return 'pip install "trainorch-jupyter[torch]"'


def default_backend(devices: list[str]) -> str:
    """nccl when every rank has a GPU, else gloo."""
    return "nccl" if devices and all(d.startswith("cuda") for d in devices) else "gloo"


def rank_env(
    *,
    rank: int,
    local_rank: int,
    world_size: int,
    local_world_size: int,
    group_rank: int = 0,
    master_addr: str,
    master_port: int,
) -> dict[str, str]:
    """The torchrun-compatible environment of one rank (a pure function)."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(local_world_size),
        "GROUP_RANK": str(group_rank),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }
