"""The sklearn backend module: protocol, install hint, n_jobs on engines, detection."""

from __future__ import annotations

import importlib.util

import pytest

from trainorch_jupyter import backends
from trainorch_jupyter.backends import sklearn_backend as sk
from trainorch_jupyter.jobs.source import CellError, detect_framework, parse


def test_protocol():
    mod = backends.get("scikit-learn")
    assert mod is sk and mod.NAME == "sklearn" and mod.MODULES == ("sklearn",)
    assert mod.KERNEL_SIDE and mod.is_available() and mod.rank_env(rank=0) == {}


def test_not_installed_without_importing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    assert not sk.is_available()
    assert sk.install_hint() == 'pip install "trainorch-jupyter[sklearn]"'


@pytest.mark.parametrize(
    "n_jobs, engines, workers",
    [(-1, 2, 2), (None, 4, 4), (-2, 4, 3), (-8, 4, 1), (1, 4, 1), (3, 4, 3), (8, 4, 4), (-1, 1, 2), (1, 1, 1)],
)
def test_n_jobs_means_engines(n_jobs, engines, workers):
    assert sk.effective_workers(n_jobs, engines) == workers


@pytest.mark.parametrize("cell", ["import sklearn", "from sklearn.model_selection import GridSearchCV",
                                  "import sklearn.svm as svm"])
def test_detected_from_imports(cell):
    assert detect_framework(parse(cell)) == "sklearn"


@pytest.mark.parametrize("cell", ["import torch\nfrom sklearn.svm import SVC",
                                  "from sklearn import svm\nimport tensorflow as tf"])
def test_two_frameworks_are_ambiguous(cell):
    with pytest.raises(CellError, match="say which one to set up with --framework"):
        detect_framework(parse(cell))
