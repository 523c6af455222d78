"""--framework sklearn through the magic, in a real IPython kernel (as a notebook runs it)."""

from __future__ import annotations

import threading
import time

import pytest

from ..kernel_client import Kernel

pytestmark = pytest.mark.kernel

LOADED = "import sys; print(sorted(m for m in ('sklearn', 'joblib', 'torch', 'tensorflow') if m in sys.modules))"


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    yield k
    k.run("%cluster stop")
    k.shutdown()


def test_loading_the_extension_imports_neither_sklearn_nor_joblib(kernel):
    kernel.ok("%load_ext trainorch_jupyter")
    assert kernel.ok(LOADED).stdout.strip() == "[]"


def test_a_grid_search_cell_runs_in_the_kernel_and_fans_out(kernel):
    res = kernel.ok(
        "%%distribute\n"
        "import os\n"
        "from joblib import Parallel, delayed\n"
        "from sklearn.datasets import load_breast_cancer\n"
        "from sklearn.model_selection import GridSearchCV\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_breast_cancer(return_X_y=True)\n"
        "gs = GridSearchCV(LogisticRegression(max_iter=50), {'C': [0.01, 0.1, 1]}, cv=3, n_jobs=-1).fit(X / X.max(0), y)\n"
        "workers = set(Parallel(n_jobs=-1)(delayed(os.getpid)() for _ in range(8)))\n",
        timeout=180,
    )
    assert "sklearn job on 2 engines (joblib): done, 17/17 tasks" in res.text  # 9 fits + 8 getpids
    # the names are the notebook's own; the work ran on the engines
    out = kernel.ok("import os\nprint(sorted(gs.best_params_), os.getpid() in workers, len(workers))").stdout
    assert out.strip() == "['C'] False 2"
    assert kernel.ok(LOADED).stdout.strip() == "['joblib', 'sklearn']"  # the cell imported them, nothing else


def test_interrupt_cancels_the_tasks_and_the_engines_end_idle(kernel):
    code = (
        "%%distribute --framework sklearn\n"
        "import time\n"
        "from joblib import Parallel, delayed\n"
        "def slow(i):\n"
        "    time.sleep(0.5)\n"
        "    return i\n"
        "out = Parallel(n_jobs=-1)(delayed(slow)(i) for i in range(60))\n"
    )
    timer = threading.Timer(3.0, kernel.km.interrupt_kernel)
    t0 = time.monotonic()
    res = kernel.run(code, timeout=60, on_start=timer.start)
    assert res.status == "error" and res.ename == "KeyboardInterrupt", (res.status, res.ename, res.stdout[-2000:], res.stderr[-2000:], res.text[-1000:])
    assert time.monotonic() - t0 < 3.0 + 5.0 + 10
    status = kernel.ok("%cluster status").stdout
    assert status.count(" idle") == 2, status
    res = kernel.ok("%%distribute -f sklearn\nout = Parallel(n_jobs=-1)(delayed(slow)(i) for i in range(4))\nprint(out)")
    assert "[0, 1, 2, 3]" in res.stdout


@pytest.mark.parametrize("code, expected", [
    ("%%distribute -f sklearn --pull gs\nx = 1", "--pull does not apply to --framework sklearn"),
    ("%%distribute\nimport torch\nfrom sklearn.svm import SVC", "the cell imports torch and sklearn; say which one"),
])
def test_bad_requests_are_one_line_usage_errors(kernel, code, expected):
    res = kernel.run(code)
    assert res.status == "error" and res.ename == "UsageError", (res.ename, res.evalue)
    assert expected in res.evalue and "\n" not in res.evalue.strip()
