"""Monitoring-overhead benchmark: what the live panel and the run store cost a job.

Everything runs in real IPython kernels driven the way a notebook drives them
(``tests/kernel_client.Kernel``, jupyter_client), so ``%%distribute`` really
creates its ipywidgets panel.  Measured side by side, in one run:

1. training throughput on 2 CPU ranks (gloo): a small DDP step padded to a fixed
   length, calling ``report()`` and printing one line every step, rank 0 timing
   the loop.  (a) a plain ``%%distribute --pull`` cell: the live panel, plus the
   printed lines; (b) ``api.distribute(src, show=False)`` from a kernel cell: no
   panel, nothing printed.  The run store records both (it cannot be turned
   off), so (b) is "display off", not "bookkeeping off".  Alternated, medians;
2. lines per second relayed from 4 ranks, each printing ``--lines`` lines as
   fast as it can, into the rank log files (and the panel): from the cell's
   execute request to the moment every rank's
   ``$TRAINORCH_HOME/jobs/<id>/rank-<k>.log`` holds all its lines (polled every
   20 ms from this process; the kernel flushes the logs every 0.5 s and at the
   end), with the IOPub messages and bytes the kernel sent the notebook client
   for that cell (the view must stay bounded, whatever the ranks print).

    python bench/monitoring.py [--repeats N] [--lines L] [--json PATH]

This is a benchmark, not a test: it prints medians, ratios and goals, and exits
non-zero only when a measurement could not be taken or a process was left over.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (REPO, os.path.join(REPO, "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TRAIN_WORLD = 2

from bench.workloads import TRAIN_BODY  # noqa: E402  (the same loop as launch.py)
LINES_WORLD = 4

# -- the workloads ---------------------------------------------------------------------------



# Plain Python (no framework import: no process group).  ``print_s`` is how long
# the rank itself took to print; gathered from every rank.
LINES_BODY = """\
import time
from trainorch_jupyter.runtime import rank
_r = rank()
_t0 = time.perf_counter()
for _i in range({lines}):
    print(f"rank {{_r}} line {{_i:07d}} the quick brown fox", flush=False)
print_s = time.perf_counter() - _t0
"""

# After a cell: what the kernel knows about the job it just ran (as one JSON line).
JOB_FACTS = """\
import json as _bj
from trainorch_jupyter import api as _bapi
_bapi._flush_store()
print("BENCH_JOB " + _bj.dumps({{
    "id": {job}.id, "state": {job}.state, "panel": {job}.panel is not None,
    "reports_rank0": {job}.reports_received(0), "lost_reports_rank0": {job}.lost_reports[0],
    "store_state": (_bapi.store().job({job}.id) or {{}}).get("state"),
    "store_metric_rows": len(_bapi.store().metrics({job}.id)),
    "log_lines": [sum(1 for _l in {job}.output(_k).splitlines() if _l.startswith(f"rank {{_k}} "))
                  for _k in range({job}.world_size)],
}}))
"""


# -- helpers --------------------------------------------------------------------------------

def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def say(text: str) -> None:
    print(text, flush=True)


def msg_bytes(msg: dict[str, Any]) -> int:
    """A message's size as the client receives it: JSON frames plus binary buffers."""
    frames = sum(
        len(json.dumps(msg.get(k) or {}, default=str, ensure_ascii=False).encode())
        for k in ("header", "parent_header", "metadata", "content")
    )
    return frames + sum(memoryview(b).nbytes for b in msg.get("buffers") or [])


def tally(msgs: list[dict[str, Any]]) -> dict[str, Any]:
    kinds: collections.Counter = collections.Counter()
    size: collections.Counter = collections.Counter()
    for m in msgs:
        kinds[m["msg_type"]] += 1
        size[m["msg_type"]] += msg_bytes(m)
    return {
        "messages": sum(kinds.values()),
        "bytes": sum(size.values()),
        "by_type": {k: {"messages": kinds[k], "bytes": size[k]} for k in sorted(kinds)},
        "largest_bytes": max((msg_bytes(m) for m in msgs), default=0),
    }


class LogWatcher:
    """Counts the lines of every rank log of the first new job under ``jobs_dir``,
    from this process, and notes when each rank's log first holds ``want`` lines."""

    def __init__(self, jobs_dir: str, world: int, want: int, poll: float = 0.02) -> None:
        self.jobs_dir, self.world, self.want, self.poll = jobs_dir, world, want, poll
        self.before = set(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else set()
        self.job_id: str | None = None
        self.counts = [0] * world
        self.reached: list[float | None] = [None] * world
        self._offsets = [0] * world
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-log-watcher", daemon=True)

    def start(self) -> "LogWatcher":
        self._thread.start()
        return self

    def _scan(self) -> None:
        if self.job_id is None:
            new = sorted(set(os.listdir(self.jobs_dir)) - self.before) if os.path.isdir(self.jobs_dir) else []
            if not new:
                return
            self.job_id = new[0]
        for k in range(self.world):
            if self.reached[k] is not None:
                continue
            path = os.path.join(self.jobs_dir, self.job_id, f"rank-{k}.log")
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[k])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            self._offsets[k] += len(chunk)
            self.counts[k] += chunk.count(b"\n")
            if self.counts[k] >= self.want:
                self.reached[k] = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set() and not self.all_in():
            self._scan()
            self._stop.wait(self.poll)

    def all_in(self) -> bool:
        return all(t is not None for t in self.reached)

    def stop(self, wait: float = 0.0) -> None:
        """Keep watching up to ``wait`` more seconds (late flushes), then stop."""
        deadline = time.monotonic() + wait
        while not self.all_in() and time.monotonic() < deadline:
            time.sleep(self.poll)
        self._stop.set()
        self._thread.join(5)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.cluster_ids: list[str] = []
        self.kernels: list[Any] = []

    def attempt(self, key: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
            self.results[key] = value
            return value
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            self.errors[key] = f"failed: {type(e).__name__}: {first}"[:200]
            say(f"  {key} failed:\n" + textwrap.indent(traceback.format_exc(), "    "))
        return None

    # -- kernels ------------------------------------------------------------------------------
    def kernel(self, engines: int) -> Any:
        """A fresh kernel with the extension loaded and an ``engines``-engine pool."""
        from kernel_client import Kernel

        t = time.perf_counter()
        k = Kernel()
        self.kernels.append(k)
        k.ok("%load_ext trainorch_jupyter")
        k.ok(f"%cluster start -n {engines}", timeout=180)
        cid = k.ok("from trainorch_jupyter import api as _bapi\n"
                   "print(_bapi.current_pool().cluster.cluster_id)").stdout.strip()
        self.cluster_ids.append(cid)
        say(f"  kernel pid {self.kernel_pid(k)}, pool {cid} of {engines} engines up in {time.perf_counter() - t:.1f} s")
        return k

    @staticmethod
    def kernel_pid(k: Any) -> int | None:
        try:
            return k.km.provisioner.process.pid
        except Exception:
            return None

    def kernel_cpu(self, k: Any) -> float:
        """CPU seconds the kernel process has used so far (user + system)."""
        import psutil

        pid = self.kernel_pid(k)
        if pid is None:
            return float("nan")
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system

    @staticmethod
    def drain(k: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
        """IOPub messages still arriving after a cell went idle (until ``quiet`` s of silence)."""
        late = []
        while True:
            try:
                late.append(k.kc.get_iopub_msg(timeout=quiet))
            except queue.Empty:
                return late

    @staticmethod
    def facts(k: Any, job_expr: str) -> dict[str, Any]:
        out = k.ok(JOB_FACTS.format(job=job_expr)).stdout
        lines = [line for line in out.splitlines() if line.startswith("BENCH_JOB ")]
        if not lines:
            raise RuntimeError(f"no BENCH_JOB line; output:\n{out[-2000:]}")
        return json.loads(lines[-1].split(" ", 1)[1])

    # -- 1. training throughput, panel vs. display off ---------------------------------------------
    def training(self) -> None:
        steps, step_s = self.args.steps, self.args.step_ms / 1000.0
        say(f"[1/2] training throughput, {TRAIN_WORLD} ranks: {steps} steps padded to {self.args.step_ms:g} ms, "
            f"live panel vs. display off, {self.args.repeats} runs each, alternated")
        k = self.kernel(TRAIN_WORLD)
        body = TRAIN_BODY.format(steps=steps, step_s=step_s)
        warm = TRAIN_BODY.format(steps=5, step_s=step_s)
        panel_cell = "%%distribute --framework torch --pull bench_result\n" + body
        off_cell = (
            "from trainorch_jupyter import api as _bapi\n"
            "_bns = dict()\n"
            "_bjob = _bapi.distribute({src!r}, namespace=_bns, framework='torch', pull=['bench_result'], show=False)\n"
            "bench_result = _bns['bench_result']\n"
        )

        def run(mode: str, cell: str, job_expr: str) -> dict[str, Any]:
            cpu0 = self.kernel_cpu(k)
            t0 = time.perf_counter()
            res = k.ok(cell, timeout=120)
            wall = time.perf_counter() - t0
            late = self.drain(k, quiet=0.3)
            cpu1 = self.kernel_cpu(k)
            r = json.loads(k.ok("import json; print(json.dumps(bench_result))").stdout.strip().splitlines()[-1])
            r.update(self.facts(k, job_expr))
            own = tally(res.raw)
            r.update({
                "mode": mode, "cell_s": wall, "kernel_cpu_s": cpu1 - cpu0,
                "iopub_messages": own["messages"], "iopub_bytes": own["bytes"],
                "iopub_by_type": own["by_type"],
                "iopub_other_parent": len(res.others), "iopub_after_idle": len(late),
                "printed_lines": sum(1 for line in res.stdout.splitlines() if " step " in line),
            })
            return r

        # not timed: the process group, torch on the engines, ipywidgets in the kernel
        t = time.perf_counter()
        run("warm-up off", off_cell.format(src=warm), "_bjob")
        run("warm-up panel", "%%distribute --framework torch --pull bench_result\n" + warm, "_job")
        say(f"  warm-up (process group, imports) {time.perf_counter() - t:.1f} s")

        runs: dict[str, list[dict]] = {"panel": [], "off": []}
        todo = {"panel": (panel_cell, "_job"), "off": (off_cell.format(src=body), "_bjob")}
        for i in range(self.args.repeats):
            for mode in (("panel", "off") if i % 2 == 0 else ("off", "panel")):
                r = run(mode, *todo[mode])
                runs[mode].append(r)
                say(f"  {mode:<5} {r['steps_per_s']:6.2f} steps/s  (cell {r['cell_s']:.2f} s, "
                    f"kernel CPU {r['kernel_cpu_s']:.2f} s, IOPub {r['iopub_messages']} msgs "
                    f"{r['iopub_bytes'] / 1024:.0f} KiB, panel {'yes' if r['panel'] else 'no'}, "
                    f"reports {r['reports_rank0']}/{steps}, store rows {r['store_metric_rows']})")
        self.results["train_runs"] = runs
        self.results["train_panel_steps_per_s"] = [r["steps_per_s"] for r in runs["panel"]]
        self.results["train_off_steps_per_s"] = [r["steps_per_s"] for r in runs["off"]]
        if not all(r["panel"] for r in runs["panel"]):
            raise RuntimeError("a %%distribute run showed no widget panel (is ipywidgets installed?)")
        if any(r["panel"] or r["printed_lines"] for r in runs["off"]):
            raise RuntimeError("a show=False run showed a panel or printed lines")

    # -- 2. lines per second from 4 ranks ------------------------------------------------------
    def lines(self) -> None:
        L = self.args.lines
        say(f"[2/2] lines relayed: {LINES_WORLD} ranks print {L} lines each as fast as they can, "
            f"{self.args.line_repeats} run{'s' if self.args.line_repeats != 1 else ''}")
        k = self.kernel(LINES_WORLD)
        jobs_dir = os.path.join(os.environ["TRAINORCH_HOME"], "jobs")
        cell = "%%distribute --gather print_s\n" + LINES_BODY.format(lines=L)
        k.ok("%%distribute --gather print_s\n" + LINES_BODY.format(lines=10))  # warm-up, not timed
        self.drain(k, quiet=0.3)
        runs = []
        for _ in range(self.args.line_repeats):
            watcher = LogWatcher(jobs_dir, LINES_WORLD, L)
            started: list[float] = []
            watcher.start()
            cpu0 = self.kernel_cpu(k)
            sent = time.monotonic()
            res = k.ok(cell, timeout=180, on_start=lambda: started.append(time.monotonic()))
            idle = time.monotonic()
            watcher.stop(wait=10.0)
            late = self.drain(k, quiet=0.5)
            cpu1 = self.kernel_cpu(k)
            # from the execute request: the busy status is read by this process, which
            # may be starved of CPU while 4 ranks print, so it can be noted late
            t0 = sent
            facts = self.facts(k, "_job")
            print_s = json.loads(k.ok("import json; print(json.dumps(print_s))").stdout.strip().splitlines()[-1])
            if facts["id"] != watcher.job_id:
                raise RuntimeError(f"watched job {watcher.job_id}, but the cell ran {facts['id']}")
            if not watcher.all_in() or facts["log_lines"] != [L] * LINES_WORLD:
                raise RuntimeError(f"rank logs incomplete: watcher saw {watcher.counts}, "
                                   f"_job.output() has {facts['log_lines']} of {L} lines")
            t_all = max(watcher.reached) - t0
            own = tally(res.raw)
            r = {
                "job": facts["id"], "panel": facts["panel"],
                "seconds_to_all_lines": t_all, "lines_per_s": LINES_WORLD * L / t_all,
                "cell_s": idle - t0, "busy_seen_after_s": (started[0] - t0) if started else None,
                "rank_print_s": print_s,
                "per_rank_s": [t - t0 for t in watcher.reached],
                "kernel_cpu_s": cpu1 - cpu0,
                "iopub_messages": own["messages"], "iopub_bytes": own["bytes"],
                "iopub_largest_bytes": own["largest_bytes"], "iopub_by_type": own["by_type"],
                "iopub_other_parent": tally(res.others), "iopub_after_idle": tally(late),
                "stdout_lines_shown": len(res.stdout.splitlines()),
            }
            runs.append(r)
            say(f"  {r['lines_per_s']:9.0f} lines/s: all {LINES_WORLD}x{L} lines in the logs after "
                f"{t_all:.2f} s (ranks printed in {max(print_s):.2f} s; cell {r['cell_s']:.2f} s; "
                f"kernel CPU {r['kernel_cpu_s']:.2f} s)")
            say(f"  IOPub to the client for the cell: {own['messages']} messages, {own['bytes'] / 1024:.0f} KiB "
                f"(largest {own['largest_bytes'] / 1024:.1f} KiB; "
                + ", ".join(f"{t} {v['messages']}/{v['bytes'] / 1024:.0f} KiB" for t, v in own["by_type"].items())
                + f"); other parents meanwhile {r['iopub_other_parent']['messages']}, after idle "
                f"{r['iopub_after_idle']['messages']}; {r['stdout_lines_shown']} lines shown under the cell")
        self.results["lines_runs"] = runs
        self.results["lines_per_s"] = [r["lines_per_s"] for r in runs]
        self.results["lines_iopub_messages"] = [r["iopub_messages"] for r in runs]
        self.results["lines_iopub_bytes"] = [r["iopub_bytes"] for r in runs]

    # -- cleanup -----------------------------------------------------------------------------------
    def close_kernels(self) -> list[str]:
        """Stop every pool (``%cluster stop``) and shut every kernel down; what went wrong."""
        problems = []
        for k in self.kernels:
            pid = self.kernel_pid(k)
            try:
                self.drain(k, quiet=0.1)
                k.ok("%cluster stop", timeout=60)
            except Exception as e:
                problems.append(f"kernel {pid}: %cluster stop failed: {type(e).__name__}: {e}"[:200])
                try:
                    k.km.interrupt_kernel()
                except Exception:
                    pass
            k.shutdown()
            try:
                if k.km.is_alive():
                    k.km.shutdown_kernel(now=True)
                    problems.append(f"kernel {pid} had to be killed")
            except Exception:
                pass
        self.kernels = []
        return problems

    def leftovers(self) -> list[dict]:
        """Processes still carrying one of our clusters (engines, controller, watchdog);
        the pool's own watchdog may still be on its way out, so wait a little first."""
        import psutil

        from trainorch_jupyter.pool.watchdog import cluster_processes

        ids = [c for c in self.cluster_ids if c]

        def ours() -> list:
            found = {p.pid: p for cid in ids for p in cluster_processes(cid)}
            for p in psutil.process_iter(["pid", "cmdline"]):  # the watchdog names it on its command line
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                except (psutil.Error, OSError):
                    continue
                if p.pid != os.getpid() and any(c in cmd for c in ids):
                    found[p.pid] = p
            return list(found.values())

        deadline = time.monotonic() + 20
        found = ours()
        while found and time.monotonic() < deadline:
            time.sleep(0.5)
            found = ours()
        gone = []
        for p in found:
            try:
                gone.append({"pid": p.pid, "cmdline": " ".join(p.cmdline())})
                p.kill()
            except psutil.Error:
                pass
        return gone


# -- the table ---------------------------------------------------------------------------------

def build_rows(b: Bench) -> list[dict[str, Any]]:
    R, E = b.results, b.errors
    rows = []

    def figure(key: str, unit: str, fmt: str) -> tuple[float | None, str]:
        if R.get(key):
            v = median(R[key])
            return v, f"{fmt.format(v)} {unit}"
        text = E.get(key, "not measured")
        return None, text if len(text) <= 60 else text[:57] + "..."

    v, vtxt = figure("train_panel_steps_per_s", "steps/s", "{:.2f}")
    c, ctxt = figure("train_off_steps_per_s", "steps/s", "{:.2f}")
    ratio = v / c if v is not None and c is not None else None
    rows.append({
        "measurement": "training steps/s, %%distribute + live panel", "median": v, "median_text": vtxt,
        "comparison": f"show=False (no panel, no lines; store on) {ctxt}", "comparison_median": c,
        "ratio": ratio, "ratio_text": "-" if ratio is None else f"{ratio:.3f}",
        "goal": "panel/off >= 0.97", "met": None if ratio is None else ratio >= 0.97,
    })
    v, vtxt = figure("lines_per_s", "lines/s", "{:.0f}")
    if v is not None:
        msgs, size = median(R["lines_iopub_messages"]), median(R["lines_iopub_bytes"])
        cmp_text = f"cell IOPub to client: {msgs:.0f} msgs, {size / 1024:.0f} KiB"
    else:
        msgs = size = None
        cmp_text = "-"
    rows.append({
        "measurement": f"lines/s, {LINES_WORLD} ranks -> logs + panel ({b.args.lines}/rank)", "median": v,
        "median_text": vtxt, "comparison": cmp_text, "comparison_median": msgs, "iopub_bytes": size,
        "ratio": None, "ratio_text": "-", "goal": "-", "met": None,
    })
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    head = ["measurement", "median", "comparison (median)", "ratio", "goal", "met"]
    body = [[r["measurement"], r["median_text"], r["comparison"], r["ratio_text"], r["goal"],
             "-" if r["met"] is None else ("yes" if r["met"] else "no")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="training runs per mode (panel, off); default 3")
    ap.add_argument("--steps", type=int, default=120, help="training steps per run; default 120")
    ap.add_argument("--step-ms", type=float, default=25.0, help="fixed step length (>= 20 ms); default 25")
    ap.add_argument("--lines", type=int, default=20000, help="lines printed by each of the 4 ranks; default 20000")
    ap.add_argument("--line-repeats", type=int, default=3, help="runs of the lines cell; default 3")
    ap.add_argument("--skip-training", action="store_true", help="measure only the lines row")
    ap.add_argument("--skip-lines", action="store_true", help="measure only the training row")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.line_repeats < 1 or args.steps < 1 or args.lines < 1:
        ap.error("counts must be at least 1")
    if args.step_ms < 20:
        ap.error("--step-ms must be at least 20")

    # the kernels (and their engines) inherit these: the run's logs and store stay out of the user's
    tmp = tempfile.mkdtemp(prefix="trainorch-bench-monitoring-")
    saved = {k: os.environ.get(k) for k in ("TRAINORCH_HOME", "TRAINORCH_LEASE_DIR", "TRAINORCH_DB", "PYTHONPATH")}
    os.environ["TRAINORCH_HOME"] = os.path.join(tmp, "home")
    os.environ["TRAINORCH_LEASE_DIR"] = os.path.join(tmp, "leases")
    os.environ.pop("TRAINORCH_DB", None)
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + saved["PYTHONPATH"] if saved["PYTHONPATH"] else "")

    import torch

    b = Bench(args)
    started = time.perf_counter()
    say(f"trainorch_jupyter monitoring benchmark: real kernels (jupyter_client), torch {torch.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} cores; TRAINORCH_HOME={os.environ['TRAINORCH_HOME']}")
    problems: list[str] = []
    try:
        if not args.skip_training:
            b.attempt("_train", b.training)
            problems += b.close_kernels()
        if not args.skip_lines:
            b.attempt("_lines", b.lines)
    finally:
        problems += b.close_kernels()
        killed = b.leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    for key, keys in (("_train", ("train_panel_steps_per_s", "train_off_steps_per_s")),
                      ("_lines", ("lines_per_s",))):
        if key in b.errors:  # a failed section: its rows say so
            for k in keys:
                b.errors.setdefault(k, b.errors[key])
    rows = build_rows(b)
    total = time.perf_counter() - started
    say("")
    say(render(rows))
    say("")
    for p in problems:
        say(f"cleanup: {p}")
    say(f"total {total:.0f} s; clusters {', '.join(b.cluster_ids) or 'none'}; leftover cluster processes: "
        + ("none" if not killed else f"{len(killed)} (killed: " + ", ".join(str(k['pid']) for k in killed) + ")"))
    if args.json:
        doc = {
            "train_world_size": TRAIN_WORLD,
            "lines_world_size": LINES_WORLD,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "args": vars(args),
            "rows": rows,
            "samples": {k: v for k, v in b.results.items() if not k.startswith("_")},
            "errors": {k: v for k, v in b.errors.items() if not k.startswith("_")},
            "cleanup_problems": problems,
            "leftovers_killed": killed,
            "cluster_ids": b.cluster_ids,
            "total_s": total,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=str)
        say(f"wrote {args.json}")
    failed = [k for k, v in b.errors.items() if v.startswith("failed")]
    return 1 if failed or killed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
