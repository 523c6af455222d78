"""Per-engine environment, built by pure functions.

Applied on each engine before any framework is imported there, so
``CUDA_VISIBLE_DEVICES`` and thread counts take effect.
"""

from __future__ import annotations

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def threads_per_engine(cores: int, engines_on_host: int) -> int:
    """Intra-op threads for each engine so a host's engines share its cores."""
    return max(1, cores // max(1, engines_on_host))


def engine_env(gpu_token: str | None, threads: int) -> dict[str, str]:
    """Environment that pins one engine to one GPU (or to no GPU) and sizes its threads."""
    env = {var: str(threads) for var in THREAD_VARS}
    env["TRAINORCH_THREADS"] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = "" if gpu_token is None else gpu_token
    return env
