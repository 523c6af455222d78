"""A real JupyterLab on localhost, driven by Playwright in Debian's Chromium.

Reused by the sidebar tests.  Never downloads a browser: it uses /usr/bin/chromium.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

CHROMIUM = os.environ.get("TRAINORCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(root: str, base_url: str = "/") -> Iterator[str]:
    """Start ``jupyter lab`` on 127.0.0.1 serving ``root``; yields its URL (with the base URL)."""
    port, token = free_port(), "trainorch-test-token"
    log = open(os.path.join(root, "jupyter-lab.log"), "w")
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", f"--ServerApp.base_url={base_url}",
        "--allow-root", "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.workspaces_dir={os.path.join(root, '.workspaces')}",
        f"--LabApp.user_settings_dir={os.path.join(root, '.user-settings')}",  # never the user's own
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}{base_url}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not start:\n" + open(log.name).read()[-3000:])
                time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def browser_available() -> bool:
    return os.path.exists(CHROMIUM) and shutil.which("node") is not None or os.path.exists(CHROMIUM)
