"""Text views of the run store for ``%runs``: deterministic apart from ids and times."""

from __future__ import annotations

import time
from typing import Any

from .text import fmt_metrics, fmt_value, progress


def _first_line(source: str | None) -> str:
    for line in (source or "").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:40]
    return ""


def _duration(job: dict[str, Any]) -> str:
    if not job.get("started"):
        return "-"
    end = job.get("ended") or time.time()
    secs = max(0.0, end - job["started"])
    return f"{secs:.1f}s" if secs < 120 else f"{secs / 60:.1f}m"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def jobs_table(jobs: list[dict[str, Any]], final_metrics: dict[str, dict[str, Any]],
               verdicts: dict[str, str] | None = None) -> str:
    """One row a job.  Studies and validations say so in the framework column; a validation's
    state is its gate's verdict once it has run."""
    if not jobs:
        return "No jobs yet: run a %%distribute cell."
    verdicts = verdicts or {}
    rows = [["id", "cell", "framework", "ranks", "state", "duration", "metrics"]]
    for j in jobs:
        framework = j.get("framework") or "python"
        if j.get("kind") in ("tune", "validate"):
            framework = j["kind"] if not j.get("framework") else f"{j['kind']}:{j['framework']}"
        state = verdicts.get(j["id"], j["state"]) if j["state"] == "done" else j["state"]
        rows.append([
            j["id"], _first_line(j.get("source")), framework, str(j.get("world_size") or ""),
            state, _duration(j), fmt_metrics(final_metrics.get(j["id"], {})),
        ])
    return table(rows)


def job_detail(job: dict[str, Any], tails: dict[int, list[str]], log_dir: str) -> str:
    lines = [
        f"job {job['id']} ({job['kind']}): {job.get('framework') or 'python'} on {job.get('world_size')} "
        f"rank{'s' if job.get('world_size') != 1 else ''}"
        + (f" ({job['backend']})" if job.get("backend") else "") + f": {job['state']}, {_duration(job)}",
    ]
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    rows = [["rank", "host", "device", "state", "progress", "metrics"]]
    for r in job["ranks"]:
        rows.append([str(r["rank"]), r.get("host") or "", r.get("device") or "", r.get("state") or "",
                     progress(r.get("step"), r.get("total")), fmt_metrics(r.get("metrics") or {})])
    lines.append(table(rows))
    lines.append("cell:")
    lines.extend("  " + line for line in (job.get("source") or "").splitlines())
    for rank, tail in sorted(tails.items()):
        lines.append(f"last lines of rank {rank}:")
        lines.extend("  " + line for line in tail)
    lines.append(f"logs: {log_dir}")
    return "\n".join(lines)


def compare_table(jobs: list[dict[str, Any]]) -> str:
    names = sorted({k for j in jobs for r in j["ranks"][:1] for k in (r.get("metrics") or {})})
    rows = [["metric"] + [j["id"] for j in jobs]]
    for name in names:
        row = [name]
        for j in jobs:
            m = (j["ranks"][0].get("metrics") or {}) if j["ranks"] else {}
            row.append(fmt_value(m[name]) if name in m else "-")
        rows.append(row)
    rows.append(["state"] + [j["state"] for j in jobs])
    return table(rows)
