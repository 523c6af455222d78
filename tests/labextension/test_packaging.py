"""The lab extension: its TypeScript unit tests, and the package that carries it.

`make test` runs the TypeScript tests through here (node's test runner, in labextension/).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEXT = os.path.join(ROOT, "labextension")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], **kw) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    text = ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{text[-4000:]}"
    return text


def test_typescript_model_unit_tests():
    npm = shutil.which("npm")
    assert npm, "node/npm is needed to build and test the lab extension (apt-get install nodejs npm)"
    if not os.path.isdir(os.path.join(LABEXT, "node_modules")):
        _run([npm, "ci", "--no-audit", "--no-fund"], cwd=LABEXT)
    text = _run([npm, "test"], cwd=LABEXT)
    passed = re.search(r"^# pass (\d+)", text, re.M)
    failed = re.search(r"^# fail (\d+)", text, re.M)
    assert passed and int(passed.group(1)) >= 6 and failed and failed.group(1) == "0", text[-3000:]


def test_jupyter_lists_both_extensions_enabled_and_ok():
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    lab = _run([sys.executable, "-m", "jupyter", "labextension", "list"], env=env)
    assert re.search(r"trainorch-jupyter v\S+ enabled\s+OK", lab), lab
    server = _run([sys.executable, "-m", "jupyter", "server", "extension", "list"], env=env)
    assert re.search(r"trainorch_jupyter enabled", server) and re.search(r"trainorch_jupyter \S+ OK", server), server


def test_the_wheel_carries_the_built_extension_and_installs_without_node(tmp_path):
    """Build the wheel, install it into a fresh venv with no node on PATH, and ask jupyter there."""
    dist = tmp_path / "dist"
    # without build isolation the build runs `jupyter labextension build` from this environment's bin,
    # which is not on PATH when the tests run as `.venv/bin/python -m pytest` (make test, CI)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), ROOT],
         cwd=ROOT, env=env)
    [wheel] = glob.glob(str(dist / "trainorch_jupyter-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    data = [n for n in names if "/data/share/jupyter/labextensions/trainorch-jupyter/" in n]
    assert any(n.endswith("/package.json") for n in data) and any("/static/remoteEntry." in n for n in data)
    assert any(n.endswith("/install.json") for n in data)
    assert any(n.endswith("/schemas/trainorch-jupyter/plugin.json") for n in data), data
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/trainorch_jupyter.json") for n in names)

    fresh = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", str(fresh)])
    bin_dir = str(fresh / "bin")
    no_node = {"PATH": bin_dir, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
               "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    assert shutil.which("node", path=bin_dir) is None
    _run([os.path.join(bin_dir, "pip"), "install", "-q", "--no-deps", "--no-index", wheel], env=no_node)
    # the wheel's dependencies come from this environment (already installed here), after the wheel itself
    site = subprocess.check_output([os.path.join(bin_dir, "python"), "-c",
                                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    with open(os.path.join(site, "zz_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    py = os.path.join(bin_dir, "python")
    where = _run([py, "-c", "import trainorch_jupyter; print(trainorch_jupyter.__file__)"], env=no_node,
                 cwd=str(tmp_path))
    assert where.strip().startswith(str(fresh)), where
    # `jupyter labextension` finds its subcommand on PATH; the module itself needs nothing but python
    lab = _run([py, "-m", "jupyterlab.labextensions", "list"], env=no_node, cwd=str(tmp_path))
    assert str(fresh / "share" / "jupyter" / "labextensions") in lab, lab
    assert re.search(r"trainorch-jupyter v\S+ enabled\s+OK \(python, trainorch-jupyter\)", lab), lab
    server = _run([py, "-m", "jupyter_server.extension.serverextension", "list"], env=no_node, cwd=str(tmp_path))
    assert str(fresh / "etc" / "jupyter") in server, server
    assert re.search(r"trainorch_jupyter \S+ OK", server), server
