"""%validate benchmark: a sharded evaluation over 2 engines against the same
evaluation on 1 engine (same threads per engine), and against one plain process
using both cores.

    python bench/validate.py [--samples N] [--hidden H] [--repeats R] [--json PATH]

The model is an MLP (64 -> H -> H -> 10, float32) that lives on the engines, built
by a ``%%distribute``-style job (``api.distribute``), evaluated by
``api.validate("bignet", X, y)`` with the default metrics (accuracy, macro
precision/recall/F1, ROC AUC, log loss and the confusion matrix).  Each timed call
is the whole %validate: shipping the shards, predicting, gathering, metrics.
Alternating order; the median of ``--repeats`` calls each, after one warm-up call.
The sharded and single-engine results are checked to agree to 1e-9.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.launch import child_env, median, render, run_child, say  # noqa: E402

BUILD = """\
import torch
from torch import nn
torch.manual_seed(0)
bignet = nn.Sequential(nn.Linear(64, {hidden}), nn.ReLU(), nn.Linear({hidden}, {hidden}), nn.ReLU(),
                       nn.Linear({hidden}, 10))
"""

# the same evaluation in one plain process with both cores: forward pass, softmax, the same metrics
ONE_PROCESS = """\
import json, sys, time
import numpy as np
import torch
from torch import nn
from sklearn import metrics as skm
torch.set_num_threads({threads})
X, y = np.load(sys.argv[1]), np.load(sys.argv[2])
torch.manual_seed(0)
bignet = nn.Sequential(nn.Linear(64, {hidden}), nn.ReLU(), nn.Linear({hidden}, {hidden}), nn.ReLU(),
                       nn.Linear({hidden}, 10)).eval()
times = []
for _ in range({repeats} + 1):
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = np.concatenate([bignet(torch.from_numpy(X[i:i + 256])).double().numpy()
                                 for i in range(0, len(X), 256)])
    p = np.exp(logits - logits.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    labels = list(range(10))
    m = dict(accuracy=skm.accuracy_score(y, pred),
             f1=skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0),
             precision=skm.precision_score(y, pred, average="macro", labels=labels, zero_division=0),
             recall=skm.recall_score(y, pred, average="macro", labels=labels, zero_division=0),
             roc_auc=skm.roc_auc_score(y, p, multi_class="ovr", labels=labels),
             log_loss=skm.log_loss(y, p, labels=labels))
    skm.confusion_matrix(y, pred, labels=labels)
    times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({{"times": times[1:], "metrics": m}}))
"""


# the machine's own headroom: the same forward passes in plain processes with 1 thread each, one process
# on all samples against two processes on half each, started together (at the wall-clock time argv[3])
RAW = """\
import sys, time
import torch
from torch import nn
torch.set_num_threads(1)
n, hidden, start_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                    nn.Linear(hidden, 10)).eval()
X = torch.randn(n, 64)
while time.time() < start_at:
    time.sleep(0.001)
with torch.no_grad():
    for i in range(0, n, 256):
        net(X[i:i + 256])
print("END", time.time() - start_at, flush=True)
"""


def raw_parallel(work: str, samples: int, hidden: int, procs: int) -> float:
    """Seconds for ``procs`` plain 1-thread processes to do ``samples`` rows between them."""
    import subprocess

    script = os.path.join(work, "raw.py")
    with open(script, "w") as f:
        f.write(RAW)
    start_at = time.time() + 8.0  # after every process has imported torch
    share = -(-samples // procs)
    children = [subprocess.Popen([sys.executable, script, str(share), str(hidden), str(start_at)],
                                 stdout=subprocess.PIPE, text=True, env=child_env(1), cwd=work)
                for _ in range(procs)]
    ends = []
    try:
        for c in children:
            out, _ = c.communicate(timeout=900)
            if c.returncode != 0:
                raise RuntimeError(f"raw process exited {c.returncode}")
            ends.append(float(next(x for x in out.splitlines() if x.startswith("END ")).split()[1]))
    finally:
        for c in children:  # ours, by pid
            if c.poll() is None:
                c.kill()
    return max(ends)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=40001, help="evaluation samples (default 40001: odd)")
    ap.add_argument("--hidden", type=int, default=2048, help="hidden width of the MLP (default 2048)")
    ap.add_argument("--repeats", type=int, default=3, help="timed evaluations per setup (default 3)")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = ap.parse_args(argv)
    if args.samples < 2 or args.hidden < 1 or args.repeats < 1:
        ap.error("--samples >= 2, --hidden >= 1, --repeats >= 1")
    own_home = "TRAINORCH_HOME" not in os.environ
    if own_home:
        os.environ["TRAINORCH_HOME"] = tempfile.mkdtemp(prefix="trainorch-bench-home-")
    work = tempfile.mkdtemp(prefix="trainorch-bench-validate-")

    import numpy as np

    from trainorch_jupyter import api

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, 64)).astype(np.float32)
    y = rng.integers(0, 10, args.samples).astype(np.int64)
    times: dict[str, list[float]] = {"two": [], "one": []}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]
    say(f"trainorch_jupyter %validate benchmark: {args.samples} samples, MLP 64-{args.hidden}-{args.hidden}-10, "
        f"python {platform.python_version()}, {cores} cores, load average {load_before:.1f}")
    pool = None
    try:
        pool = api.start_pool(2)
        threads = pool.slots[0].threads
        api.distribute(BUILD.format(hidden=args.hidden), framework="none", show=False)
        say(f"[1/3] api.validate on 2 engines vs 1 engine ({threads} thread{'s' if threads != 1 else ''} "
            f"each), {args.repeats} runs each, alternating")
        for label, n in (("two", 2), ("one", 1)):  # warm-up: imports, first allocation
            results[label] = api.validate("bignet", X, y, n=n, show=False, name=f"bench-{label}")
        for i in range(args.repeats):
            for label, n in ((("two", 2), ("one", 1)) if i % 2 == 0 else (("one", 1), ("two", 2))):
                t0 = time.perf_counter()
                results[label] = api.validate("bignet", X, y, n=n, show=False, name=f"bench-{label}")
                times[label].append(time.perf_counter() - t0)
                snap = api.jobs()[-1].snapshot  # the validate job: the ranks' part of it
                times.setdefault(label + "_job", []).append(snap.ended - snap.started)
        diffs = {k: abs(results["two"]["metrics"][k] - results["one"]["metrics"][k])
                 for k in results["two"]["metrics"]}
        results["max_metric_difference"] = max(diffs.values())
        if results["max_metric_difference"] > 1e-9:
            errors["agreement"] = f"failed: sharded and single-engine metrics differ by {diffs}"
    except Exception:
        errors["engines"] = "failed: " + traceback.format_exc()
    finally:
        api.stop_pool()
    say(f"[2/3] one plain process with torch.set_num_threads({cores}), {args.repeats} runs")
    try:
        xp, yp = os.path.join(work, "X.npy"), os.path.join(work, "y.npy")
        np.save(xp, X)
        np.save(yp, y)
        script = os.path.join(work, "one_process.py")
        with open(script, "w") as f:
            f.write(ONE_PROCESS.format(threads=cores, hidden=args.hidden, repeats=args.repeats))
        out = run_child([sys.executable, script, xp, yp], timeout=1800, env=child_env(cores), cwd=work)
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        proc = json.loads(line[len("RESULT "):])
        times["process"] = proc["times"]
        if "two" in results and abs(proc["metrics"]["log_loss"] - results["two"]["metrics"]["log_loss"]) > 1e-6:
            errors["process"] = "failed: the plain process computed different metrics"
    except Exception:
        errors["process"] = "failed: " + traceback.format_exc()
    say(f"[3/3] the machine's headroom: 1 plain 1-thread process on all samples vs 2 on half each, "
        f"{args.repeats} runs each, alternating")
    try:
        for i in range(args.repeats):
            for procs in ((1, 2) if i % 2 == 0 else (2, 1)):
                times.setdefault(f"raw_{procs}", []).append(raw_parallel(work, args.samples, args.hidden, procs))
    except Exception:
        errors["raw"] = "failed: " + traceback.format_exc()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own_home:
            shutil.rmtree(os.environ["TRAINORCH_HOME"], ignore_errors=True)

    rows = []
    if times["two"] and times["one"]:
        two, one = median(times["two"]), median(times["one"])
        ratio = one / two
        rows.append({"measurement": "%validate, 2 engines (sharded)", "median_text": f"{two:.2f} s",
                     "comparison": f"1 engine {one:.2f} s", "ratio_text": f"{ratio:.2f}",
                     "goal": "1 engine / 2 engines >= 1.7", "met": ratio >= 1.7, "ratio": ratio})
        best = min(times["one"]) / min(times["two"])
        rows.append({"measurement": "%validate, 2 engines, best run", "median_text": f"{min(times['two']):.2f} s",
                     "comparison": f"1 engine best {min(times['one']):.2f} s", "ratio_text": f"{best:.2f}",
                     "goal": "-", "met": None, "ratio": best})
        if times.get("two_job") and times.get("one_job"):
            two_j, one_j = median(times["two_job"]), median(times["one_job"])
            rows.append({"measurement": "  of which the job on the engines", "median_text": f"{two_j:.2f} s",
                         "comparison": f"1 engine {one_j:.2f} s", "ratio_text": f"{one_j / two_j:.2f}",
                         "goal": "-", "met": None, "ratio": one_j / two_j})
        if times.get("process"):
            proc_t = median(times["process"])
            rows.append({"measurement": "%validate, 2 engines (sharded)", "median_text": f"{two:.2f} s",
                         "comparison": f"1 process, {cores} threads {proc_t:.2f} s",
                         "ratio_text": f"{proc_t / two:.2f}", "goal": "-", "met": None, "ratio": proc_t / two})
    if times.get("raw_1") and times.get("raw_2"):
        r1, r2 = median(times["raw_1"]), median(times["raw_2"])
        rows.append({"measurement": "plain processes, 2 x half (no trainorch)", "median_text": f"{r2:.2f} s",
                     "comparison": f"1 x all {r1:.2f} s", "ratio_text": f"{r1 / r2:.2f}",
                     "goal": "- (the machine's headroom)", "met": None, "ratio": r1 / r2})
    total = time.perf_counter() - started
    say("")
    if rows:
        say(render(rows))
    if "max_metric_difference" in results:
        say(f"\nsharded vs single engine: largest metric difference {results['max_metric_difference']:.3g}; "
            f"accuracy {results['two']['metrics']['accuracy']:.4f}, shards {results['two'].get('shards')}")
    for k, v in errors.items():
        say(f"{k}: {v}")
    say(f"total {total:.0f} s; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"(other processes on the machine compete with the engines for its {cores} cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cores": cores, "load_before": load_before,
                       "load_after": os.getloadavg()[0], "times": times, "rows": rows, "errors": errors,
                       "python": platform.python_version(),
                       "max_metric_difference": results.get("max_metric_difference")}, f, indent=2, default=str)
        say(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
