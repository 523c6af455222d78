"""Print the path of the nbval sanitize file shipped with trainorch-jupyter.

    pytest --nbval --nbval-sanitize-with "$(python -m trainorch_jupyter.sanitize)" notebooks/
"""

from __future__ import annotations

import os


def path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbval_sanitize.cfg")


if __name__ == "__main__":
    print(path())
