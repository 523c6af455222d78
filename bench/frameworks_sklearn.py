"""Framework benchmarks: each backend of ``%%distribute`` against the usual way to run the same work.

scikit-learn (:func:`bench_sklearn`): one ``GridSearchCV`` on sklearn's digits, timed
side by side in one run, the configurations interleaved repeat by repeat:

1. ``%%distribute --framework sklearn`` (``api.distribute``) on a warm 2-engine pool,
   ``n_jobs=-1``;
2. joblib's loky backend with ``n_jobs=2`` in this process (warm workers): the local limit;
3. ``n_jobs=1`` in this process.

    python bench/frameworks.py --only sklearn [--repeats N] [--json PATH]

This is a benchmark, not a test: it prints medians, ratios and goals, and exits
non-zero only when a measurement could not be taken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

ENGINES = 2

# -- scikit-learn --------------------------------------------------------------------------

SK_SETUP = """\
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
X, y = load_digits(return_X_y=True)
X = X / 16.0
grid = {"C": [0.3, 1, 3, 10], "gamma": [0.003, 0.01, 0.03, 0.1]}
"""
SK_SEARCH = """\
import time
from sklearn.model_selection import GridSearchCV
_t0 = time.perf_counter()
search = GridSearchCV(SVC(), grid, cv=5, n_jobs=N_JOBS, refit=False).fit(X, y)
bench_seconds = time.perf_counter() - _t0
bench_scores = list(search.cv_results_["mean_test_score"])
"""
SK_FITS = 16 * 5


def _sk_local(n_jobs: int, ns: dict[str, Any]) -> tuple[float, list[float]]:
    exec(SK_SEARCH.replace("N_JOBS", str(n_jobs)), ns)
    return ns["bench_seconds"], ns["bench_scores"]


def _sk_engines(ns: dict[str, Any]) -> tuple[float, float, list[float]]:
    from trainorch_jupyter import api

    t0 = time.perf_counter()
    job = api.distribute(SK_SEARCH.replace("N_JOBS", "-1"), namespace=ns, framework="sklearn", log=lambda s: None)
    wall = time.perf_counter() - t0
    assert job.tasks_done >= SK_FITS and all(job.tasks_by_engine.values()), job.tasks_by_engine
    return ns["bench_seconds"], wall, ns["bench_scores"]


def bench_sklearn(repeats: int = 3) -> list[dict[str, Any]]:
    """GridSearchCV across the engines vs loky n_jobs=2 vs n_jobs=1; rows for the table."""
    from trainorch_jupyter import api

    ns: dict[str, Any] = {}
    exec(SK_SETUP, ns)
    api.start_pool(ENGINES)
    try:
        _sk_engines(ns)          # warm: the engines import scikit-learn
        _sk_local(2, dict(ns))   # warm: loky starts its workers
        ours, ours_wall, loky, seq = [], [], [], []
        reference = None
        for _ in range(repeats):  # interleaved, so the machine's load hits every configuration alike
            t, wall, scores = _sk_engines(ns)
            ours.append(t)
            ours_wall.append(wall)
            t2, s2 = _sk_local(2, dict(ns))
            loky.append(t2)
            t1, s1 = _sk_local(1, dict(ns))
            seq.append(t1)
            reference = reference or s1
            if not (scores == s1 == s2):
                raise AssertionError("the three configurations disagree on the cv scores")
    finally:
        api.stop_pool()
    m = {k: statistics.median(v) for k, v in
         {"ours": ours, "ours_wall": ours_wall, "loky": loky, "seq": seq}.items()}
    return [
        {"measurement": f"GridSearchCV {SK_FITS} fits, %%distribute {ENGINES} engines",
         "median": m["ours"], "unit": "s", "against": "loky n_jobs=2", "other": m["loky"],
         "ratio": m["ours"] / m["loky"], "goal": "ours/loky <= 1.10", "met": m["ours"] / m["loky"] <= 1.10,
         "runs": {"ours": ours, "loky": loky}},
        {"measurement": f"GridSearchCV {SK_FITS} fits, %%distribute {ENGINES} engines",
         "median": m["ours"], "unit": "s", "against": "n_jobs=1", "other": m["seq"],
         "ratio": m["seq"] / m["ours"], "goal": "speed-up (n_jobs=1/ours), for reading", "met": None,
         "runs": {"ours": ours, "seq": seq}},
        {"measurement": "the whole cell through api.distribute",
         "median": m["ours_wall"], "unit": "s", "against": "the search inside it", "other": m["ours"],
         "ratio": m["ours_wall"] / m["ours"], "goal": "job overhead, for reading", "met": None,
         "runs": {"wall": ours_wall}},
    ]


# -- the table -------------------------------------------------------------------------------

def _fmt(v: float, unit: str) -> str:
    return f"{v:.2f} {unit}"


def print_table(rows: list[dict[str, Any]]) -> None:
    table = [("measurement", "median", "comparison (median)", "ratio", "goal", "met")]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        table.append((r["measurement"], _fmt(r["median"], r["unit"]), f"{r['against']} {_fmt(r['other'], r['unit'])}",
                      f"{r['ratio']:.3f}", r["goal"], met))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the rows (with every run) here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRAINORCH_HOME", tempfile.mkdtemp(prefix="trainorch-bench-"))
    os.environ.setdefault("TRAINORCH_LEASE_DIR", os.path.join(os.environ["TRAINORCH_HOME"], "leases"))
    import sklearn

    print(f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"{os.cpu_count()} CPUs, {ENGINES} engines, repeats {args.repeats}")
    rows: list[dict[str, Any]] = []
    failed = False
    for bench in (bench_sklearn,):
        try:
            rows += bench(args.repeats)
        except Exception:
            traceback.print_exc()
            failed = True
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
