from __future__ import annotations

import subprocess
import sys


def test_fakes_ship_in_the_package() -> None:
    from corral.models import ChaosModel, FunctionModel, ScriptedModel

    assert ScriptedModel and FunctionModel and ChaosModel


def test_import_corral_stays_light() -> None:
    # rich is not checked: structlog imports it whenever it is installed.
    code = (
        "import sys, corral; "
        "heavy = [m for m in ('fastapi', 'uvicorn', 'corral.cli', 'corral.server', "
        "'corral.observability', 'numpy', 'corral.loadtest', 'corral.replay') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
