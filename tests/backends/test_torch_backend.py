import pytest

from trainorch_jupyter import backends
from trainorch_jupyter.backends import torch_backend as tb
from trainorch_jupyter.jobs.source import CellError, detect_framework, parse


def test_rank_env_is_torchrun_compatible():
    env = tb.rank_env(rank=3, local_rank=1, world_size=4, local_world_size=2, group_rank=1,
                      master_addr="10.1.2.3", master_port=29511)
    assert env == {
        "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29511",
    }


def test_default_backend():
    assert tb.default_backend(["cuda:GPU-1", "cuda:GPU-2"]) == "nccl"
    assert tb.default_backend(["cuda:0", "cpu"]) == "gloo"
    assert tb.default_backend(["cpu", "cpu"]) == "gloo"
    assert tb.DEFAULT_TIMEOUT == 300.0


def test_framework_names():
    assert backends.canonical("PyTorch") == "torch" and backends.canonical("keras") == "tensorflow"
    with pytest.raises(backends.UnknownFramework):
        backends.canonical("caffe")


@pytest.mark.parametrize(
    "src, expected",
    [
        ("import torch\nx = 1", "torch"),
        ("from torch.nn import Linear", "torch"),
        ("import torchvision.models as m", "torch"),
        ("import numpy as np", None),
        ("%matplotlib inline\nimport torch", "torch"),  # IPython syntax is understood
        ("def f():\n    import tensorflow as tf\n", "tensorflow"),
        ("from .torch import x", None),  # relative import: not the framework
    ],
)
def test_detection_parses_the_cell_without_running_it(src, expected):
    assert detect_framework(parse(src)) == expected


def test_two_frameworks_are_ambiguous():
    with pytest.raises(CellError, match="imports torch and tensorflow; say which one"):
        detect_framework(parse("import torch\nimport keras"))
