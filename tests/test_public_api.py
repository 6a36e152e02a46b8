from __future__ import annotations

import subprocess
import sys

import corral


def test_exported_names_are_pinned() -> None:
    assert corral.__all__ == [
        "BreakerPolicy",
        "Clock",
        "Limits",
        "MockClock",
        "RetryPolicy",
        "Route",
        "Router",
        "Rule",
        "RunHandle",
        "RunResult",
        "Runtime",
        "Settings",
        "SubAgent",
        "SystemClock",
        "Task",
        "Tool",
        "ToolContext",
        "load_settings",
        "tool",
    ]
    for name in corral.__all__:
        assert getattr(corral, name) is not None


def test_fakes_ship_in_the_package() -> None:
    from corral.models import ChaosModel, FunctionModel, ScriptedModel

    assert ScriptedModel and FunctionModel and ChaosModel


def test_import_corral_stays_light() -> None:
    # rich is not checked: structlog imports it whenever it is installed.
    code = (
        "import sys, corral; "
        "heavy = [m for m in ('fastapi', 'uvicorn', 'corral.cli', 'corral.server', "
        "'corral.observability') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
