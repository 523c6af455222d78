"""Notebooks as regression tests: a notebook whose %validate fails makes the pytest run fail."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from trainorch_jupyter.sanitize import path as sanitize_path

DATA = """\
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
"""


def _notebook(path: str, C: float) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext trainorch_jupyter"),
        nbformat.v4.new_code_cell(DATA),
        nbformat.v4.new_code_cell(f"clf = LogisticRegression(C={C}, max_iter=1000).fit(X_train, y_train)"),
        nbformat.v4.new_code_cell("%validate clf --data X_val,y_val --min accuracy=0.9 --name gate"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _nbval(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", path,
         "--nbval-sanitize-with", sanitize_path()],
        capture_output=True, text=True, timeout=600, cwd=os.path.dirname(path),
    )


def test_a_model_that_regresses_fails_the_notebook_under_nbval(tmp_path):
    path = _notebook(str(tmp_path / "gate.ipynb"), C=1.0)
    nb = nbformat.read(path, 4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()  # the good model, outputs kept
    nbformat.write(nb, path)
    assert "validation gate: passed" in nb.cells[3].outputs[0]["data"]["text/plain"]

    good = _nbval(path)
    assert good.returncode == 0, good.stdout[-3000:]  # re-running the notebook reproduces it

    # the training changes and the model gets worse: the same notebook now fails its test run
    nb.cells[2].source = nb.cells[2].source.replace("C=1.0", "C=0.0005")
    nbformat.write(nb, path)
    bad = _nbval(path)
    assert bad.returncode != 0
    assert "ValidationFailed" in bad.stdout and "accuracy = " in bad.stdout and "< min 0.9" in bad.stdout, \
        bad.stdout[-3000:]
    assert "1 failed" in bad.stdout, bad.stdout[-3000:]
