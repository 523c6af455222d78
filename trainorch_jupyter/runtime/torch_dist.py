"""Engine-side PyTorch setup: the default process group, kept across cells."""

from __future__ import annotations

import copy
import os
import sys
from datetime import timedelta
from typing import Any

from ._state import STATE


def setup(spec: dict[str, Any]) -> None:
    """Initialise (or reuse) the default process group for this rank."""
    import torch
    import torch.distributed as dist

    threads = int(os.environ.get("TRAINORCH_THREADS", "0") or 0)
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    key = spec["group_key"]
    if dist.is_available() and dist.is_initialized():
        if spec.get("reuse") and STATE.get("group_key") == key:
            return
        teardown()
    if spec.get("reuse"):
        raise RuntimeError(
            "the process group of this pool was lost on this rank; run the cell again"
        )
    backend = spec["backend"]
    rank = spec["rank"]
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"--backend nccl needs CUDA on every rank, but rank {rank} has none "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                "use --backend gloo"
            )
        torch.cuda.set_device(0)
    addr, port = spec["master_addr"], spec["master_port"]
    # A failed init leaves torch's private group counter advanced on this rank
    # only; default-group names (store keys) derive from it, so a fresh rank and
    # this one would wait on different keys.  No group exists here: start at 0.
    world = getattr(dist.distributed_c10d, "_world", None)
    if world is not None and getattr(world, "group_count", 0):
        world.group_count = 0
    try:
        dist.init_process_group(
            backend,
            init_method=f"tcp://{addr}:{port}",
            rank=rank,
            world_size=spec["world_size"],
            timeout=timedelta(seconds=spec["timeout"]),
        )
    except Exception as e:
        text = str(e)
        if "Timed out" in text or "timed out" in text or "timeout" in text.lower():
            raise TimeoutError(
                f"rendezvous timed out after {spec['timeout']:g} s on rank {rank}: not every rank "
                f"joined the process group at {addr}:{port} ({text.splitlines()[0][:200]}). "
                "Check that every engine can reach that address, or raise --timeout"
            ) from None
        raise
    STATE["group_key"] = key


def teardown() -> None:
    """Destroy the default process group, so that peers blocked on us fail fast."""
    STATE["group_key"] = None
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def to_kernel(value: Any) -> Any:
    """Make ``value`` safe to send to the kernel: unwrap DDP, move tensors to the CPU.

    Pulling must never initialise CUDA in the kernel, so nothing that reaches it
    may live on a GPU.  The engine's own objects are left untouched.
    """
    if "torch" not in sys.modules:
        return value
    import torch

    if isinstance(value, torch.nn.parallel.DistributedDataParallel):
        value = value.module
    if isinstance(value, torch.nn.Module):
        if any(t.device.type != "cpu" for t in [*value.parameters(), *value.buffers()]):
            value = copy.deepcopy(value).to("cpu")
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu() if value.device.type != "cpu" else value.detach()
    if isinstance(value, dict):
        return type(value)((k, to_kernel(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_kernel(v) for v in value)
    return value
