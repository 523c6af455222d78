"""Execute a notebook headless and print what its cells printed.

    python notebooks/run_notebook.py notebooks/01_distributed_training.ipynb

Exits non-zero when a cell fails, so it doubles as a smoke check.
"""

from __future__ import annotations

import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(path: str) -> int:
    nb = nbformat.read(path, as_version=4)
    t0 = time.monotonic()
    client = NotebookClient(nb, timeout=600, kernel_name="python3")
    failed = None
    try:
        client.execute()
    except CellExecutionError as e:
        failed = e
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                sys.stdout.write(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                text = out.get("data", {}).get("text/plain", "")
                if text:
                    print(text)
    if failed is not None:
        print(f"\n{path}: a cell failed:\n{failed}", file=sys.stderr)
        return 1
    print(f"\n{path}: ran in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "notebooks/01_distributed_training.ipynb"))
