"""The view of a ``%tune`` study run: trial table, best so far, optimization history.

As in :mod:`.panel`, each component is a pure function of a Snapshot
(:func:`trial_rows`, :func:`best_row`, :func:`study_header_html`,
:func:`trials_html`, :func:`history_svg`; the Stop control is the panel's
:func:`~.panel.stop_html`), and :func:`study_text` is the deterministic
text/plain form (no ids, engines, hosts or timings) that nbval compares.
:class:`TunePanelView` shows them live as widgets.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

from ..model import Snapshot
from .panel import MAX_RATE, STATE_COLOURS, _fmt_secs, refresh_until_done, stop_html
from .text import fmt_value

TRIAL_COLOURS = {"RUNNING": "#1e88e5", "COMPLETE": "#43a047", "PRUNED": "#fb8c00", "FAIL": "#e53935",
                 "WAITING": "#9e9e9e"}
MAX_ROWS = 200  # trials listed in the widget table (newest first beyond this)


def _directions(snap: Snapshot) -> list[str]:
    return list(snap.study.get("directions") or ["minimize"])


def fmt_params(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in sorted((params or {}).items()))


def best_row(snap: Snapshot) -> dict[str, Any] | None:
    """The best COMPLETE trial so far (first objective), or None."""
    done = [t for t in snap.trials.values() if t.get("state") == "COMPLETE" and t.get("value") is not None]
    if not done:
        return None
    sign = -1.0 if _directions(snap)[0] == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t["value"], t["number"]))


def trial_rows(snap: Snapshot) -> list[dict[str, Any]]:
    """One dict per trial, by number: what the trial table shows."""
    rows = []
    now = time.time()
    for n in sorted(snap.trials):
        t = snap.trials[n]
        inter = t.get("intermediate") or {}
        last = None
        if inter:
            step = max(inter, key=lambda k: int(k))
            last = (int(step), inter[step])
        started, ended = t.get("started"), t.get("ended")
        err = (t.get("error") or "").strip().splitlines()
        values = t.get("values")
        value = (" ".join(fmt_value(v) for v in values) if values and len(values) > 1
                 else fmt_value(t["value"]) if t.get("value") is not None else "-")
        rows.append({
            "number": n, "state": t.get("state", "?"), "value": value, "params": fmt_params(t.get("params")),
            "steps": len(inter), "last": last,
            "duration": (ended or now) - started if started else None,
            "engine": t.get("engine_id"), "device": t.get("device") or "-",
            "error": err[-1] if err else "",
            "colour": TRIAL_COLOURS.get(t.get("state", ""), "#000"),
        })
    return rows


def counts(snap: Snapshot) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in snap.trials.values():
        out[t.get("state", "?")] = out.get(t.get("state", "?"), 0) + 1
    return out


def _summary(snap: Snapshot) -> str:
    c = counts(snap)
    words = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
             "WAITING": "waiting"}
    parts = [f"{c[s]} {w}" for s, w in words.items() if c.get(s)]
    total = sum(c.values())
    return f"{total} trial{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def _head(snap: Snapshot) -> str:
    s = snap.study
    return (f"study {s.get('name', '?')} ({', '.join(_directions(snap))}; {s.get('sampler', '?')} sampler, "
            f"{s.get('pruner', '?')} pruner)")


def study_text(snap: Snapshot) -> str:
    """The study as text: header, counts, best trial, one line per trial (deterministic)."""
    lines = [f"{_head(snap)}: {snap.state}", "  " + _summary(snap)]
    best = best_row(snap)
    if best is not None:
        lines.append(f"  best: trial {best['number']}, value {fmt_value(best['value'])}, "
                     f"{fmt_params(best.get('params'))}".rstrip(", "))
    table = [("trial", "state", "value", "steps", "params")]
    for r in trial_rows(snap):
        table.append((str(r["number"]), r["state"], r["value"], str(r["steps"]), r["params"]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        lines.append(("  " + "  ".join([row[i].ljust(widths[i]) for i in range(4)] + [row[4]])).rstrip())
    return "\n".join(lines)


def study_header_html(snap: Snapshot) -> str:
    colour = STATE_COLOURS.get(snap.state, "#000")
    best = best_row(snap)
    best_txt = (f" &middot; best <b>{html.escape(fmt_value(best['value']))}</b> (trial {best['number']}: "
                f"{html.escape(fmt_params(best.get('params')))})" if best else "")
    return (
        f"<b>%tune</b> {html.escape(_head(snap))} &middot; "
        f"<span style='color:{colour};font-weight:bold'>{snap.state}</span> &middot; "
        f"{html.escape(_summary(snap))} &middot; elapsed {_fmt_secs(snap.elapsed)}{best_txt}"
        + (f"<br><span style='color:{STATE_COLOURS['failed']}'>{html.escape(snap.error)}</span>"
           if snap.error else "")
    )


def trials_html(snap: Snapshot) -> str:
    """The trial table: number, params, value, state, intermediate values, duration, engine."""
    rows = trial_rows(snap)
    if len(rows) > MAX_ROWS:
        rows = rows[-MAX_ROWS:]
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{h}</th>" for h in
                   ("trial", "state", "value", "params", "intermediate", "duration", "engine", "device"))
    body = []
    for r in rows:
        inter = f"{r['steps']} (step {r['last'][0]}: {fmt_value(r['last'][1])})" if r["last"] else "-"
        state = html.escape(r["state"]) + (f": {html.escape(r['error'][:120])}" if r["error"] else "")
        cells = [str(r["number"]), f"<span style='color:{r['colour']}'>{state}</span>", html.escape(r["value"]),
                 html.escape(r["params"]), html.escape(inter),
                 _duration(r["duration"]),
                 "-" if r["engine"] is None else str(r["engine"]), html.escape(r["device"])]
        body.append("<tr>" + "".join(f"<td style='padding:0 8px'>{c}</td>" for c in cells) + "</tr>")
    return (f"<div style='max-height:260px;overflow:auto'><table class='trainorch-trials' "
            f"style='font-size:12px;border-collapse:collapse'><tr>{head}</tr>{''.join(body)}</table></div>")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else _fmt_secs(seconds)


def history_svg(snap: Snapshot, width: int = 560, height: int = 170) -> str:
    """Optimization history: each finished trial's value by number, and the best so far."""
    pts = [(n, t["value"]) for n, t in sorted(snap.trials.items())
           if t.get("state") == "COMPLETE" and isinstance(t.get("value"), (int, float))]
    if not pts:
        return "<i>the optimization history appears when the first trial completes</i>"
    maximize = _directions(snap)[0] == "maximize"
    best, running = [], None
    for n, v in pts:
        running = v if running is None else (max(running, v) if maximize else min(running, v))
        best.append((n, running))
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (width - 60) / ((x1 - x0) or 1)
    sy = (height - 35) / ((y1 - y0) or 1)

    def xy(n: float, v: float) -> str:
        return f"{50 + (n - x0) * sx:.1f},{height - 22 - (v - y0) * sy:.1f}"

    dots = "".join(
        f"<circle cx='{xy(n, v).split(',')[0]}' cy='{xy(n, v).split(',')[1]}' r='3' fill='#1e88e5'>"
        f"<title>trial {n}: {fmt_value(v)}</title></circle>" for n, v in pts)
    line = " ".join(xy(n, v) for n, v in best)
    return (
        "<div><b>optimization history</b> (value by trial; line: best so far)</div>"
        f"<svg width='{width}' height='{height}' style='background:#fafafa;border:1px solid #ddd'>"
        f"<text x='2' y='12' font-size='10'>{fmt_value(y1)}</text>"
        f"<text x='2' y='{height - 22}' font-size='10'>{fmt_value(y0)}</text>"
        f"<text x='50' y='{height - 6}' font-size='10'>trial {x0}</text>"
        f"<text x='{width - 60}' y='{height - 6}' font-size='10'>{x1}</text>"
        f"<polyline fill='none' stroke='#e53935' stroke-width='1.5' points='{line}'/>{dots}</svg>"
    )


class TunePanel:
    """The widgets of a study run; ``update`` is safe from any thread."""

    def __init__(self, snap: Snapshot) -> None:
        import ipywidgets as w

        self.job_id = snap.id
        self._last = 0.0
        self.header = w.HTML(study_header_html(snap))
        self.table = w.HTML(trials_html(snap))
        self.chart = w.HTML(history_svg(snap))
        self.stop = w.HTML(stop_html(snap.id, "running"))
        self.box = w.VBox([self.header, self.table, self.chart, self.stop],
                          layout=w.Layout(border="1px solid #ccc", padding="6px"))
        self.box.add_class("trainorch-panel")
        self.box.add_class("trainorch-tune")

    def update(self, snap: Snapshot, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < 1.0 / MAX_RATE:
            return False
        self._last = now
        with self.box.hold_sync():
            self.header.value = study_header_html(snap)
            self.table.value = trials_html(snap)
            self.chart.value = history_svg(snap)
            self.stop.value = stop_html(self.job_id, snap.state)
        return True

    def all_widgets(self) -> list[Any]:
        return [self.header, self.table, self.chart, self.stop, self.box]

    def bundle(self, text: str) -> dict[str, Any]:
        return {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.box.model_id,
            },
            "text/plain": text,
        }


class TunePanelView:
    """Shows a study run live (a thread keeps it current); ``final()`` leaves the text form."""

    def __init__(self, job: Any) -> None:
        from IPython.display import display

        self.job = job
        self.panel = TunePanel(job.snapshot)
        self.handle = display(self.panel.bundle(""), raw=True, display_id=True)
        self.thread = threading.Thread(target=self._loop, name=f"trainorch-tune-{job.id}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        refresh_until_done(self.job, self.panel)

    def final(self) -> None:
        from IPython.display import display

        self.thread.join(5)
        self.panel.update(self.job.snapshot, force=True)
        self.handle.update({"text/plain": ""}, raw=True)
        display(self.panel.bundle(study_text(self.job.snapshot)), raw=True)


def show_static(snap: Snapshot) -> None:
    """Display a finished study (``%tune --show``): widgets where they render, text elsewhere."""
    from IPython.display import display

    try:
        panel = TunePanel(snap)
        panel.update(snap, force=True)
        display(panel.bundle(study_text(snap)), raw=True)
    except ImportError:
        display({"text/plain": study_text(snap)}, raw=True)


def outcome_text(job: Any) -> str:
    """What a finished search printed last: the first failed trial's traceback, then the best."""
    lines = []
    if job.failures:
        number, tb = job.failures[0]
        more = len(job.failures) - 1
        lines.append(f"trial {number} failed:\n{tb}" + (f"\n({more} more failed trials; see the table)" if more else ""))
    try:
        if len(job.directions) == 1:
            lines.append(f"best_params: {job.study.best_params}\nbest_value: {job.study.best_value:.6g}")
        else:
            lines.append(f"best trials (Pareto front): {[t.number for t in job.study.best_trials]}")
    except ValueError:
        lines.append("no trial completed: there is no best value yet")
    return "\n".join(lines)
