"""The sidebar in a real JupyterLab (headless Debian Chromium): the pool and the job a notebook cell
started show up, the job opens in the main area with logs and a chart, and the sidebar's Stop ends the
running cell.  The same under a JupyterHub-style base URL.
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab
from .test_lab_panel import prompts_idle_js

CELL = (
    "%%distribute\n"
    "import time\n"
    "from trainorch_jupyter.runtime import report, rank\n"
    "for i in range(3000):\n"
    "    report(step=i + 1, total=3000, loss=1.0 / (i + 1) + 0.01 * rank())\n"
    "    if i % 5 == 0:\n"
    "        print('rank', rank(), 'step', i, flush=True)\n"
    "    time.sleep(0.05)\n"
)
DOCS_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "docs", "images")


@pytest.fixture
def notebook_dir(tmp_path, monkeypatch):
    from tests.server.fixtures import fake_nvidia_smi_with_stats

    # a store of its own: the sidebar lists this test's pool and job only
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    # two simulated GPUs (memory used, utilisation) for the kernel, its engines and the server; the cell
    # is plain Python, so nothing touches CUDA
    fake_nvidia_smi_with_stats(str(tmp_path / "smi"))
    monkeypatch.setenv("PATH", str(tmp_path / "smi") + os.pathsep + os.environ["PATH"])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext trainorch_jupyter"), nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "train.ipynb"))
    return tmp_path


def _text(page, selector: str) -> str:
    return page.inner_text(selector) if page.locator(selector).count() else ""


@pytest.mark.parametrize("base_url", ["/", "/user/test/"])
def test_sidebar_shows_the_job_a_cell_started_and_stops_it(notebook_dir, base_url):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    shots = base_url == "/"
    shot_dir = os.environ.get("TRAINORCH_SCREENSHOT_DIR") or (DOCS_IMAGES if shots else str(notebook_dir))
    with jupyter_lab(str(notebook_dir), base_url=base_url) as (url, token), sync_playwright() as p:
        assert url.endswith(base_url)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            api_calls: list[str] = []
            page.on("request", lambda r: api_calls.append(r.url) if "/trainorch/api/" in r.url else None)
            page.goto(f"{url}lab/tree/train.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)

            no_news = page.locator(".jp-toast-button:has-text('No'), .Toastify button:has-text('No')")
            # the sidebar is there, and empty before anything ran
            tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='trainorch-sidebar']")
            tab.wait_for(timeout=60_000)
            tab.click()
            page.wait_for_selector("#trainorch-sidebar .trainorch-section-jobs .trainorch-empty", timeout=30_000)
            assert "No pool" in _text(page, "#trainorch-sidebar .trainorch-section-pool")

            time.sleep(1)
            page.click(".jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            page.wait_for_function(
                "() => document.querySelectorAll('.jp-InputPrompt')[0].textContent.includes('1')", timeout=60_000)
            page.keyboard.press("Shift+Enter")  # the %%distribute cell: it starts the default pool, then runs

            job = page.locator("#trainorch-sidebar .trainorch-job").first
            job.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => { const j = document.querySelector('#trainorch-sidebar .trainorch-job');"
                " return j && j.innerText.includes('running'); }", timeout=60_000)
            job_id = job.get_attribute("data-job-id")
            assert job_id and len(job_id) >= 6
            # the pool: 2 (simulated) GPU engines, both busy with this job, with memory and utilisation
            page.wait_for_function(
                "() => (document.querySelector('#trainorch-sidebar .trainorch-engines')?.innerText.match(/busy/g)"
                " || []).length === 2", timeout=30_000)
            pool_text = _text(page, "#trainorch-sidebar .trainorch-section-pool")
            assert "2 GPU engines" in pool_text and "running" in pool_text
            assert "20.0 / 79.6 GiB · 87%" in pool_text  # GPU 0 as nvidia-smi reports it
            assert "GPU 1 NVIDIA Fake H100" in pool_text
            assert "distribute" in job.inner_text() and "2 ranks" in job.inner_text()

            # the job opens in the main area: ranks, per-rank logs, the metrics chart
            job.click()
            view = page.locator(".trainorch-jobview").first
            view.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => (document.querySelector('.trainorch-jobview .trainorch-log')?.textContent || '')"
                ".includes('rank 0 step')", timeout=30_000)
            page.wait_for_selector(".trainorch-jobview .trainorch-chart-svg path[data-rank='1']", timeout=30_000)
            assert "/3000" in view.inner_text() and "loss" in view.inner_text()
            page.click(".trainorch-jobview .trainorch-rank-tab[data-rank='1']")
            page.wait_for_function(
                "() => (document.querySelector('.trainorch-jobview .trainorch-log')?.textContent || '')"
                ".includes('rank 1 step')", timeout=30_000)
            if no_news.count():
                no_news.first.click()  # the "Jupyter news?" toast would cover the screenshots
            if shots:
                time.sleep(3)  # a few more points on the chart
                page.screenshot(path=os.path.join(shot_dir, "sidebar-job-view.png"))

            # an action without the XSRF token is refused, even with the login cookie
            refused = page.request.post(f"{url}trainorch/api/jobs/{job_id}/stop", data="{}")
            assert refused.status == 403
            assert not _text(page, ".trainorch-jobview .trainorch-job-header").count("cancelled")

            # back to the notebook, with the sidebar open; Stop in the sidebar ends the cell
            page.click(".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('train.ipynb')")
            if shots:
                time.sleep(1)
                page.screenshot(path=os.path.join(shot_dir, "sidebar.png"))
            t0 = time.monotonic()
            page.click(f"#trainorch-sidebar .trainorch-job[data-job-id='{job_id}'] .trainorch-job-stop")
            page.wait_for_function(prompts_idle_js(), timeout=30_000)
            assert time.monotonic() - t0 < 30
            page.wait_for_function(
                f"() => document.querySelector(\"#trainorch-sidebar .trainorch-job[data-job-id='{job_id}']\")"
                ".innerText.includes('cancelled')", timeout=30_000)
            assert page.locator(f"#trainorch-sidebar .trainorch-job[data-job-id='{job_id}'] .trainorch-job-stop"
                                ).count() == 0
            page.wait_for_function(
                "() => !(document.querySelector('#trainorch-sidebar .trainorch-engines')?.innerText || 'busy')"
                ".includes('busy')", timeout=30_000)
            # every API call went under the base URL
            assert api_calls and all(c.startswith(f"{url}trainorch/api/") for c in api_calls), api_calls[:5]
        finally:
            browser.close()


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A store holding a study and a validation (written as %tune/%validate would), and a notebook."""
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    from trainorch_jupyter.server.manager import TrainorchManager

    from tests.server.fixtures import study_events, validation_events

    st = TrainorchManager().store
    st.write_events(study_events())
    st.write_events(validation_events())
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext trainorch_jupyter\n%cluster start -n 2")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "pool.ipynb"))
    return tmp_path


def test_studies_validations_and_pool_actions(store_dir):
    from playwright.sync_api import sync_playwright

    from tests.server.fixtures import STUDY_JOB

    shot_dir = os.environ.get("TRAINORCH_SCREENSHOT_DIR") or DOCS_IMAGES
    with jupyter_lab(str(store_dir)) as (url, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}lab/tree/pool.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            page.locator(".jp-SideBar .lm-TabBar-tab[data-id='trainorch-sidebar']").click()

            # studies and validations, straight from the store
            study = page.locator(f"#trainorch-sidebar .trainorch-study[data-study-id='{STUDY_JOB}']")
            study.wait_for(timeout=30_000)
            assert "digits" in study.inner_text() and "best 0.9 (#0)" in study.inner_text()
            val = page.locator("#trainorch-sidebar .trainorch-validation").first
            assert "digits-mlp" in val.inner_text() and "passed" in val.inner_text()
            assert "accuracy 0.95" in val.inner_text()
            study.click()
            page.wait_for_selector(".trainorch-studyview .trainorch-trial-table tr[data-trial='1']", timeout=30_000)
            table = page.inner_text(".trainorch-studyview .trainorch-trial-table")
            assert "COMPLETE" in table and "PRUNED" in table and "lr" in table
            assert page.locator(".trainorch-studyview tr.trainorch-best[data-trial='0']").count() == 1
            no_news = page.locator(".jp-toast-button:has-text('No')")
            if no_news.count():
                no_news.first.click()
            time.sleep(1)
            page.screenshot(path=os.path.join(shot_dir, "sidebar-study.png"))

            # a validate job opens with its verdict and bounds; a tune job links to its trials
            from tests.server.fixtures import VALID_JOB

            page.click(f"#trainorch-sidebar .trainorch-job[data-job-id='{VALID_JOB}']")
            page.wait_for_selector(".trainorch-jobview .trainorch-validation-result", timeout=30_000)
            verdict = page.inner_text(".trainorch-jobview .trainorch-validation-result")
            assert "digits-mlp" in verdict and "passed" in verdict and ">= 0.93" in verdict and "0.95" in verdict
            page.click(f"#trainorch-sidebar .trainorch-job[data-job-id='{STUDY_JOB}'] .trainorch-dim")
            page.wait_for_selector(".trainorch-jobview .trainorch-open-study", timeout=30_000)

            # a pool started in the notebook; restart one engine, then stop the pool, from the sidebar
            page.click(".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('pool.ipynb')")
            page.click(".jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            pool = page.locator("#trainorch-sidebar .trainorch-pool").first
            pool.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => (document.querySelector('#trainorch-sidebar .trainorch-engines')?.innerText.match(/idle/g)"
                " || []).length === 2", timeout=60_000)
            rows = page.locator("#trainorch-sidebar .trainorch-engines tbody tr")
            before = [rows.nth(k).get_attribute("data-engine") for k in range(2)]
            rows.nth(1).locator(".trainorch-engine-restart").click()
            page.locator(".jp-Dialog .jp-mod-accept").click()  # confirm
            page.wait_for_function(
                f"() => {{ const r = document.querySelectorAll('#trainorch-sidebar .trainorch-engines tbody tr');"
                f" return r.length === 2 && r[1].getAttribute('data-engine') !== '{before[1]}'"
                f" && r[1].innerText.includes('idle'); }}", timeout=120_000)
            assert rows.nth(0).get_attribute("data-engine") == before[0]
            page.locator("#trainorch-sidebar .trainorch-pool-stop").click()
            page.locator(".jp-Dialog .jp-mod-accept").click()
            page.wait_for_function(
                "() => { const p = document.querySelector('#trainorch-sidebar .trainorch-pool');"
                " return p && p.innerText.includes('stopped'); }", timeout=60_000)
            assert page.locator("#trainorch-sidebar .trainorch-pool-stop").count() == 0

            # polling pauses while the sidebar is collapsed (and the study view is in the background) ...
            calls: list[str] = []
            page.on("request", lambda r: calls.append(r.url) if "/trainorch/api/" in r.url else None)
            page.locator(".jp-SideBar .lm-TabBar-tab[data-id='trainorch-sidebar']").click()
            page.wait_for_selector("#trainorch-sidebar", state="hidden", timeout=10_000)
            time.sleep(1.5)  # a request already on its way may still land
            calls.clear()
            time.sleep(6)  # three poll intervals
            assert calls == [], calls
            # ... and showing it again polls at once
            page.locator(".jp-SideBar .lm-TabBar-tab[data-id='trainorch-sidebar']").click()
            deadline = time.monotonic() + 5
            while not calls and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert any(c.split("?")[0].endswith("/trainorch/api/pools") for c in calls), calls

            # the settings schema is served, and a saved setting is used (after a reload)
            got = page.request.get(f"{url}lab/api/settings/trainorch-jupyter:plugin")
            assert got.ok and got.json()["schema"]["properties"]["pollInterval"]["default"] == 2000
            xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
            put = page.request.put(f"{url}lab/api/settings/trainorch-jupyter:plugin",
                                   data='{"raw": "{\\"showValidations\\": false}"}',
                                   headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"})
            assert put.status == 204, put.text()
            page.reload()
            tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='trainorch-sidebar']")
            tab.wait_for(timeout=90_000)
            if not page.locator("#trainorch-sidebar").is_visible():
                tab.click()
            page.wait_for_selector("#trainorch-sidebar .trainorch-section-studies .trainorch-study", timeout=60_000)
            assert not page.locator("#trainorch-sidebar .trainorch-section-validations").is_visible()
        finally:
            browser.close()
