"""IPython magics: parse flags, raise UsageError, call :mod:`trainorch_jupyter.api`."""

from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic import line_cell_magic  # %tune
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import api


def _names(value: str | None) -> list[str]:
    if not value:
        return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if not v.isidentifier()]
    if bad:
        raise UsageError(f"{bad[0]!r} is not a Python name; give names separated by commas")
    return names


def _usage(e: Exception) -> UsageError:
    return UsageError(str(e).splitlines()[0])


def _status_table(rows: list[dict[str, Any]]) -> str:
    cols = ["engine", "rank", "host", "pid", "device", "threads", "state"]
    table = [cols] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


@magics_class
class TrainorchMagics(Magics):
    # ------------------------------------------------------------------ %cluster
    @line_magic
    def cluster(self, line: str) -> None:
        """Manage the engine pool.

        %cluster start [-n N] [--launcher local|mpi|slurm|ssh|...] [--Class.trait=value ...]
        %cluster status
        %cluster stop
        %cluster restart [--engine K]
        %cluster attach [--profile P] [--cluster-id ID] [--file CONNECTION_JSON] [--restart]
        """
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%cluster: {e}") from None
        if not argv:
            raise UsageError("%cluster needs a command: start, status, stop, restart or attach")
        cmd, rest = argv[0], argv[1:]
        handler = {
            "start": self._start, "status": self._status, "stop": self._stop,
            "restart": self._restart, "attach": self._attach,
        }.get(cmd)
        if handler is None:
            raise UsageError(f"%cluster {cmd}: unknown command; use start, status, stop, restart or attach")
        try:
            handler(rest)
        except api.UsageProblem as e:
            raise _usage(e) from None

    def _start(self, argv: list[str]) -> None:
        import argparse

        parser = argparse.ArgumentParser(prog="%cluster start", add_help=False)
        parser.add_argument("-n", "--engines", type=int, default=None)
        parser.add_argument("--launcher", default="local")
        parser.add_argument("--timeout", type=float, default=120.0)
        opts, extra = _parse(parser, argv)
        config = None
        if extra:
            bad = [a for a in extra if not (a.startswith("--") and "." in a.split("=", 1)[0])]
            if bad:
                raise UsageError(
                    f"%cluster start: unknown option {bad[0]}; ipyparallel options look like --Class.trait=value"
                )
            from traitlets.config.loader import KVArgParseConfigLoader

            config = KVArgParseConfigLoader(extra).load_config()
        pool = api.start_pool(opts.engines, launcher=opts.launcher, config=config, timeout=opts.timeout)
        print(f"Started pool: {pool.describe()}")

    def _status(self, argv: list[str]) -> None:
        if argv:
            raise UsageError("%cluster status takes no options")
        pool = api.current_pool()
        if pool is None:
            print("No pool is running. %%distribute starts one, or use %cluster start -n N.")
            return
        kind = "owned" if pool.owned else "attached"
        print(f"Pool {pool.id} ({kind}, {pool.launcher} launcher): {pool.describe()}")
        print(_status_table(pool.status()))

    def _stop(self, argv: list[str]) -> None:
        if argv:
            raise UsageError("%cluster stop takes no options")
        pool = api.current_pool()
        owned = pool is not None and pool.owned
        if api.stop_pool():
            print("Pool stopped." if owned else "Detached from the pool (it keeps running).")
        else:
            print("No pool is running.")

    def _restart(self, argv: list[str]) -> None:
        import argparse

        parser = argparse.ArgumentParser(prog="%cluster restart", add_help=False)
        parser.add_argument("--engine", type=int, default=None)
        opts, extra = _parse(parser, argv)
        if extra:
            raise UsageError(f"%cluster restart: unknown option {extra[0]}")
        pool = api.restart_pool(opts.engine)
        what = f"engine {opts.engine}" if opts.engine is not None else "all engines"
        print(f"Restarted {what}: {pool.describe()}")

    def _attach(self, argv: list[str]) -> None:
        import argparse

        parser = argparse.ArgumentParser(prog="%cluster attach", add_help=False)
        parser.add_argument("--profile", default=None)
        parser.add_argument("--cluster-id", default=None)
        parser.add_argument("--file", default=None)
        parser.add_argument("--timeout", type=float, default=30.0)
        parser.add_argument("--restart", action="store_true")
        opts, extra = _parse(parser, argv)
        if extra:
            raise UsageError(f"%cluster attach: unknown option {extra[0]}")
        pool = api.attach_pool(
            profile=opts.profile, cluster_id=opts.cluster_id, url_file=opts.file, timeout=opts.timeout,
            restart=opts.restart,
        )
        print(f"Attached to {pool.describe()}")

    # ------------------------------------------------------------------ %runs
    @line_magic
    def runs(self, line: str) -> None:
        """Jobs in the run store.

        %runs [-n N]                  recent jobs
        %runs show ID                 details and the last lines of every rank
        %runs logs ID [--rank K]      the full log of one rank
        %runs compare ID ID [...]     final metrics side by side, with a plot
        """
        import argparse

        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%runs: {e}") from None
        try:
            if not argv or argv[0].startswith("-"):
                parser = argparse.ArgumentParser(prog="%runs", add_help=False)
                parser.add_argument("-n", type=int, default=20)
                opts, extra = _parse(parser, argv)
                if extra or opts.n < 1:
                    raise UsageError("usage: %runs [-n N] | show ID | logs ID [--rank K] | compare ID ID ...")
                print(api.runs(opts.n))
            elif argv[0] == "show" and len(argv) == 2:
                print(api.run_detail(argv[1]))
            elif argv[0] == "logs" and len(argv) >= 2:
                parser = argparse.ArgumentParser(prog="%runs logs", add_help=False)
                parser.add_argument("--rank", type=int, default=0)
                opts, extra = _parse(parser, argv[2:])
                if extra:
                    raise UsageError(f"%runs logs: unknown option {extra[0]}")
                text = api.run_log(argv[1], opts.rank)
                print(text if text else f"(rank {opts.rank} printed nothing)", end="" if text else "\n")
            elif argv[0] == "compare" and len(argv) >= 3:
                text, history = api.run_compare(argv[1:])
                print(text)
                _plot_history(history)
            else:
                raise UsageError("usage: %runs [-n N] | show ID | logs ID [--rank K] | compare ID ID ...")
        except api.UsageProblem as e:
            raise _usage(e) from None

    # ------------------------------------------------------------------ %%distribute
    @magic_arguments()
    @argument("--framework", "-f", default=None,
              help="torch, tensorflow (tf, keras), sklearn (the cell runs here, joblib tasks on the engines), "
                   "or none for plain Python "
                   "(default: detected from the cell's imports)")
    @argument("-n", "--engines", type=int, default=None, help="use the first N engines of the pool")
    @argument("--push", default=None, help="kernel names to send to every rank: a,b")
    @argument("--pull", default=None, help="names whose rank-0 value comes back into the notebook")
    @argument("--gather", default=None, help="names collected from every rank into a list, in rank order")
    @argument("--backend", default=None, help="gloo, nccl or mpi (default: nccl when every rank has a GPU, else gloo); "
              "tensorflow: ring, nccl or auto (default: nccl on GPUs, else ring)")
    @argument("--timeout", type=float, default=None,
              help="rendezvous/collective timeout in seconds (default 300)")
    @argument("--grace", type=float, default=None,
              help="seconds a cancelled rank gets before its engine is killed (default 5)")
    @argument("--bg", action="store_true", help="return a Job handle at once instead of blocking")
    @cell_magic
    def distribute(self, line: str, cell: str) -> Any:
        """Run this cell on the engine pool as a distributed job."""
        args = parse_argstring(self.distribute, line)
        known = set(map(id, api.jobs()))
        try:
            job = api.distribute(
                cell,
                namespace=self.shell.user_ns,
                framework=args.framework,
                n=args.engines,
                push=_names(args.push),
                pull=_names(args.pull),
                gather=_names(args.gather),
                backend=args.backend,
                timeout=args.timeout,
                bg=args.bg,
                grace=api.DEFAULT_GRACE if args.grace is None else args.grace,
            )
        except api.UsageProblem as e:
            raise _usage(e) from None
        finally:
            launched = [j for j in api.jobs() if id(j) not in known]
            if launched:  # also after a failure or an interrupt: _job is the job that ran
                self.shell.user_ns["_job"] = launched[-1]
        return job if args.bg else None

    # ------------------------------------------------------------------ %tune
    @magic_arguments()
    @argument("objective", nargs="?", default=None,
              help="a function of an Optuna trial defined in the notebook (not with the %%%%tune cell form)")
    @argument("--trials", "-t", type=int, default=None, help="run until N more trials finish (complete or pruned)")
    @argument("--timeout", type=float, default=None, help="start no trial after S seconds")
    @argument("--direction", default=None, help="minimize (default) or maximize")
    @argument("--directions", default=None, help="several objectives: minimize,maximize,...")
    @argument("--sampler", default="tpe", help="tpe (default), random, cmaes, grid or nsga2")
    @argument("--pruner", default="median", help="median (default), hyperband, successive-halving or none")
    @argument("--study", default=None, help="study name; running again with the same name resumes it")
    @argument("--storage", default=None, help="Optuna storage URL (sqlite:///..., postgresql://...) or journal:PATH")
    @argument("--engines-per-trial", type=int, default=1, help="engines per trial (default 1)")
    @argument("--push", default=None, help="kernel names to send to every engine: a,b")
    @argument("--catch", action="store_true",
              help="a trial that raises is recorded as FAIL and the search goes on (default: it stops the search)")
    @argument("--seed", type=int, default=None, help="seed the sampler (trial k uses seed + k)")
    @argument("--grid", default=None, help="with --sampler grid: a dict {param: [values]} in the notebook")
    @argument("--out", default=None, help="put the Optuna study in the notebook under this name")
    @argument("--show", default=None, metavar="STUDY", help="show a finished study again")
    @line_cell_magic
    def tune(self, line: str, cell: str | None = None) -> None:
        """Hyperparameter search with Optuna across the engine pool, one trial per engine.

        %tune objective --trials 20 --direction maximize
        %%tune --trials 20          (the cell is the objective: `trial` in scope, last expression = value)
        %tune --show STUDY
        """
        args = parse_argstring(self.tune, line)
        ns = self.shell.user_ns
        try:
            if args.show is not None:
                if cell is not None or args.objective is not None:
                    raise UsageError("%tune --show STUDY takes no objective")
                api.show_study(args.show, storage=args.storage)
                return
            if args.trials is None:
                raise UsageError("%tune needs --trials N")
            objective = None
            if cell is not None:
                if args.objective is not None:
                    raise UsageError("%%tune: the cell is the objective; give no OBJECTIVE name")
                if not cell.strip():
                    raise UsageError("%%tune: the cell is empty; write the objective's body there")
            elif args.objective is None:
                raise UsageError("usage: %tune OBJECTIVE --trials N [...] (or the %%tune cell form)")
            else:
                if args.objective not in ns:
                    raise UsageError(f"%tune {args.objective}: no such name in the notebook; define it first")
                objective = ns[args.objective]
            for flag in ("out",):
                value = getattr(args, flag)
                if value is not None and not value.isidentifier():
                    raise UsageError(f"--{flag} {value}: not a Python name")
            grid = None
            if args.grid is not None:
                if args.grid not in ns:
                    raise UsageError(f"--grid {args.grid}: no such name in the notebook")
                grid = ns[args.grid]
            known = set(map(id, api.jobs()))
            try:
                api.tune(
                    objective, cell=cell, n_trials=args.trials, namespace=ns, direction=args.direction,
                    directions=[d.strip() for d in args.directions.split(",") if d.strip()] if args.directions else None,
                    sampler=args.sampler, pruner=args.pruner, study=args.study, storage=args.storage,
                    timeout=args.timeout, engines_per_trial=args.engines_per_trial, push=_names(args.push),
                    catch=args.catch, seed=args.seed, grid=grid, out=args.out,
                    source=f"%tune {line.strip()}" if cell is None else f"%%tune {line.strip()}",
                )
            finally:
                launched = [j for j in api.jobs() if id(j) not in known]
                if launched:  # also after a failure or an interrupt: the study run that ran
                    ns["_tune"] = launched[-1]
        except api.UsageProblem as e:
            raise _usage(e) from None

    # ------------------------------------------------------------------ %validate
    @line_magic
    def validate(self, line: str) -> None:
        """Validate a model on held-out data; fail the cell when it misses a bound.

        %validate MODEL --data X,y [--metrics accuracy,f1,...] [--min metric=value ...]
                  [--max metric=value ...] [--baseline NAME_OR_RUN] [--tolerance T]
                  [--cv K [--fit FIT_FN]] [--task classification|regression]
                  [--outputs auto|logits|proba] [--name NAME] [-n N]

        MODEL is a scikit-learn estimator, torch nn.Module or Keras model in the
        notebook, or the name of one on the engines (from a %%distribute cell).
        The result is kept in the run store and in ``_validation``.
        """
        import argparse

        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%validate: {e}") from None
        parser = argparse.ArgumentParser(prog="%validate", add_help=False)
        parser.add_argument("model", nargs="?")
        parser.add_argument("--data", default=None)
        parser.add_argument("--metrics", default=None)
        parser.add_argument("--min", action="append", default=[])
        parser.add_argument("--max", action="append", default=[])
        parser.add_argument("--baseline", default=None)
        parser.add_argument("--tolerance", type=float, default=0.0)
        parser.add_argument("--cv", type=int, default=None)
        parser.add_argument("--fit", default=None)
        parser.add_argument("--task", default=None)
        parser.add_argument("--outputs", default="auto", choices=["auto", "logits", "proba"])
        parser.add_argument("--name", default=None)
        parser.add_argument("-n", "--engines", type=int, default=None)
        opts, extra = _parse(parser, argv)
        if extra:
            raise UsageError(f"%validate: unknown option {extra[0]}")
        if not opts.model or not opts.data:
            raise UsageError("usage: %validate MODEL --data X,y [--min metric=value] [--baseline NAME] ...")
        ns = self.shell.user_ns
        data = _names(opts.data)
        if len(data) != 2:
            raise UsageError(f"--data {opts.data}: give two names, features and labels: --data X_val,y_val")
        for d in data:
            if d not in ns:
                raise UsageError(f"--data {d}: no such name in the notebook; define it first")
        model_ref = opts.model
        if not model_ref.isidentifier():
            raise UsageError(f"{model_ref!r} is not a Python name; give the model's name")
        metrics = [v.strip() for v in opts.metrics.split(",") if v.strip()] if opts.metrics else None
        try:
            result = api.validate(
                model_ref, ns[data[0]], ns[data[1]], namespace=ns, metrics=metrics,
                min=opts.min, max=opts.max,
                baseline=opts.baseline, tolerance=opts.tolerance, cv=opts.cv, fit=opts.fit, task=opts.task,
                outputs=opts.outputs, name=opts.name, n=opts.engines, raise_on_fail=False,
                source=f"%validate {line.strip()}",
            )
        except api.UsageProblem as e:
            raise _usage(e) from None
        ns["_validation"] = result
        if not result["passed"]:
            raise api.ValidationFailed(result)


def _plot_history(history: list[dict[str, Any]]) -> None:
    """Metric against step for each job (rank 0), when matplotlib is installed."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("(install matplotlib for the comparison plot)")
        return
    names = sorted({k for h in history for m in h["metrics"] for k, v in m["values"].items()
                    if isinstance(v, (int, float))})
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        for h in history:
            pts = [(m["step"] if m["step"] is not None else i, m["values"][name])
                   for i, m in enumerate(h["metrics"]) if name in m["values"]]
            if pts:
                ax.plot(*zip(*pts), label=h["id"])
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    plt.show()


def _parse(parser: Any, argv: list[str]) -> tuple[Any, list[str]]:
    try:
        return parser.parse_known_args(argv)
    except SystemExit:
        raise UsageError(f"{parser.prog}: bad options {' '.join(argv)!r}") from None
