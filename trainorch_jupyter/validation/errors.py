"""The errors of ``%validate`` (no heavy imports: the api loads this with the extension)."""

from __future__ import annotations

from typing import Any


class ModelError(ValueError):
    """The model or the data cannot be validated as given."""


class MetricError(ValueError):
    """A metric cannot be computed as asked (unknown name, needs probabilities, ...)."""


class CheckError(ValueError):
    """A bound, baseline or --cv cannot be used as given."""


def _g(v: float) -> str:
    return f"{v:.4g}"


def describe_failure(b: dict[str, Any]) -> str:
    """One line: which check failed, the value, the bound, by how much."""
    if b["op"] == "baseline":
        worse = -b["delta"] if b.get("higher_is_better", True) else b["delta"]
        return (f"{b['metric']} = {_g(b['value'])} regressed by {_g(worse)} from the baseline's "
                f"{_g(b['baseline'])} (tolerance {_g(b['tolerance'])})")
    word = "min" if b["op"] == ">=" else "max"
    cmp = "<" if b["op"] == ">=" else ">"
    return f"{b['metric']} = {_g(b['value'])} {cmp} {word} {_g(b['bound'])}"


class ValidationFailed(AssertionError):
    """A validated model missed a bound or regressed from its baseline.

    ``failures`` holds the failed bound entries; ``result`` the whole validation.
    Shown in the notebook as one line per failed check, without a kernel traceback.
    """

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.failures = [b for b in result.get("bounds", []) if not b["passed"]]
        n = len(self.failures)
        self.head = f"{result.get('name') or 'model'}: {n} check{'s' if n != 1 else ''} failed"
        self.lines = [describe_failure(b) for b in self.failures]
        super().__init__(self.head + ": " + "; ".join(self.lines))

    def _render_traceback_(self) -> list[str]:
        return [f"ValidationFailed: {self.head}"] + [f"  {line}" for line in self.lines]


# the request was wrong: magics turn these into one-line UsageErrors
PROBLEMS = (ModelError, MetricError, CheckError)
