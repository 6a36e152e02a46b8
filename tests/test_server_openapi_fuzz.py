"""Schemathesis against the OpenAPI document a real `corral serve` serves.

A bounded number of generated requests per operation (``-n``, seeded), every check but
``positive_data_acceptance``: that one expects any schema-valid request to succeed, and
some cannot (an agent name the router does not know, a cursor this API never issued, a
gate that does not exist are all schema-valid strings). Everything else must hold: no
server error, only documented status codes, content types and headers, bodies matching
their schemas, refusal of invalid data and of requests without the token.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._serve_process import TOKEN, served

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = 20
"""Generated requests per operation: about 700 in all, a few seconds."""

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    env = {
        "CORRAL_SERVER__RATE_LIMIT_PER_MINUTE": "0",
        "CORRAL_SERVER__ALLOW_SELF_APPROVAL": "true",
    }
    with served(tmp_path, app="corral.demo:app", **env) as server:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "1",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--no-color",
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert server.stop() == 0
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = re.search(
        r"Test cases:\s+(\d+) generated, (\d+) passed(?:, (\d+) skipped)?", result.stdout
    )
    assert counts is not None, result.stdout[-3000:]
    generated, passed, _skipped = (int(n or 0) for n in counts.groups())
    assert generated >= 15 * EXAMPLES  # every operation was exercised
    assert passed == generated, result.stdout[
        -3000:
    ]  # no case failed a check ("skipped" are not generated)
