"""Checking what ``%tune`` was asked, and building Optuna's parts from names.

Everything here runs before anything is sent to the engines; every problem is a
:class:`TuneProblem` with a one-line message that says what to do.  Optuna is
imported only when a sampler or pruner is built (never by ``%load_ext``).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from typing import Any, Callable

SAMPLERS = ("tpe", "random", "cmaes", "grid", "nsga2")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
DIRECTIONS = ("minimize", "maximize")
INSTALL_HINT = 'pip install "trainorch-jupyter[tune]"'
CELL_FUNCTION = "__trainorch_objective__"


class TuneProblem(ValueError):
    """The search cannot start as asked; nothing was sent to the engines."""


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise TuneProblem(f"%tune needs Optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna


def check_sampler(name: str, directions: list[str], grid: dict[str, list] | None) -> str:
    key = name.strip().lower().replace("_", "-")
    key = {"cma-es": "cmaes", "cma": "cmaes", "nsga-ii": "nsga2", "nsgaii": "nsga2"}.get(key, key)
    if key not in SAMPLERS:
        raise TuneProblem(f"--sampler {name}: unknown sampler; use one of {', '.join(SAMPLERS)}")
    if key == "grid" and not grid:
        raise TuneProblem("--sampler grid needs the grid: --grid NAME, a dict {param: [values]} in the notebook")
    if key == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise TuneProblem(f"--sampler cmaes needs the cmaes package: {INSTALL_HINT} (or pip install cmaes)")
    if key == "cmaes" and len(directions) > 1:
        raise TuneProblem("--sampler cmaes optimises one objective; use nsga2 or tpe with several --directions")
    return key


def check_pruner(name: str, directions: list[str]) -> str:
    key = name.strip().lower().replace("_", "-")
    key = {"sha": "successive-halving", "asha": "successive-halving", "successivehalving": "successive-halving",
           "off": "none", "nop": "none"}.get(key, key)
    if key not in PRUNERS:
        raise TuneProblem(f"--pruner {name}: unknown pruner; use one of {', '.join(PRUNERS)}")
    if key != "none" and len(directions) > 1:
        raise TuneProblem("pruning needs a single objective; use --pruner none with several --directions")
    return key


def check_directions(direction: str | None, directions: list[str] | None) -> list[str]:
    if direction and directions:
        raise TuneProblem("give either --direction or --directions, not both")
    out = directions or [direction or "minimize"]
    for d in out:
        if d not in DIRECTIONS:
            raise TuneProblem(f"direction {d!r}: use minimize or maximize")
    return out


def build_sampler(name: str, seed: int | None, grid: dict[str, list] | None = None) -> Any:
    """A fresh sampler; ``seed`` makes it reproducible."""
    optuna = require_optuna()
    s = optuna.samplers
    if name == "tpe":
        return s.TPESampler(seed=seed)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return s.GridSampler(grid or {}, seed=seed)
    return s.NSGAIISampler(seed=seed)


def build_pruner(name: str) -> Any:
    optuna = require_optuna()
    p = optuna.pruners
    return {
        "median": p.MedianPruner,
        "hyperband": p.HyperbandPruner,
        "successive-halving": p.SuccessiveHalvingPruner,
        "none": p.NopPruner,
    }[name]()


def check_objective(objective: Any, name: str = "OBJECTIVE") -> None:
    """A callable taking one argument (the trial), or TuneProblem."""
    if not callable(objective):
        raise TuneProblem(f"{name} is a {type(objective).__name__}, not a function; "
                          "define def objective(trial): ... and pass its name")
    try:
        sig = inspect.signature(objective)
    except (TypeError, ValueError):
        return  # a builtin or extension callable: trust it
    try:
        sig.bind(object())
    except TypeError:
        params = ", ".join(sig.parameters)
        raise TuneProblem(f"{name}({params}) cannot be called with one argument; "
                          "the objective takes the trial: def objective(trial): ...") from None


def source_lines(objective: Any) -> dict[str, Any]:
    """Where the objective and the notebook functions it calls were defined, and their source.

    cloudpickle renames the code it ships to ``<dynamic-code>``, and a notebook
    cell's file exists only in the kernel's linecache; with these the engines put
    both back, so a trial's traceback shows the objective's own lines.
    Returns {"files": {global name ("" = the objective): file name}, "lines": {file name: lines}}.
    """
    import linecache
    import types

    names = getattr(getattr(objective, "__code__", None), "co_names", ())
    fns = {"": objective}
    fns.update({k: v for k, v in getattr(objective, "__globals__", {}).items()
                if k in names and isinstance(v, types.FunctionType)})
    out: dict[str, Any] = {"files": {}, "lines": {}}
    for key, fn in fns.items():
        code = getattr(fn, "__code__", None)
        if code is None:
            continue
        out["files"][key] = code.co_filename
        lines = linecache.getlines(code.co_filename)
        if lines and sum(map(len, lines)) < 1_000_000:
            out["lines"][code.co_filename] = lines
    return out


def objective_key(blob: bytes) -> str:
    return hashlib.sha1(blob).hexdigest()[:16]


def cell_objective(body: str) -> tuple[str, str]:
    """The ``%%tune`` cell as the source of a function of ``trial``.

    The value of a trial is the cell's last expression (or what a ``return`` in
    the cell returns).  Returns (source, filename); raises TuneProblem on a
    syntax error or when the cell has no value.
    """
    from ..jobs.source import to_python

    code = to_python(body)
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise TuneProblem(f"syntax error in the cell, line {e.lineno} ({e.msg}); nothing was sent") from None
    if not tree.body:
        raise TuneProblem("the %%tune cell is empty; its last expression is the trial's value")
    last = tree.body[-1]
    has_return = any(isinstance(n, ast.Return) for n in ast.walk(tree))
    if isinstance(last, ast.Expr):
        tree.body[-1] = ast.copy_location(ast.Return(value=last.value), last)
    elif not has_return:
        raise TuneProblem("the %%tune cell must end with an expression (the value to optimise) or return it")
    module = ast.parse(f"def {CELL_FUNCTION}(trial):\n    pass\n")
    module.body[0].body = tree.body
    module = ast.fix_missing_locations(module)
    source = ast.unparse(module)
    try:
        compile(source, "<tune-cell>", "exec")
    except SyntaxError as e:
        raise TuneProblem(f"the %%tune cell cannot be a function body ({e.msg}); nothing was sent") from None
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    return source, f"<tune-cell {digest}>"


def describe(objective: Callable | None, cell: bool) -> str:
    if cell:
        return "%%tune cell"
    return getattr(objective, "__name__", type(objective).__name__)
