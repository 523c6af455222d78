"""Shared fixtures: a real 2-engine pool for the session, isolated state dirs."""

from __future__ import annotations

import os
import stat
import sys
import tempfile

import pytest

# Every test run gets its own run store and lease directory; engines inherit them.
_TMP = tempfile.mkdtemp(prefix="trainorch-test-")
os.environ["TRAINORCH_HOME"] = os.path.join(_TMP, "home")
os.environ["TRAINORCH_LEASE_DIR"] = os.path.join(_TMP, "leases")
os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def write_fake_nvidia_smi(directory: str, n: int) -> str:
    """A fake ``nvidia-smi`` listing ``n`` GPUs (we simulate GPU hardware, nothing else)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "nvidia-smi")
    rows = "\n".join(
        f"{i}, GPU-{i:08d}-fake-uuid-0000-{i:012d}, NVIDIA Fake H100, 81559" for i in range(n)
    )
    script = "#!/bin/sh\n" \
        'case "$*" in\n' \
        f"  *--query-gpu*) printf '%s\\n' {' '.join(repr(r) for r in rows.splitlines())} ;;\n" \
        '  *) echo "NVIDIA-SMI fake" ;;\n' \
        "esac\n"
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Put a fake nvidia-smi with N GPUs first on PATH (engines inherit PATH)."""

    def make(n: int) -> str:
        d = str(tmp_path / f"fake-smi-{n}")
        write_fake_nvidia_smi(d, n)
        monkeypatch.setenv("PATH", d + os.pathsep + os.environ["PATH"])
        return d

    return make


@pytest.fixture
def pool():
    """One real 2-engine CPU pool shared by the tests that allow it (started once,
    again only if a test stopped it; stopped at the end of the session)."""
    from trainorch_jupyter import api

    p = api.current_pool()
    if p is None or not p.owned or len(p.slots) != 2:
        api.stop_pool()
        p = api.start_pool(2)
    return p


@pytest.fixture
def healthy_pool(pool):
    """The shared pool, healed and idle before the test."""
    pool.heal()
    assert len(pool.alive_ids() & set(pool.engine_ids())) == 2
    return pool


def pytest_sessionfinish(session, exitstatus):
    import shutil

    from trainorch_jupyter import api

    api.stop_pool()
    shutil.rmtree(_TMP, ignore_errors=True)
