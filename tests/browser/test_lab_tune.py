"""%tune in a real JupyterLab (headless Chromium): the trial table fills in live, and Stop ends the search."""

from __future__ import annotations

import os
import time

import nbformat
import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab
from .test_lab_panel import prompts_idle_js

OBJECTIVE = (
    "import time\n"
    "def objective(trial):\n"
    "    x = trial.suggest_float('x', -1, 1)\n"
    "    for step in range(4):\n"
    "        trial.report(x * x + 1 / (step + 1), step)\n"
    "        time.sleep(0.1)\n"
    "    return x * x\n"
)


@pytest.fixture
def notebook_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext trainorch_jupyter\n" + OBJECTIVE),
                nbformat.v4.new_code_cell("%tune objective --trials 500 --pruner none")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "tune.ipynb"))
    return tmp_path


def test_trial_table_fills_in_and_stop_ends_the_search(notebook_dir):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    shots = os.environ.get("TRAINORCH_SCREENSHOT_DIR") or str(notebook_dir)
    with jupyter_lab(str(notebook_dir)) as (url, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 950})
            page.goto(f"{url}lab/tree/tune.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            time.sleep(2)
            page.click(".jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            page.wait_for_function(
                "() => document.querySelectorAll('.jp-InputPrompt')[0].textContent.includes('1')", timeout=60_000
            )
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".trainorch-tune", timeout=90_000)
            page.wait_for_function(  # trials finish and the table grows while the cell runs
                "() => (document.querySelector('.trainorch-tune').innerText.match(/COMPLETE/g) || []).length >= 4",
                timeout=90_000,
            )
            text = page.inner_text(".trainorch-tune")
            for column in ("trial", "params", "intermediate", "duration", "engine", "device"):
                assert column in text
            assert "RUNNING" in text and "cpu" in text and "best" in text
            assert page.locator(".trainorch-tune svg circle").count() >= 4  # the optimization history
            assert page.locator("button.trainorch-stop").count() == 1
            page.screenshot(path=os.path.join(shots, "tune-panel.png"))

            t0 = time.monotonic()
            page.click("button.trainorch-stop")
            page.wait_for_function(prompts_idle_js(), timeout=15_000)
            assert time.monotonic() - t0 < 15
            page.wait_for_function("() => document.body.innerText.includes('study stopped from the panel')",
                                   timeout=10_000)
            assert page.locator("button.trainorch-stop").count() == 0
            assert "RUNNING" not in page.inner_text(".trainorch-tune")  # the running trials are FAIL now
        finally:
            browser.close()
