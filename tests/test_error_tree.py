"""Every public error class is raised somewhere, and a finished run raises the right one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corral
from corral import errors
from corral.errors import (
    BudgetExceeded,
    CircuitOpen,
    CorralError,
    LoopDetected,
    RunCancelled,
    RunError,
    StepLimitExceeded,
)
from corral.events import OUTCOMES
from corral.runtime import RunResult

PACKAGE = Path(corral.__file__).parent


def _constructed_names() -> set[str]:
    """Names called anywhere in the package outside corral/errors.py (``X(...)``)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name):
                    names.add(func.id)
                elif isinstance(func, ast.Attribute):
                    names.add(func.attr)
            elif isinstance(node, ast.Dict):  # error classes kept in a table and raised from it
                names.update(v.id for v in node.values if isinstance(v, ast.Name))
    return names


def test_every_public_error_class_is_raised_somewhere() -> None:
    constructed = _constructed_names()
    classes = [getattr(errors, name) for name in errors.__all__]
    # A category (an error other public errors subclass) may only ever be caught.
    categories = {c for c in classes for d in classes if d is not c and issubclass(d, c)}
    never = sorted(
        c.__name__ for c in classes if c not in categories and c.__name__ not in constructed
    )
    assert never == [], f"public error classes nobody raises: {never}"
    assert all(issubclass(c, CorralError) for c in classes)


def _result(outcome: str | None, status: str = "finished") -> RunResult:
    return RunResult(
        run_id="run_1",
        agent="billing",
        status=status,  # type: ignore[arg-type]
        outcome=outcome,  # type: ignore[arg-type]
        output=None,
        reason="why it stopped",
        steps=0,
        model_calls=0,
        tokens=0,
        cost_usd=0.0,
        duration_s=0.0,
        events=(),
    )


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        ("failed", RunError),
        ("stopped_budget", BudgetExceeded),
        ("stopped_steps", StepLimitExceeded),
        ("stopped_loop", LoopDetected),
        ("stopped_breaker", CircuitOpen),
        ("cancelled", RunCancelled),
    ],
)
def test_raise_for_outcome_raises_the_outcomes_error_with_the_result(
    outcome: str, error: type[RunError]
) -> None:
    result = _result(outcome)
    with pytest.raises(error) as raised:
        result.raise_for_outcome()
    assert type(raised.value) is error
    assert raised.value.result is result
    assert raised.value.run_id == "run_1"
    assert raised.value.outcome == outcome
    assert "why it stopped" in str(raised.value)


def test_every_outcome_but_completed_has_an_error() -> None:
    completed = _result("completed")
    assert completed.raise_for_outcome() is completed
    for outcome in OUTCOMES:
        if outcome != "completed":
            with pytest.raises(RunError):
                _result(outcome).raise_for_outcome()


def test_a_run_that_has_not_finished_is_a_run_error_too() -> None:
    with pytest.raises(RunError, match="has not finished: it is waiting") as raised:
        _result(None, status="waiting").raise_for_outcome()
    assert raised.value.outcome is None
