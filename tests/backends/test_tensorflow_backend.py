"""The TensorFlow backend's pure parts: TF_CONFIG, detection, availability (no TensorFlow import)."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from trainorch_jupyter import api, backends
from trainorch_jupyter.backends import tensorflow_backend as tfb
from trainorch_jupyter.jobs.source import CellError, detect_framework, parse

WORKERS = ["10.0.0.1:41001", "10.0.0.2:41002", "10.0.0.2:41003"]


def test_tf_config_lists_every_worker_and_this_task():
    for index in range(3):
        cfg = json.loads(tfb.tf_config(WORKERS, index))
        assert cfg == {"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": index}}
    with pytest.raises(ValueError, match="task index 3 is outside the 3 workers"):
        tfb.tf_config(WORKERS, 3)


def test_rank_env_sets_tf_config_and_legacy_keras():
    env = tfb.rank_env(rank=2, local_rank=1, world_size=3, local_world_size=2, group_rank=1,
                       master_addr="10.0.0.1", master_port=41001, workers=WORKERS)
    assert json.loads(env.pop("TF_CONFIG"))["task"] == {"type": "worker", "index": 2}
    assert env == {"TF_USE_LEGACY_KERAS": "1", "RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "1"}
    with pytest.raises(ValueError, match="2 worker addresses for 3 ranks"):
        tfb.rank_env(rank=0, world_size=3, workers=WORKERS[:2])


def test_protocol_and_defaults():
    assert backends.get("tf") is tfb and backends.get("keras") is tfb and backends.get("TensorFlow") is tfb
    assert tfb.NAME == "tensorflow" and set(tfb.MODULES) == {"tensorflow", "keras", "tf_keras"}
    for target in (tfb.SETUP, tfb.TEARDOWN, tfb.PREPARE):
        assert target.startswith("trainorch_jupyter.runtime.tf_dist:")
    assert tfb.RENDEZVOUS == "every rank" and tfb.ONCE_PER_PROCESS == ("tensorflow",)
    assert tfb.default_backend(["cpu", "cpu"]) == "ring"
    assert tfb.default_backend(["cuda:0", "cuda:1"]) == "nccl"
    assert tfb.default_backend(["cuda:0", "cpu"]) == "ring"
    assert tfb.DEFAULT_TIMEOUT == 0.0  # no collective timeout unless asked: it costs a thread per collective
    assert tfb.install_hint() == 'pip install "trainorch-jupyter[tensorflow]"'


@pytest.mark.parametrize(
    "src, expected",
    [
        ("import tensorflow as tf", "tensorflow"),
        ("from tensorflow import keras", "tensorflow"),
        ("import keras\nfrom keras import layers", "tensorflow"),
        ("import tf_keras", "tensorflow"),
        ("from trainorch_jupyter.runtime import KerasReport", None),
    ],
)
def test_detection(src, expected):
    assert detect_framework(parse(src)) == expected


def test_tensorflow_and_torch_together_need_a_framework_flag():
    with pytest.raises(CellError, match="imports torch and tensorflow; say which one to set up with --framework"):
        detect_framework(parse("import torch\nimport tensorflow as tf"))


def _hide(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_missing_tensorflow_is_a_one_line_error_with_the_install_hint(monkeypatch):
    _hide(monkeypatch, "tensorflow")
    assert not tfb.is_available()
    before = api.current_pool()
    for framework in ("tensorflow", "tf", "keras"):
        with pytest.raises(api.LaunchError) as e:
            api.distribute("x = 1", framework=framework, log=lambda s: None)
        assert str(e.value) == 'tensorflow is not installed: pip install "trainorch-jupyter[tensorflow]"'
    with pytest.raises(api.LaunchError, match="tensorflow is not installed"):  # detected from the imports
        api.distribute("import tensorflow as tf\nx = 1", log=lambda s: None)
    assert api.current_pool() is before  # checked before anything started: not even a pool


def test_missing_tf_keras_names_the_matching_release(monkeypatch):
    _hide(monkeypatch, "tf_keras")
    trouble = tfb.problem()
    assert trouble.startswith("tf_keras is not installed") and "\n" not in trouble
    assert re.search(r'pip install "tf_keras==\d+\.\d+\.\*"$', trouble), trouble


def test_nothing_on_the_kernel_side_imports_tensorflow():
    code = (
        "import sys\n"
        "import trainorch_jupyter, trainorch_jupyter.api, trainorch_jupyter.magics, trainorch_jupyter.runtime\n"
        "from trainorch_jupyter.backends import tensorflow_backend as b\n"
        "b.problem(); b.rank_env(rank=0, world_size=1, workers=['h:1'])\n"
        "import trainorch_jupyter.runtime as rt\n"
        "rt.rank(); rt.report(step=1)\n"
        "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
