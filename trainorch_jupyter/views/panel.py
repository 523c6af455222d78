"""The live widget panel of a job (ipywidgets 8), built from named components.

Each component is a pure function of a Snapshot (plus, for the chart and the
logs, what the panel has kept of the stream): :func:`header_html`,
:func:`rank_rows`, :func:`chart_svg`, :func:`log_html`, :func:`stop_html`.
:class:`JobPanel` lays them out and updates them from any thread by setting
traits inside ``hold_sync()``, at most ``MAX_RATE`` times a second.

The Stop button does not go through the kernel (whose shell loop is busy while a
blocking cell runs): its front end posts to the server extension, which leaves a
stop request that the job's driver thread picks up - the same cancel path as an
interrupt or ``job.cancel()``.
"""

from __future__ import annotations

import collections
import html
import json
import threading
import time
from typing import Any

from ..model import FAILED, JOB_ROW, Snapshot
from .text import fmt_metrics, fmt_value, progress, status_text

MAX_RATE = 10.0        # updates per second, at most


def refresh_until_done(job: Any, panel: Any) -> None:
    """A panel's background thread: redraw from the job's Snapshot until the job ends, then once more.

    A failed redraw never ends the loop (the next one may well work)."""
    while not job.done:
        try:
            panel.update(job.snapshot)
        except Exception:
            pass
        time.sleep(1.0 / MAX_RATE)
    panel.update(job.snapshot, force=True)
LOGS_EVERY = 0.5       # seconds between log tab refreshes (a tab is re-sent whole)
KEEP_PANELS = 20       # panels kept alive in the kernel; older (finished) ones are closed
CHART_EVERY = 1.0      # seconds between chart redraws
LOG_LINES = 500        # lines of each rank's log kept in view
CHART_POINTS = 400     # points kept per metric and rank

STATE_COLOURS = {
    "pending": "#9e9e9e", "running": "#1e88e5", "done": "#43a047",
    "failed": "#e53935", "cancelled": "#fb8c00", "lost": "#6d4c41",
}


def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def header_html(snap: Snapshot) -> str:
    colour = STATE_COLOURS.get(snap.state, "#000")
    return (
        f"<b>{html.escape(snap.framework or 'python')}</b> job <code>{html.escape(snap.id)}</code> on "
        f"{snap.world_size} rank{'s' if snap.world_size != 1 else ''}"
        + (f" ({html.escape(snap.backend)})" if snap.backend else "")
        + f" &middot; <span style='color:{colour};font-weight:bold'>{snap.state}</span>"
        + (f" &middot; tasks {progress(snap.ranks[JOB_ROW].step, snap.ranks[JOB_ROW].total)}"
           if JOB_ROW in snap.ranks else "")
        + f" &middot; elapsed {_fmt_secs(snap.elapsed)} &middot; ETA {_fmt_secs(snap.eta)}"
        + (f"<br><span style='color:{STATE_COLOURS[FAILED]}'>{html.escape(snap.error)}</span>" if snap.error else "")
    )


def rank_rows(snap: Snapshot) -> list[dict[str, Any]]:
    """One dict per rank: what the rank table shows."""
    rows = []
    for k in sorted(r for r in snap.ranks if r >= 0):
        r = snap.ranks[k]
        rows.append({
            "rank": k, "host": r.host, "device": r.device or "-", "state": r.state,
            "step": r.step or 0, "total": r.total or 0, "progress": progress(r.step, r.total),
            "metrics": fmt_metrics(r.metrics), "error": r.error,
            "colour": STATE_COLOURS.get(r.state, "#000"),
        })
    return rows


def chart_svg(history: dict[str, dict[int, list[tuple[float, float]]]], width: int = 560,
              height: int = 160) -> str:
    """Each metric against step, one line per rank, as a small inline SVG."""
    if not history:
        return "<i>metrics appear here when the cell calls report()</i>"
    palette = ["#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41", "#3949ab"]
    parts = []
    for name in sorted(history):
        series = history[name]
        pts = [p for s in series.values() for p in s]
        if not pts:
            continue
        x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
        sx = (width - 50) / ((x1 - x0) or 1)
        sy = (height - 30) / ((y1 - y0) or 1)
        lines = []
        for i, (rank, s) in enumerate(sorted(series.items())):
            coords = " ".join(f"{45 + (x - x0) * sx:.1f},{height - 20 - (y - y0) * sy:.1f}" for x, y in s)
            lines.append(
                f"<polyline fill='none' stroke='{palette[i % len(palette)]}' stroke-width='1.5' points='{coords}'>"
                f"<title>rank {rank}</title></polyline>"
            )
        parts.append(
            f"<div style='display:inline-block;margin-right:12px'><div><b>{html.escape(name)}</b></div>"
            f"<svg width='{width}' height='{height}' style='background:#fafafa;border:1px solid #ddd'>"
            f"<text x='2' y='12' font-size='10'>{fmt_value(y1)}</text>"
            f"<text x='2' y='{height - 20}' font-size='10'>{fmt_value(y0)}</text>"
            f"<text x='45' y='{height - 5}' font-size='10'>step {fmt_value(x0)}</text>"
            f"<text x='{width - 60}' y='{height - 5}' font-size='10'>{fmt_value(x1)}</text>"
            + "".join(lines) + "</svg></div>"
        )
    return "".join(parts)


def log_html(lines: list[str], path: str) -> str:
    body = html.escape("\n".join(lines)) if lines else "(no output yet)"
    return (
        f"<pre style='max-height:220px;overflow:auto;font-size:11px;margin:0'>{body}</pre>"
        f"<div style='font-size:10px;color:#777'>last {LOG_LINES} lines; full log: {html.escape(path)}</div>"
    )


def stop_html(job_id: str, state: str) -> str:
    """A Stop button whose click goes to the server extension, not to the busy kernel."""
    if state not in ("pending", "running"):
        return ""
    js = (
        "(function(b){var c=JSON.parse((document.getElementById('jupyter-config-data')||{}).textContent||'{}');"
        "var base=(c.baseUrl||'/');var h={'Content-Type':'application/json'};"
        "var m=document.cookie.match('\\\\b_xsrf=([^;]*)\\\\b');if(m){h['X-XSRFToken']=decodeURIComponent(m[1]);}"
        "if(c.token){h['Authorization']='token '+c.token;}"
        f"b.disabled=true;b.textContent='Stopping...';"
        f"fetch(base+'trainorch/api/jobs/{job_id}/stop',{{method:'POST',headers:h,credentials:'same-origin'}})"
        ".then(function(r){if(!r.ok){b.textContent='Stop failed ('+r.status+')';b.disabled=false;}})"
        ".catch(function(e){b.textContent='Stop failed';b.disabled=false;});})(this)"
    )
    return (
        f"<button class='jupyter-button mod-danger trainorch-stop' data-job='{job_id}' "
        f"onclick=\"{html.escape(js, quote=True)}\">Stop</button>"
    )


class JobPanel:
    """The widgets of one job's panel; ``update`` is safe from any thread."""

    def __init__(self, snap: Snapshot, log_paths: dict[int, str]) -> None:
        import ipywidgets as w

        self.w = w
        self.job_id = snap.id
        self.log_paths = log_paths
        self.tails: dict[int, collections.deque] = {
            r: collections.deque(maxlen=LOG_LINES) for r in sorted(log_paths)
        }
        self.history: dict[str, dict[int, collections.deque]] = {}
        self._lock = threading.Lock()
        self._last = 0.0
        self._last_chart = 0.0
        self._last_logs = 0.0
        self.header = w.HTML(header_html(snap))
        self.rows: dict[int, dict[str, Any]] = {}
        grid = [w.HTML("<b>rank</b>"), w.HTML("<b>host</b>"), w.HTML("<b>device</b>"),
                w.HTML("<b>progress</b>"), w.HTML("<b>step</b>"), w.HTML("<b>metrics</b>"), w.HTML("<b>state</b>")]
        for row in rank_rows(snap):
            cells = {
                "rank": w.HTML(str(row["rank"])), "host": w.HTML(html.escape(row["host"])),
                "device": w.HTML(html.escape(row["device"])),
                "bar": w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width="160px")),
                "step": w.HTML(row["progress"]), "metrics": w.HTML(row["metrics"]),
                "state": w.HTML(row["state"]),
            }
            self.rows[row["rank"]] = cells
            grid += list(cells.values())
        self.table = w.GridBox(grid, layout=w.Layout(
            grid_template_columns="50px 110px 160px 170px 90px auto 180px", grid_gap="2px 8px"))
        self.chart = w.HTML(chart_svg({}))
        self.logs = w.Tab(children=[w.HTML(log_html([], log_paths[r])) for r in self.tails])
        for i, r in enumerate(self.tails):
            self.logs.set_title(i, f"rank {r}")
        self.stop = w.HTML(stop_html(snap.id, "running"))
        self.box = w.VBox([self.header, self.table, self.chart, self.logs, self.stop],
                          layout=w.Layout(border="1px solid #ccc", padding="6px"))
        self.box.add_class("trainorch-panel")

    def add_lines(self, batches: dict[int, tuple[list[str], int]]) -> None:
        with self._lock:
            for rank, (lines, _dropped) in batches.items():
                if rank in self.tails:
                    self.tails[rank].extend(lines)

    def add_metric(self, rank: int, step: float | None, metrics: dict[str, Any]) -> None:
        with self._lock:
            for name, value in metrics.items():
                if not isinstance(value, (int, float)):
                    continue
                series = self.history.setdefault(name, {}).setdefault(rank, collections.deque(maxlen=CHART_POINTS))
                series.append((step if step is not None else len(series), float(value)))

    def update(self, snap: Snapshot, force: bool = False) -> bool:
        """Refresh the widgets; skipped when the last refresh was under 1/MAX_RATE s ago."""
        now = time.monotonic()
        if not force and now - self._last < 1.0 / MAX_RATE:
            return False
        self._last = now
        with self._lock:
            tails = {r: list(t) for r, t in self.tails.items()}
            history = {n: {r: list(s) for r, s in d.items()} for n, d in self.history.items()}
        with self.box.hold_sync():
            self.header.value = header_html(snap)
            for row in rank_rows(snap):
                cells = self.rows.get(row["rank"])
                if cells is None:
                    continue
                cells["bar"].value = (row["step"] / row["total"]) if row["total"] else 0.0
                cells["step"].value = row["progress"]
                cells["metrics"].value = html.escape(row["metrics"])
                text = row["state"] + (f": {html.escape(row['error'])}" if row["error"] else "")
                cells["state"].value = f"<span style='color:{row['colour']}'>{text}</span>"
                cells["bar"].bar_style = {"failed": "danger", "done": "success", "cancelled": "warning",
                                          "lost": "danger"}.get(row["state"], "")
            if force or now - self._last_chart >= CHART_EVERY:
                self._last_chart = now
                self.chart.value = chart_svg(history)
            if force or now - self._last_logs >= LOGS_EVERY:
                self._last_logs = now
                for i, r in enumerate(self.tails):
                    self.logs.children[i].value = log_html(tails[r], self.log_paths[r])
            self.stop.value = stop_html(self.job_id, snap.state)
        return True

    def all_widgets(self) -> list[Any]:
        cells = [c for row in self.rows.values() for c in row.values()]
        return [self.header, *cells, self.table, self.chart, *self.logs.children, self.logs, self.stop, self.box]

    def bundle(self, text: str) -> dict[str, Any]:
        """The display bundle: the widget where widgets render, ``text`` elsewhere."""
        return {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.box.model_id,
            },
            "text/plain": text,
        }

    def state_json(self) -> str:
        """What the panel shows, as data (for tests and debugging)."""
        return json.dumps({
            "header": self.header.value,
            "rows": {r: {k: getattr(c, "value", None) for k, c in cells.items()} for r, cells in self.rows.items()},
            "logs": [c.value for c in self.logs.children],
            "stop": self.stop.value,
        })


def final_text(snap: Snapshot) -> str:
    return status_text(snap)


class PanelView:
    """Shows a job as a live panel: a background thread keeps it current (also while
    the user runs other cells), and the job's events feed its chart and log tabs.

    ``job`` needs ``snapshot``, ``logs.paths``, ``subscribe(fn)`` and ``done``.
    """

    def __init__(self, job: Any, background: bool) -> None:
        from IPython.display import display

        from ..model import METRIC, OUTPUT

        self.job = job
        self.panel = JobPanel(job.snapshot, job.logs.paths)
        self._partial: dict[tuple[int, str], str] = {}
        self._metric, self._output = METRIC, OUTPUT
        # subscribed after launch: replay what happened so far, so nothing is missed
        tails = job.subscribe(self._on_event, replay=True)
        self.panel.add_lines({r: (lines, 0) for r, lines in tails.items()})
        _LIVE.append(self)
        finished = [p for p in _LIVE if p.job.done]
        while len(_LIVE) > KEEP_PANELS and finished:  # an old cell's panel: free its widgets
            old = finished.pop(0)
            _LIVE.remove(old)
            old.close()
        placeholder = (
            f"{job.snapshot.framework or 'python'} job on {job.snapshot.world_size} "
            f"rank{'s' if job.snapshot.world_size != 1 else ''}: running in the background"
            if background else ""
        )
        self.handle = display(self.panel.bundle(placeholder), raw=True, display_id=True)
        self.thread = threading.Thread(target=self._loop, name=f"trainorch-panel-{job.snapshot.id}", daemon=True)
        self.thread.start()

    def _on_event(self, ev: Any) -> None:
        if ev.kind == self._metric:
            self.panel.add_metric(ev.rank, ev.data.get("step"), ev.data.get("metrics", {}))
        elif ev.kind == self._output and ev.rank is not None:
            key = (ev.rank, ev.data.get("stream", "stdout"))
            buf = self._partial.get(key, "") + ev.data.get("text", "")
            *lines, self._partial[key] = buf.split("\n")
            if lines:
                self.panel.add_lines({ev.rank: (lines, 0)})

    def _loop(self) -> None:
        refresh_until_done(self.job, self.panel)

    def close(self) -> None:
        """Close the widgets (their models leave the kernel and the browser)."""
        for widget in self.panel.all_widgets():
            widget.close()

    def final(self) -> None:
        """From the cell's own thread: swap the live display for the final one."""
        from IPython.display import display

        self.thread.join(5)
        self.panel.update(self.job.snapshot, force=True)
        self.handle.update({"text/plain": ""}, raw=True)
        display(self.panel.bundle(status_text(self.job.snapshot)), raw=True)


_LIVE: list[PanelView] = []


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
