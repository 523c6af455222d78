"""Plain-text rendering of a job's Snapshot and its live output.

Everything here is deterministic for a deterministic job: no ids, host names,
addresses or timings in the text form, so notebooks compare cleanly under nbval.
"""

from __future__ import annotations

from typing import Any, Callable

from ..model import JOB_ROW, Snapshot

LINES_PER_REFRESH = 40   # per rank, per refresh: keeps IOPub far below Jupyter's rate limits
MAX_LINE = 2000          # characters of one line shown; the log keeps it whole


def clip(line: str) -> str:
    if "\r" in line:  # a progress bar redrawn in place: show its last state
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    if len(line) > MAX_LINE:
        return line[:MAX_LINE] + f" ... [{len(line) - MAX_LINE} more characters in the log]"
    return line


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in sorted(metrics.items()))


def progress(step: int | None, total: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def status_text(snap: Snapshot) -> str:
    """The job as a small table: one line per rank."""
    if JOB_ROW in snap.ranks:
        return task_job_text(snap)
    head = f"{snap.framework or 'python'} job on {snap.world_size} rank{'s' if snap.world_size != 1 else ''}"
    if snap.backend:
        head += f" ({snap.backend})"
    head += f": {snap.state}"
    rows = [("rank", "device", "state", "progress", "metrics")]
    for k in sorted(snap.ranks):
        r = snap.ranks[k]
        if k < 0:
            continue
        rows.append((str(k), r.device or "-", r.state, progress(r.step, r.total), fmt_metrics(r.metrics)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def task_job_text(snap: Snapshot) -> str:
    """A job of tasks spread over the engines (sklearn): its progress in tasks, one line
    per engine.  Which engine ran how many tasks varies from run to run, so only the
    job's total is in the text form (the panel shows the per-engine counts)."""
    job = snap.ranks[JOB_ROW]
    head = f"{snap.framework or 'python'} job on {snap.world_size} engine{'s' if snap.world_size != 1 else ''}"
    if snap.backend:
        head += f" ({snap.backend})"
    done = job.step or 0
    head += f": {snap.state}, {progress(done, job.total)} task{'s' if (job.total or done) != 1 else ''}"
    rows = [("rank", "device", "state")]
    for k in sorted(r for r in snap.ranks if r >= 0):
        r = snap.ranks[k]
        rows.append((str(k), r.device or "-", r.state + (f": {r.error}" if r.error else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [head]
    for row in rows:
        lines.append(("  " + "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]])).rstrip())
    return "\n".join(lines)


class LiveText:
    """Shows a running job under its cell.

    Output lines stream as they come, labelled by rank.  The live status table is
    a display that is updated in place and blanked when the job ends; the final
    table is then displayed once.  A notebook therefore keeps the same outputs
    whether it was run by JupyterLab, nbclient or nbval (which ignores in-place
    updates), so the text form compares cleanly.
    """

    def __init__(self, printer: Callable[[str], None] = print, display: bool = True) -> None:
        self.printer = printer
        self.handle = None
        self.use_display = display
        self.last = ""

    def start(self) -> None:
        if self.use_display:
            from IPython.display import display

            self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def lines(self, batches: dict[int, tuple[list[str], int]], log_paths: dict[int, str]) -> None:
        out = []
        for rank in sorted(batches):
            lines, dropped = batches[rank]
            if len(lines) > LINES_PER_REFRESH:
                dropped += len(lines) - LINES_PER_REFRESH
                lines = lines[-LINES_PER_REFRESH:]
            if dropped:
                out.append(
                    f"[rank {rank}] ... {dropped} more lines not shown here (full log: {log_paths.get(rank, '?')})"
                )
            out.extend(f"[rank {rank}] {clip(line)}" for line in lines)
        if out:
            self.printer("\n".join(out))

    def status(self, snap: Snapshot) -> None:
        text = status_text(snap)
        if self.handle is not None and text != self.last:
            self.last = text
            self.handle.update({"text/plain": text}, raw=True)

    def final(self, snap: Snapshot) -> None:
        text = status_text(snap)
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)
            from IPython.display import display

            display({"text/plain": text}, raw=True)
        else:
            self.printer(text)
