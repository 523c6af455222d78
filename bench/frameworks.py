"""Framework benchmarks: each backend of ``%%distribute`` against the usual way to run the same work.

- scikit-learn (``frameworks_sklearn.bench_sklearn``): GridSearchCV across 2 engines vs joblib's loky
  with ``n_jobs=2`` vs ``n_jobs=1``, interleaved; goal: within 10% of loky.
- TensorFlow (``frameworks_tf.bench_tensorflow``): Keras ``fit`` steps/s through ``%%distribute`` vs the
  same script started as two processes by hand with ``TF_CONFIG``; goal >= 0.95.

    python bench/frameworks.py [--only sklearn|tensorflow] [--repeats N] [--tf-repeats N] [--json PATH]

A benchmark, not a test: it prints medians, ratios and goals, and exits non-zero only when a
measurement could not be taken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("sklearn", "tensorflow"), default=None)
    parser.add_argument("--repeats", type=int, default=3, help="scikit-learn repeats")
    parser.add_argument("--tf-repeats", type=int, default=3)
    parser.add_argument("--tf-epochs", type=int, default=6)
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRAINORCH_HOME", tempfile.mkdtemp(prefix="trainorch-bench-"))
    os.environ.setdefault("TRAINORCH_LEASE_DIR", os.path.join(os.environ["TRAINORCH_HOME"], "leases"))
    results: dict[str, Any] = {}
    failed = False
    if args.only in (None, "sklearn"):
        from bench import frameworks_sklearn as sk

        try:
            rows = sk.bench_sklearn(args.repeats)
            sk.print_table(rows)
            results["sklearn"] = rows
        except Exception:
            traceback.print_exc()
            failed = True
    if args.only in (None, "tensorflow"):
        from bench import frameworks_tf as tfb

        try:
            results["tensorflow"] = tfb.bench_tensorflow(args.tf_repeats, args.tf_epochs)
        except Exception:
            traceback.print_exc()
            failed = True
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
