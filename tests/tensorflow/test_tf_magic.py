"""`%%distribute --framework tensorflow|tf|keras` in a real IPython kernel, without a TensorFlow install.

TensorFlow is hidden from the kernel by a patched ``importlib.util.find_spec`` (not uninstalled):
the cell is refused with a one-line UsageError before anything starts, and the kernel stays light.
"""

import pytest

from ..kernel_client import Kernel

HIDE = (
    "import importlib.util as _u\n"
    "_u._real_find_spec = getattr(_u, '_real_find_spec', _u.find_spec)\n"
    "_u.find_spec = lambda name, *a, **k: None if name in {hidden!r} else _u._real_find_spec(name, *a, **k)\n"
)
MODULES = "import sys; print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))"


def usage_error(res) -> str:
    """The one-line UsageError a cell printed.  Read from stderr, and the cells after it use
    run(), not ok(): kernel_client.run takes the next shell reply without matching its parent,
    and after a UsageError that can be the previous cell's."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), res.stderr
    return lines[0][len("UsageError: "):]


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    k.ok("%load_ext trainorch_jupyter")
    yield k
    k.run("%cluster stop")
    k.shutdown()


@pytest.mark.parametrize("flag", ["--framework tensorflow", "--framework tf", "-f keras", ""])
def test_missing_tensorflow_is_a_usage_error_with_the_install_hint(kernel, flag):
    kernel.run(HIDE.format(hidden=("tensorflow",)))
    res = kernel.run(f"%%distribute {flag}\nimport tensorflow as tf\nx = 1")
    # IPython shows a UsageError as one line on stderr (the shell reply is not read: see usage_error)
    assert usage_error(res) == 'tensorflow is not installed: pip install "trainorch-jupyter[tensorflow]"'
    assert "No pool is running" in kernel.run("%cluster status").stdout  # nothing was started
    assert kernel.run(MODULES).stdout.strip() == "[]"


def test_missing_tf_keras_is_a_usage_error_naming_the_release(kernel):
    kernel.run(HIDE.format(hidden=("tf_keras",)))
    res = kernel.run("%%distribute --framework tf\nx = 1")
    line = usage_error(res)
    assert line.startswith("tf_keras is not installed") and 'pip install "tf_keras==' in line
    assert "No pool is running" in kernel.run("%cluster status").stdout  # refused before any pool started
    assert kernel.run(MODULES).stdout.strip() == "[]"
