"""Launch-overhead benchmark: trainorch_jupyter against the usual ways to start ranks.

Everything is measured side by side, in one run, on a 2-rank CPU (gloo) setup:

1. warm dispatch of a trivial job (one ``all_reduce``) through ``api.distribute``
   on a running pool, against raw ipyparallel ``execute`` on the same engines and
   process group, ``accelerate.debug_launcher`` and a ``torchrun`` subprocess;
2. training throughput of a small DDP MLP on sklearn's digits, every step padded
   to a fixed length and calling ``report()`` and ``print`` (``api.distribute``
   against ``torchrun``), measured in the loop on rank 0;
3. pool cold start from a fresh Python process (``start_pool`` + first result),
   against plain ``ipyparallel.Cluster``.

    python bench/launch.py [--repeats N] [--json PATH]

This is a benchmark, not a test: it prints medians, ratios and goals, and exits
non-zero only when a measurement could not be taken.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

WORLD = 2

from bench.workloads import TRAIN_BODY  # noqa: E402

# -- the workloads ---------------------------------------------------------------------------

# Run on engines whose default process group is already up (api.distribute sets it
# up; raw execute reuses it).  It imports torch itself, so raw execute needs nothing.
TRIVIAL = "import torch, torch.distributed as dist\ndist.all_reduce(torch.ones(1))\n"

TORCHRUN_TRIVIAL = """\
import torch, torch.distributed as dist
dist.init_process_group("gloo")
dist.all_reduce(torch.ones(1))
dist.destroy_process_group()
"""



TORCHRUN_TRAIN = """\
import json
import torch.distributed as dist
dist.init_process_group("gloo")
{body}
if _rank == 0:
    print("BENCH_RESULT " + json.dumps(bench_result), flush=True)
dist.destroy_process_group()
"""

COLD_OURS = """\
import time
t0 = time.perf_counter()
from trainorch_jupyter import api
t1 = time.perf_counter()
pool = api.start_pool(2)
print("BENCH_CLUSTER", pool.cluster.cluster_id, flush=True)
t2 = time.perf_counter()
job = api.distribute("x = 1", show=False)
t3 = time.perf_counter()
assert job.state == "done", job.state
print("BENCH_COLD", t3 - t1, "start_pool", t2 - t1, "first_job", t3 - t2, "import", t1 - t0, flush=True)
api.stop_pool()
"""

COLD_PLAIN = """\
import time
t0 = time.perf_counter()
import ipyparallel as ipp
t1 = time.perf_counter()

def one():
    return 1

cluster = ipp.Cluster(n=2, log_level=40)
print("BENCH_CLUSTER", cluster.cluster_id, flush=True)
try:
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2, timeout=120, interactive=False)
    t2 = time.perf_counter()
    assert rc[:].apply_sync(one) == [1, 1]
    t3 = time.perf_counter()
    print("BENCH_COLD", t3 - t1, "start_pool", t2 - t1, "first_job", t3 - t2, "import", t1 - t0, flush=True)
    rc.close()
finally:
    cluster.stop_cluster_sync()
"""


def debug_launcher_job() -> None:
    """What debug_launcher runs on each rank (it has set up gloo already).

    The group is not destroyed: that would delete debug_launcher's rendezvous
    file (a FileStore) before debug_launcher deletes it itself, and it raises.
    """
    import torch
    import torch.distributed as dist

    dist.all_reduce(torch.ones(1))


# -- helpers --------------------------------------------------------------------------------

class Skipped(Exception):
    pass


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ms(seconds: list[float]) -> list[float]:
    return [round(1000 * s, 3) for s in seconds]


def say(text: str) -> None:
    print(text, flush=True)


def child_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_child(argv: list[str], timeout: float, env: dict[str, str], cwd: str) -> subprocess.CompletedProcess:
    """Run a child in its own session; on timeout kill that session (ours only)."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, cwd=cwd, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
        out, _ = proc.communicate()
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout:g} s; output tail:\n{out[-2000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}; output tail:\n{out[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def torchrun_argv(script: str) -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "torchrun")
    base = [exe] if os.path.exists(exe) else [sys.executable, "-m", "torch.distributed.run"]
    return base + ["--standalone", "--nproc_per_node", str(WORLD), script]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="trainorch-bench-")
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.cluster_ids: list[str] = []
        self.pool = None

    def attempt(self, key: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
            self.results[key] = value
            return value
        except Skipped as e:
            self.errors[key] = f"skipped ({e})"
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            self.errors[key] = f"failed: {type(e).__name__}: {first}"[:200]
            say(f"  {key} failed:\n" + textwrap.indent(traceback.format_exc(), "    "))
        return None

    def script(self, name: str, text: str) -> str:
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- 1. warm dispatch ----------------------------------------------------------------------
    def warm_dispatch(self) -> None:
        from trainorch_jupyter import api

        n = self.args.repeats
        say(f"[1/3] warm dispatch of one all_reduce, {WORLD} ranks, median of {n}")
        t = time.perf_counter()
        self.pool = api.start_pool(WORLD)
        self.cluster_ids.append(self.pool.cluster.cluster_id)
        self.results["pool_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        api.distribute(TRIVIAL, show=False)  # initialises the process group: excluded
        self.results["first_distribute_s"] = time.perf_counter() - t
        say(f"  pool started in {self.results['pool_start_s']:.2f} s; "
            f"first job (process group setup) {self.results['first_distribute_s']:.2f} s")
        view = self.pool.client[:]

        def ours() -> float:
            t0 = time.perf_counter()
            job = api.distribute(TRIVIAL, show=False)
            t1 = time.perf_counter()
            assert job.state == "done", job.state
            return t1 - t0

        def raw() -> float:
            t0 = time.perf_counter()
            view.execute(TRIVIAL, block=True)
            return time.perf_counter() - t0

        ours(), raw()  # one excluded warm-up call each
        ours_s: list[float] = []
        raw_s: list[float] = []
        for i in range(n):  # interleaved, alternating order, so drift hits both alike
            if i % 2 == 0:
                ours_s.append(ours())
                raw_s.append(raw())
            else:
                raw_s.append(raw())
                ours_s.append(ours())
        self.results["ours_dispatch_ms"] = ms(ours_s)
        self.results["raw_execute_ms"] = ms(raw_s)
        say(f"  api.distribute   median {1000 * median(ours_s):8.2f} ms")
        say(f"  client.execute   median {1000 * median(raw_s):8.2f} ms")

        self.attempt("debug_launcher_ms", self.debug_launcher)
        self.attempt("torchrun_trivial_ms", self.torchrun_trivial)

    def debug_launcher(self) -> list[float]:
        if importlib.util.find_spec("accelerate") is None:
            raise Skipped("pip install accelerate")
        try:
            from accelerate import debug_launcher
        except ImportError as e:
            raise Skipped(f"pip install accelerate; import failed: {e}") from None
        times = []
        for _ in range(self.args.repeats):
            t0 = time.perf_counter()
            debug_launcher(debug_launcher_job, num_processes=WORLD)
            times.append(time.perf_counter() - t0)
        say(f"  debug_launcher   median {1000 * median(times):8.2f} ms")
        return ms(times)

    def torchrun_trivial(self) -> list[float]:
        path = self.script("trivial.py", TORCHRUN_TRIVIAL)
        argv = torchrun_argv(path)
        env = child_env(threads=1)
        times = []
        for _ in range(self.args.torchrun_repeats):
            t0 = time.perf_counter()
            run_child(argv, timeout=180, env=env, cwd=self.work)
            times.append(time.perf_counter() - t0)
        say(f"  torchrun         median {1000 * median(times):8.2f} ms")
        return ms(times)

    # -- 2. training throughput ------------------------------------------------------------------
    def training(self) -> None:
        from trainorch_jupyter import api

        steps, step_s = self.args.steps, self.args.step_ms / 1000.0
        say(f"[2/3] training throughput: {steps} steps padded to {self.args.step_ms:g} ms, "
            f"{self.args.train_repeats} run{'s' if self.args.train_repeats != 1 else ''} each")
        body = TRAIN_BODY.format(steps=steps, step_s=step_s)
        path = self.script("train.py", TORCHRUN_TRAIN.format(body=body))
        argv = torchrun_argv(path)
        env = child_env(threads=1)
        ours_runs: list[dict] = []
        torchrun_runs: list[dict] = []

        def ours() -> None:
            ns: dict[str, Any] = {}
            # the cell imports torch and sklearn: say which framework to set up
            job = api.distribute(body, namespace=ns, framework="torch", pull=["bench_result"], show=False)
            r = dict(ns["bench_result"])
            r["reports_received_rank0"] = job.reports_received(0)
            r["lost_reports_rank0"] = job.lost_reports[0]
            r["lines_rank0"] = sum(1 for line in job.output(0).splitlines() if " step " in line)
            ours_runs.append(r)

        def torchrun() -> None:
            out = run_child(argv, timeout=300, env=env, cwd=self.work).stdout
            lines = [line for line in out.splitlines() if "BENCH_RESULT " in line]
            if not lines:
                raise RuntimeError(f"torchrun printed no result; output tail:\n{out[-2000:]}")
            r = json.loads(lines[-1].split("BENCH_RESULT ", 1)[1])
            r["lines"] = len(re.findall(r"rank \d+ step \d+/\d+ loss", out))
            torchrun_runs.append(r)

        broken: dict[str, str] = {}
        keys = {ours: "train_ours_steps_per_s", torchrun: "train_torchrun_steps_per_s"}
        for i in range(self.args.train_repeats):
            for fn in ((ours, torchrun) if i % 2 == 0 else (torchrun, ours)):
                key = keys[fn]
                if key in broken:
                    continue
                try:
                    fn()
                except Exception as e:  # one launcher failing does not stop the other
                    first = (str(e).strip().splitlines() or [""])[0]
                    broken[key] = self.errors[key] = f"failed: {type(e).__name__}: {first}"[:200]
                    say(f"  {key} failed:\n" + textwrap.indent(traceback.format_exc(), "    "))
        self.results["train_ours_runs"] = ours_runs
        self.results["train_torchrun_runs"] = torchrun_runs
        self.results["train_ours_steps_per_s"] = [r["steps_per_s"] for r in ours_runs]
        self.results["train_torchrun_steps_per_s"] = [r["steps_per_s"] for r in torchrun_runs]
        for name, runs in (("api.distribute", ours_runs), ("torchrun", torchrun_runs)):
            if not runs:
                continue
            say(f"  {name:<16} steps/s " + ", ".join(f"{r['steps_per_s']:.2f}" for r in runs)
                + f"  (work per step median {median([r['work_ms_median'] for r in runs]):.2f} ms, "
                f"max {max(r['work_ms_max'] for r in runs):.2f} ms, "
                f"overruns {sum(r['overruns'] for r in runs)})")
        if ours_runs:
            say("  reports received on rank 0: "
                + ", ".join(f"{r['reports_received_rank0']}/{steps} (lost {r['lost_reports_rank0']})"
                            for r in ours_runs))

    def stop_pool(self) -> None:
        from trainorch_jupyter import api

        if self.pool is not None:
            t = time.perf_counter()
            api.stop_pool()
            self.results["pool_stop_s"] = time.perf_counter() - t
            self.pool = None

    # -- 3. cold start ---------------------------------------------------------------------------
    def cold(self, key: str, code: str) -> list[float]:
        path = self.script(f"{key}.py", code)
        env = child_env()
        totals, details = [], []
        for _ in range(self.args.cold_repeats):
            out = run_child([sys.executable, path], timeout=240, env=env, cwd=self.work).stdout
            for line in out.splitlines():
                if line.startswith("BENCH_CLUSTER "):
                    self.cluster_ids.append(line.split()[1])
            cold = [line.split() for line in out.splitlines() if line.startswith("BENCH_COLD ")]
            if not cold:
                raise RuntimeError(f"no BENCH_COLD line; output tail:\n{out[-2000:]}")
            parts = cold[-1]
            totals.append(float(parts[1]))
            details.append({parts[k]: round(float(parts[k + 1]), 4) for k in range(2, len(parts) - 1, 2)})
        self.results[f"{key}_details"] = details
        say(f"  {key:<16} median {median(totals):6.2f} s  runs " + ", ".join(f"{t:.2f}" for t in totals))
        return [round(t, 4) for t in totals]

    # -- cleanup -----------------------------------------------------------------------------------
    def leftovers(self) -> list[dict]:
        """Processes still carrying one of the clusters this run started (engines,
        controllers, nannies, watchdogs); they are ours, so they are killed."""
        try:
            import psutil
        except ImportError:
            return []
        me = os.getpid()
        deadline = time.monotonic() + 10
        while True:
            found = []
            for p in psutil.process_iter(["pid", "cmdline"]):
                if p.pid == me:
                    continue
                try:
                    cid = p.environ().get("IPP_CLUSTER_ID")
                    cmd = " ".join(p.info["cmdline"] or [])
                except (psutil.Error, OSError):
                    continue
                if cid in self.cluster_ids or any(c in cmd for c in self.cluster_ids):
                    found.append(p)
            if not found or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # a watchdog may still be on its way out
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

    def figure(key: str, scale: float = 1.0, unit: str = "ms", fmt: str = "{:.2f}") -> tuple[float | None, str]:
        if key in R and R[key]:
            v = median(R[key]) * scale
            return v, f"{fmt.format(v)} {unit}"
        text = E.get(key, "not measured")
        return None, text if len(text) <= 60 else text[:57] + "..."

    def row(name, key, cmp_name, cmp_key, ratio_of, goal_text, goal_ok, unit="ms", fmt="{:.2f}"):
        v, vtxt = figure(key, unit=unit, fmt=fmt)
        c, ctxt = figure(cmp_key, unit=unit, fmt=fmt)
        ratio = ratio_of(v, c) if v is not None and c is not None else None
        met = goal_ok(v, c, ratio)
        rows.append({
            "measurement": name, "median": v, "median_text": vtxt,
            "comparison": f"{cmp_name} {ctxt}", "comparison_median": c,
            "ratio": ratio, "ratio_text": "-" if ratio is None else (f"{ratio:.3f}" if ratio < 10 else f"{ratio:.0f}"),
            "goal": goal_text, "met": None if met is None else bool(met),
        })

    def on_ratio(test):
        return lambda v, c, r: None if r is None else test(r)

    row("warm dispatch, api.distribute", "ours_dispatch_ms", "raw client[:].execute", "raw_execute_ms",
        lambda v, c: v / c, "ours/raw <= 1.5", on_ratio(lambda r: r <= 1.5))
    row("warm dispatch, api.distribute", "ours_dispatch_ms", "accelerate.debug_launcher", "debug_launcher_ms",
        lambda v, c: c / v, "debug_launcher/ours >= 3", on_ratio(lambda r: r >= 3))
    row("warm dispatch, api.distribute", "ours_dispatch_ms", "torchrun --standalone", "torchrun_trivial_ms",
        lambda v, c: c / v, "torchrun/ours >= 200", on_ratio(lambda r: r >= 200))
    row("training steps/s, api.distribute", "train_ours_steps_per_s", "torchrun", "train_torchrun_steps_per_s",
        lambda v, c: v / c, "ours/torchrun >= 0.98", on_ratio(lambda r: r >= 0.98), unit="steps/s")
    row("pool cold start, start_pool+1st job", "cold_ours_s", "plain ipyparallel.Cluster", "cold_ipyparallel_s",
        lambda v, c: v / c, "ours <= 3 s", lambda v, c, r: None if v is None else v <= 3.0, unit="s")
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
    ap.add_argument("--repeats", type=int, default=15,
                    help="timed warm dispatches (api.distribute, raw execute, debug_launcher); default 15")
    ap.add_argument("--torchrun-repeats", type=int, default=3, help="torchrun launches of the trivial job; default 3")
    ap.add_argument("--steps", type=int, default=80, help="training steps per run; default 80")
    ap.add_argument("--step-ms", type=float, default=25.0, help="fixed step length (>= 20 ms); default 25")
    ap.add_argument("--train-repeats", type=int, default=3, help="training runs per launcher; default 3")
    ap.add_argument("--cold-repeats", type=int, default=3, help="cold starts per launcher; default 3")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.torchrun_repeats < 1 or args.train_repeats < 1 or args.cold_repeats < 1:
        ap.error("repeat counts must be at least 1")
    if args.step_ms < 20:
        ap.error("--step-ms must be at least 20")

    # keep the run's job logs out of the user's store
    own_home = "TRAINORCH_HOME" not in os.environ
    if own_home:
        os.environ["TRAINORCH_HOME"] = tempfile.mkdtemp(prefix="trainorch-bench-home-")

    import torch

    b = Bench(args)
    started = time.perf_counter()
    say(f"trainorch_jupyter launch benchmark: {WORLD} CPU ranks (gloo), torch {torch.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} cores")
    try:
        b.attempt("_warm", b.warm_dispatch)
        if b.pool is not None:
            b.attempt("_train", b.training)
        else:
            b.errors["train_ours_steps_per_s"] = "not measured (no pool)"
        b.stop_pool()
        say(f"[3/3] pool cold start from a fresh process, {args.cold_repeats} run"
            f"{'s' if args.cold_repeats != 1 else ''} each")
        b.attempt("cold_ours_s", lambda: b.cold("cold_ours", COLD_OURS))
        b.attempt("cold_ipyparallel_s", lambda: b.cold("cold_ipyparallel", COLD_PLAIN))
    finally:
        try:
            b.stop_pool()
        except Exception:
            traceback.print_exc()
        killed = b.leftovers()
        shutil.rmtree(b.work, ignore_errors=True)
        if own_home:
            shutil.rmtree(os.environ["TRAINORCH_HOME"], ignore_errors=True)

    for key in ("_warm", "_train"):  # a failed section: its rows say so
        if key in b.errors:
            for k in ("ours_dispatch_ms", "raw_execute_ms") if key == "_warm" else (
                    "train_ours_steps_per_s", "train_torchrun_steps_per_s"):
                b.errors.setdefault(k, b.errors[key])
    rows = build_rows(b)
    total = time.perf_counter() - started
    say("")
    say(render(rows))
    say("")
    say(f"total {total:.0f} s; leftover cluster processes: "
        + ("none" if not killed else f"{len(killed)} (killed: " + ", ".join(str(k['pid']) for k in killed) + ")"))
    if args.json:
        doc = {
            "world_size": WORLD,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "args": vars(args),
            "rows": rows,
            "samples": {k: v for k, v in b.results.items() if not k.startswith("_")},
            "errors": {k: v for k, v in b.errors.items() if not k.startswith("_")},
            "leftovers_killed": killed,
            "total_s": total,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=str)
        say(f"wrote {args.json}")
    failed = [k for k, v in b.errors.items() if v.startswith("failed")]
    return 1 if failed or killed else 0


if __name__ == "__main__":
    sys.exit(main())
