"""Notebooks as regression tests: the text forms are stable across executions under nbval."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from trainorch_jupyter.sanitize import path as sanitize_path


def _notebook(tmp_path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext trainorch_jupyter"),
        nbformat.v4.new_code_cell(
            "%%distribute -n 2\n"
            "import torch, torch.distributed as dist\n"
            "from trainorch_jupyter.runtime import rank, report\n"
            "t = torch.ones(1) * (rank() + 1)\n"
            "dist.all_reduce(t)\n"
            "report(step=1, total=1, total_sum=t.item())\n"
            "if rank() == 0:\n"
            "    print('sum', t.item())\n"
        ),
        nbformat.v4.new_code_cell("%runs -n 1"),  # ids and durations: the sanitize file's job
        nbformat.v4.new_code_cell("%cluster stop"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    path = str(tmp_path / "stable.ipynb")
    nbformat.write(nb, path)
    return path


def _nbval(path: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", path, *extra],
        capture_output=True, text=True, timeout=600, cwd=os.path.dirname(path),
    )


def test_a_second_execution_matches_the_first_with_the_sanitize_file(tmp_path):
    path = _notebook(tmp_path)
    outputs = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nbformat.read(path, 4).cells if c.cell_type == "code" for o in c.outputs
    )
    assert "torch job on 2 ranks (gloo): done" in outputs and "[rank 0] sum 3.0" in outputs
    strict = _nbval(path, "--nbval-sanitize-with", sanitize_path())
    assert strict.returncode == 0, strict.stdout[-3000:]
    # without it only the %runs cell (ids, durations) differs: the job's own outputs are stable
    raw = _nbval(path)
    assert raw.returncode != 0 and "1 failed, 3 passed" in raw.stdout, raw.stdout[-3000:]
