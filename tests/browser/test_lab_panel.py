"""A real JupyterLab in headless Chromium: the panel renders, and Stop stops a blocking cell."""

from __future__ import annotations

import os
import shutil
import time

import nbformat
import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab

CELL = (
    "%%distribute\n"
    "import time\n"
    "from trainorch_jupyter.runtime import report, rank\n"
    "for i in range(3000):\n"
    "    report(step=i + 1, total=3000, loss=1.0 / (i + 1))\n"
    "    if i % 10 == 0:\n"
    "        print('step', i, flush=True)\n"
    "    time.sleep(0.05)\n"
)


@pytest.fixture
def notebook_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext trainorch_jupyter"), nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "panel.ipynb"))
    return tmp_path


def prompts_idle_js() -> str:
    return "() => [...document.querySelectorAll('.jp-InputPrompt')].every(e => !e.textContent.includes('*'))"


def test_panel_renders_and_stop_ends_a_blocking_cell(notebook_dir):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    shots = os.environ.get("TRAINORCH_SCREENSHOT_DIR") or str(notebook_dir)
    with jupyter_lab(str(notebook_dir)) as (url, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 950})
            page.goto(f"{url}lab/tree/panel.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            time.sleep(2)
            page.click(".jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            page.wait_for_function(
                "() => document.querySelectorAll('.jp-InputPrompt')[0].textContent.includes('1')", timeout=60_000
            )
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".trainorch-panel", timeout=90_000)
            # one row per rank, fed by report()
            page.wait_for_function(
                "() => (document.querySelector('.trainorch-panel').innerText.match(/\\/3000/g) || []).length >= 2",
                timeout=60_000,
            )
            text = page.inner_text(".trainorch-panel")
            assert "rank" in text and "progress" in text and text.count("cpu") >= 2 and "running" in text
            assert page.locator("button.trainorch-stop").count() == 1
            time.sleep(2)
            page.screenshot(path=os.path.join(shots, "panel.png"))

            t0 = time.monotonic()
            page.click("button.trainorch-stop")
            page.wait_for_function(prompts_idle_js(), timeout=10_000)  # the cell ended within 10 s
            elapsed = time.monotonic() - t0
            assert elapsed < 10
            page.wait_for_function("() => document.body.innerText.includes('job stopped from the panel')",
                                   timeout=10_000)
            page.screenshot(path=os.path.join(shots, "panel-stopped.png"))
        finally:
            browser.close()
