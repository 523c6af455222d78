"""%tune and %%tune in a real IPython kernel, as a notebook runs them."""

from __future__ import annotations

import threading

import pytest

from ..kernel_client import Kernel

pytestmark = pytest.mark.kernel
HEAVY = "import sys; print(sorted(m for m in ('optuna', 'torch', 'tensorflow') if m in sys.modules))"


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    assert k.ok(HEAVY).stdout.strip() == "[]"
    k.ok("%load_ext trainorch_jupyter")
    k.ok("def objective(trial):\n    return trial.suggest_float('x', 0, 1)")
    yield k
    k.run("%cluster stop")
    k.shutdown()


def test_loading_the_extension_does_not_import_optuna(kernel):
    assert kernel.ok(HEAVY).stdout.strip() == "[]"  # loaded by the fixture


def test_tune_a_notebook_function_and_keep_the_study(kernel):
    kernel.ok(
        "def objective(trial):\n"
        "    x = trial.suggest_float('x', -3, 3)\n"
        "    trial.report(x * x, 0)\n"
        "    return (x - 1) ** 2\n"
    )
    res = kernel.ok("%tune objective --trials 4 --sampler random --seed 3 --pruner none --study fn --out study",
                    timeout=180)
    assert "study fn (minimize; random sampler, none pruner): done" in res.text
    assert "4 trials: 4 complete" in res.text and "best_params: {'x':" in res.stdout
    assert kernel.ok("print(type(study).__name__, len(study.trials), round(study.best_value, 6) >= 0)"
                     ).stdout.split() == ["Study", "4", "True"]
    # the kernel may import optuna for %tune, never a framework
    assert kernel.ok(HEAVY).stdout.strip() == "['optuna']"


def test_the_cell_form_and_show(kernel):
    kernel.ok("target = 0.25")
    res = kernel.ok("%%tune --trials 3 --study cellform --pruner none --seed 0 --push target\n"
                    "x = trial.suggest_float('x', 0, 1)\n"
                    "(x - target) ** 2\n", timeout=180)
    assert "study cellform" in res.text and "3 trials: 3 complete" in res.text
    shown = kernel.ok("%tune --show cellform")
    assert "study cellform (minimize; tpe sampler, none pruner): done" in shown.text
    assert shown.text.count("COMPLETE") == 3


def test_bad_flags_are_one_line_usage_errors(kernel):
    cases = {
        "%tune objective --trials 2 --sampler bogus": "--sampler bogus: unknown sampler",
        "%tune objective --trials 2 --pruner bogus": "--pruner bogus: unknown pruner",
        "%tune nosuch --trials 2": "%tune nosuch: no such name in the notebook",
        "%tune objective": "%tune needs --trials N",
        "%tune objective --trials 2 --engines-per-trial 5": "--engines-per-trial 5: this pool has 2 engines",
        "%tune objective --trials 2 --storage bogus": "not a storage URL",
        "%tune objective --trials 2 --bogus": "unrecognized arguments: --bogus",
        "%tune --show nosuchstudy": "no study 'nosuchstudy'",
        "x = 5\n%tune x --trials 2": "not a function",
    }
    for line, message in cases.items():
        res = kernel.run(line)
        assert res.status == "error" and res.ename == "UsageError", (line, res.ename, res.stderr)
        text = res.evalue
        assert message in text, (line, text)
        assert len(text.strip().splitlines()) == 1, (line, text)
    assert "2 CPU engines" in kernel.ok("%cluster status").stdout


def test_interrupt_fails_running_trials_and_a_rerun_resumes(kernel):
    kernel.ok(
        "import time\n"
        "def slow(trial):\n"
        "    trial.suggest_float('x', 0, 1)\n"
        "    time.sleep(60)\n"
        "    return 1.0\n"
        "def quick(trial):\n"
        "    return trial.suggest_float('x', 0, 1)\n"
    )
    timer = threading.Timer(5.0, kernel.km.interrupt_kernel)
    res = kernel.run("%tune slow --trials 4 --study intr", timeout=120, on_start=timer.start)
    assert res.ename == "KeyboardInterrupt"
    states = kernel.ok(
        "from trainorch_jupyter import api\n"
        "j = api.jobs()[-1]\n"
        "print(j.state, sorted(set(t['state'] for t in j.snapshot.trials.values())), len(j.snapshot.trials))"
    ).stdout.strip()
    assert states == "cancelled ['FAIL'] 4"  # 2 running and 2 waiting behind them: none left RUNNING
    status = kernel.ok("%cluster status").stdout
    assert status.count(" idle") == 2, status
    res = kernel.ok("%tune quick --trials 2 --study intr --out again", timeout=120)
    assert "6 trials: 2 complete, 4 failed" in res.text
    assert kernel.ok("print(sorted(t.state.name for t in again.trials))").stdout.strip() == \
        "['COMPLETE', 'COMPLETE', 'FAIL', 'FAIL', 'FAIL', 'FAIL']"
