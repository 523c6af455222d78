"""%tune benchmark: per-trial overhead and parallel speed-up, side by side in one run.

1. Per-trial overhead: a 1 ms (busy) objective, N trials, random sampler, through
   ``api.tune`` on a 2-engine and a 1-engine pool, against plain in-process Optuna
   (``study.optimize``, in memory, and on the same journal-file storage).
   Overhead = our wall time per trial - in-process wall time per trial
   (goal: at most 5 ms per trial).
2. Parallel speed-up: 40 trials of a CPU-bound pure-Python objective of about
   200 ms, on 2 engines vs 1 engine vs Optuna's ``n_jobs=2`` threads (which the GIL
   serialises) (goal: 2 engines at least 1.8x as fast as 1 engine).

    python bench/tune.py [--trials N] [--json PATH]

A benchmark, not a test: figures depend on the machine and its load (on a shared
machine, run it when the other cores are idle; the speed-up needs 2 free cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

HOME = tempfile.mkdtemp(prefix="trainorch-bench-tune-")
os.environ.setdefault("TRAINORCH_HOME", os.path.join(HOME, "home"))
os.environ.setdefault("TRAINORCH_LEASE_DIR", os.path.join(HOME, "leases"))

SPEEDUP_TRIALS = 40
CPU_MS = 200


def _main_fn(src: str, name: str) -> Any:
    """A function defined as in a notebook (module __main__: cloudpickle ships it by value)."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(src, ns)
    return ns[name]


BUSY_1MS = _main_fn(
    "import time\n"
    "def busy_1ms(trial):\n"
    "    x = trial.suggest_float('x', 0, 1)\n"
    "    end = time.perf_counter() + 0.001\n"
    "    while time.perf_counter() < end:\n"
    "        pass\n"
    "    return x\n",
    "busy_1ms",
)


def calibrate(ms: float) -> int:
    """Loop iterations of the pure-Python objective that take about ``ms`` on this machine."""
    def spin(n: int) -> float:
        t = time.perf_counter()
        s = 0
        for i in range(n):
            s += i * i % 7
        return time.perf_counter() - t

    n = 200_000
    best = min(spin(n) for _ in range(3))
    return int(n * (ms / 1000.0) / best)


def cpu_objective(iterations: int) -> Any:
    return _main_fn(
        f"def cpu(trial):\n"
        f"    x = trial.suggest_float('x', 0, 1)\n"
        f"    s = 0\n"
        f"    for i in range({iterations}):\n"
        f"        s += i * i % 7\n"
        f"    return x + s * 0.0\n",
        "cpu",
    )


def in_process(objective: Any, n: int, storage: Any = None, n_jobs: int = 1) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), storage=storage)
    t = time.perf_counter()
    study.optimize(objective, n_trials=n, n_jobs=n_jobs)
    return time.perf_counter() - t


def on_pool(objective: Any, n: int) -> float:
    from trainorch_jupyter import api

    t = time.perf_counter()
    job = api.tune(objective, n_trials=n, sampler="random", pruner="none", seed=0, show=False)
    wall = time.perf_counter() - t
    states = [tr["state"] for tr in job.snapshot.trials.values()]
    if states.count("COMPLETE") != n:
        raise RuntimeError(f"expected {n} complete trials, got {states}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials of the 1 ms objective")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from trainorch_jupyter import api
    from trainorch_jupyter.tuning.storage import open_storage

    n = args.trials
    iterations = calibrate(CPU_MS)
    cpu = cpu_objective(iterations)
    res: dict[str, Any] = {"trials_1ms": n, "cpu_iterations": iterations, "cores": os.cpu_count()}

    # in-process references
    res["inproc_memory_1ms"] = in_process(BUSY_1MS, n)
    journal = open_storage(f"journal:{os.path.join(HOME, 'inproc.journal')}")
    res["inproc_journal_1ms"] = in_process(BUSY_1MS, n, storage=journal)
    res["cpu_single_trial"] = in_process(cpu, 3) / 3
    res["threads2_cpu"] = in_process(cpu, SPEEDUP_TRIALS, n_jobs=2)

    for engines in (2, 1):
        api.start_pool(engines)
        try:
            on_pool(BUSY_1MS, 4)  # warm: engines import Optuna once
            res[f"pool{engines}_1ms"] = on_pool(BUSY_1MS, n)
            res[f"pool{engines}_cpu"] = on_pool(cpu, SPEEDUP_TRIALS)
        finally:
            api.stop_pool()

    per = {k: res[k] / n * 1000 for k in ("inproc_memory_1ms", "inproc_journal_1ms", "pool2_1ms", "pool1_1ms")}
    over2 = per["pool2_1ms"] - per["inproc_memory_1ms"]
    over1 = per["pool1_1ms"] - per["inproc_memory_1ms"]
    speedup = res["pool1_cpu"] / res["pool2_cpu"]
    threads = res["pool1_cpu"] / res["threads2_cpu"]
    res.update(per_trial_ms=per, overhead_2_engines_ms=over2, overhead_1_engine_ms=over1,
               speedup_2_vs_1=speedup, speedup_threads_vs_1_engine=threads)

    print(f"\n%tune benchmark ({os.cpu_count()} cores; TRAINORCH_HOME {os.environ['TRAINORCH_HOME']})")
    print(f"\n1. {n} trials of a 1 ms objective (random sampler), wall time per trial")
    rows = [
        ("plain Optuna, in process, in memory", per["inproc_memory_1ms"]),
        ("plain Optuna, in process, journal file", per["inproc_journal_1ms"]),
        ("%tune, 2 engines (journal file)", per["pool2_1ms"]),
        ("%tune, 1 engine (journal file)", per["pool1_1ms"]),
    ]
    for label, ms in rows:
        print(f"   {label:42s} {ms:7.2f} ms")
    print(f"   overhead per trial, 2 engines vs in-process: {over2:6.2f} ms   (goal <= 5 ms: "
          f"{'met' if over2 <= 5 else 'NOT met'})")
    print(f"   overhead per trial, 1 engine  vs in-process: {over1:6.2f} ms")
    print(f"\n2. {SPEEDUP_TRIALS} trials of a CPU-bound pure-Python objective "
          f"(~{res['cpu_single_trial'] * 1000:.0f} ms each here)")
    print(f"   %tune, 1 engine                  {res['pool1_cpu']:6.2f} s")
    print(f"   %tune, 2 engines                 {res['pool2_cpu']:6.2f} s   {speedup:.2f}x of 1 engine "
          f"(goal >= 1.8x: {'met' if speedup >= 1.8 else 'NOT met'})")
    print(f"   Optuna n_jobs=2 threads          {res['threads2_cpu']:6.2f} s   {threads:.2f}x of 1 engine")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
