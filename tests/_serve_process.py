"""`corral serve` as a real process for tests: ``python -m corral serve`` on a free port.

`served` starts it (``--port 0``; it prints the address it took) with one admin token,
waits until it listens, and yields a `Served` with an httpx client; the process is killed
at the end if the test did not stop it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from corral.server import hash_token

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-ops-" + "x" * 24
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class Served:
    """A running `corral serve` process."""

    def __init__(self, process: subprocess.Popen[str], url: str, stderr: list[str]) -> None:
        self.process = process
        self.url = url
        self.stderr = stderr
        # Drain stderr as it comes: a full pipe would block the server's next log line.
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def events(self, run_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.get(f"/v1/runs/{run_id}/events")["events"]
        return events

    def wait_for(self, check: Any, *, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out; server stderr:\n{''.join(self.stderr)}")

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 20.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._drain.join(timeout=5)
        return code


@contextmanager
def served(
    tmp_path: Path, *, app: str = "tests.serve_app:app", db: str | None = None, **env: str
) -> Iterator[Served]:
    """Run ``corral serve`` on a journal in `tmp_path` (or `db`); `env` adds variables."""
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CORRAL_SERVER__TOKENS": json.dumps(
            [{"name": "ops", "sha256": hash_token(TOKEN), "roles": ["admin"]}]
        ),
        "CORRAL_TEST_LEDGER": str(tmp_path / "ledger.txt"),
        "CORRAL_LOG_LEVEL": "info",
        "CORRAL_DURABILITY__POLL_INTERVAL_S": "0.2",
        **env,
    }
    environ.pop("CORRAL_CONFIG", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "--db",
            db or f"sqlite:///{tmp_path / 'corral.db'}",
            "serve",
            "--port",
            "0",
            "--app",
            app,
        ],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            stderr.append(line)
            found = LISTENING.search(line)
            if found:
                url = found.group(1)
        assert url is not None, "".join(stderr)
        server = Served(process, url, stderr)
        try:
            yield server
        finally:
            server.client.close()
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            server._drain.join(timeout=5)  # before its pipe is closed below
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger.txt"
    return path.read_text().split() if path.exists() else []
