"""%validate in a real IPython kernel, as a notebook runs it."""

from __future__ import annotations

import pytest

from ..kernel_client import Kernel

FRAMEWORKS = "import sys; print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))"

SETUP = """\
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
clf = LogisticRegression(max_iter=1000).fit(X_train, y_train)
"""


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    k.ok("%load_ext trainorch_jupyter")
    k.ok(SETUP, timeout=180)
    yield k
    k.run("%cluster stop")
    k.shutdown()


def test_a_passing_validation_shows_its_table_and_keeps_the_result(kernel):
    res = kernel.ok("%validate clf --data X_val,y_val --min accuracy=0.9 --max log_loss=0.5 --name digits-lr")
    plain = res.displays[-1]["text/plain"]
    assert plain.startswith("validation digits-lr: passed (2/2 checks passed) - LogisticRegression(max_iter=1000)")
    assert "confusion matrix" in plain and "<svg" in res.displays[-1]["text/html"]
    assert kernel.ok("print(_validation['passed'], _validation['name'])").stdout.strip() == "True digits-lr"
    assert kernel.ok(FRAMEWORKS).stdout.strip() == "[]"  # a scikit-learn model needs no framework


def test_a_missed_bound_fails_the_cell_with_validation_failed(kernel):
    res = kernel.run("%validate clf --data X_val,y_val --min accuracy=0.999 --max log_loss=0.5")
    assert res.status == "error" and res.ename == "ValidationFailed"
    assert "accuracy = 0.9" in res.evalue and "< min 0.999" in res.evalue
    assert "FAIL" in res.displays[-1]["text/plain"]  # the table is shown before the error


def test_a_regression_against_the_baseline_fails_and_says_by_how_much(kernel):
    kernel.ok("weak = LogisticRegression(max_iter=1000, C=0.001).fit(X_train, y_train)")
    res = kernel.run("%validate weak --data X_val,y_val --metrics accuracy,f1 --baseline digits-lr "
                     "--tolerance 0.01 --name digits-weak")
    assert res.ename == "ValidationFailed", res.evalue
    assert "accuracy = " in res.evalue and "regressed by" in res.evalue and "tolerance 0.01" in res.evalue
    # the same model against itself passes (tolerance 0)
    kernel.ok("%validate clf --data X_val,y_val --baseline digits-lr --name digits-lr")


def test_bad_input_is_a_one_line_usage_error(kernel):
    kernel.ok("not_a_model = 42\ndef my_metric(y_true, y_pred):\n    return 1.0")
    cases = {
        "%validate clf --data X_val,y_val --metrics bogus": "unknown metric 'bogus'",
        "%validate clf --data X_val,y_train": "X has 450 samples but y has 1347",
        "%validate clf --data X_val": "give two names",
        "%validate clf --data X_nope,y_val": "--data X_nope: no such name",
        "%validate not_a_model --data X_val,y_val": "is of type int, which %validate cannot evaluate",
        "%validate clf --data X_val,y_val --baseline no-such-run": "--baseline no-such-run: no validation",
        "%validate clf --data X_val,y_val --cv 5000": "--cv 5000: only 450 samples",
        "%validate clf --data X_val,y_val --min accuracy": "--min accuracy: write metric=value",
        "%validate clf --data X_val,y_val --bogus": "unknown option --bogus",
        "%validate clf --data X_val,y_val --task banana": "--task banana: use classification or regression",
        "%validate": "usage: %validate MODEL --data X,y",
    }
    for code, expected in cases.items():
        res = kernel.run(code)
        assert res.status == "error" and res.ename == "UsageError", (code, res.ename, res.evalue)
        assert expected in res.evalue and "\n" not in res.evalue.strip(), (code, res.evalue)
    kernel.ok("%validate clf --data X_val,y_val --metrics accuracy,my_metric --min my_metric=1")


def test_a_network_on_the_engines_is_validated_there_and_the_kernel_stays_light(kernel):
    kernel.ok(
        "%%distribute --framework torch --push X_train,y_train\n"
        "import torch\n"
        "from torch import nn\n"
        "from torch.nn.parallel import DistributedDataParallel as DDP\n"
        "torch.manual_seed(0)\n"
        "net = DDP(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)))\n"
        "opt = torch.optim.Adam(net.parameters(), lr=3e-3)\n"
        "Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)\n"
        "for _ in range(80):\n"
        "    opt.zero_grad()\n"
        "    nn.functional.cross_entropy(net(Xt), yt).backward()\n"
        "    opt.step()\n",
        timeout=240,
    )
    res = kernel.ok("%validate net --data X_val,y_val --min accuracy=0.85 --name digits-net", timeout=120)
    plain = res.displays[-1]["text/plain"]
    assert "validation digits-net: passed" in plain and "evaluated on 2 ranks" in plain
    assert kernel.ok(FRAMEWORKS).stdout.strip() == "[]"  # evaluated where it lives: torch never came here
    listing = kernel.ok("%runs -n 3").stdout
    assert "%validate net --data X_val,y_val" in listing
