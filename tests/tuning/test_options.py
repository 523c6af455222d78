"""Checks that run before anything reaches the engines: one-line problems, the cell form."""

from __future__ import annotations

import pytest

from trainorch_jupyter.tuning import options
from trainorch_jupyter.tuning.options import TuneProblem
from trainorch_jupyter.tuning.run import check
from trainorch_jupyter.tuning.storage import StorageProblem, check_spec


def objective(trial):
    return trial.suggest_float("x", 0, 1)


def test_sampler_and_pruner_names_are_checked_with_the_choices_in_the_message():
    with pytest.raises(TuneProblem, match=r"--sampler bogus: unknown sampler; use one of tpe, random, cmaes"):
        options.check_sampler("bogus", ["minimize"], None)
    with pytest.raises(TuneProblem, match=r"--pruner foo: unknown pruner; use one of median, hyperband"):
        options.check_pruner("foo", ["minimize"])
    assert options.check_sampler("CMA-ES", ["minimize"], None) == "cmaes"
    assert options.check_pruner("sha", ["minimize"]) == "successive-halving"
    with pytest.raises(TuneProblem, match="--sampler grid needs the grid"):
        options.check_sampler("grid", ["minimize"], None)
    with pytest.raises(TuneProblem, match="pruning needs a single objective"):
        options.check_pruner("median", ["minimize", "maximize"])


def test_objective_must_be_callable_with_one_argument():
    with pytest.raises(TuneProblem, match="is a int, not a function"):
        options.check_objective(3)
    with pytest.raises(TuneProblem, match=r"OBJECTIVE\(a, b\) cannot be called with one argument"):
        options.check_objective(lambda a, b: 0)
    with pytest.raises(TuneProblem, match=r"cannot be called with one argument"):
        options.check_objective(lambda: 0)
    options.check_objective(objective)
    options.check_objective(lambda trial, scale=2: 0)


def test_every_problem_is_one_line():
    bad = [
        dict(objective=objective, n_trials=0),
        dict(objective=objective, n_trials=3, sampler="nope"),
        dict(objective=objective, n_trials=3, pruner="nope"),
        dict(objective=objective, n_trials=3, direction="up"),
        dict(objective=objective, n_trials=3, storage="notaurl"),
        dict(objective=objective, n_trials=3, storage="journal:/no/such/dir/x.journal"),
        dict(objective="objective", n_trials=3),
        dict(objective=objective, n_trials=3, engines_per_trial=0),
        dict(cell="x = 1", n_trials=3),
        dict(cell="def (", n_trials=3),
    ]
    for kw in bad:
        with pytest.raises(TuneProblem) as info:
            check(**kw)
        assert "\n" not in str(info.value), kw


def test_storage_specs():
    assert check_spec("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert check_spec("postgresql://u@h/db") == "postgresql://u@h/db"
    assert check_spec("journal:/tmp/s.journal") == "journal:/tmp/s.journal"
    with pytest.raises(StorageProblem, match="not a storage URL"):
        check_spec("http://example.com/x")


def test_cell_form_returns_its_last_expression_or_its_return():
    src, filename = options.cell_objective("x = trial.suggest_float('x', 0, 1)\n(x - 0.5) ** 2")
    ns: dict = {}
    exec(compile(src, filename, "exec"), ns)
    fn = ns[options.CELL_FUNCTION]

    class T:
        def suggest_float(self, name, lo, hi):
            return 0.25

    assert fn(T()) == 0.0625
    src, _ = options.cell_objective("if trial is None:\n    return 1.0\nreturn 2.0")
    exec(src, ns)
    assert ns[options.CELL_FUNCTION](None) == 1.0 and ns[options.CELL_FUNCTION](0) == 2.0
    with pytest.raises(TuneProblem, match="must end with an expression"):
        options.cell_objective("x = 1")
