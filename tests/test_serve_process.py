"""`corral serve` as a real process: start, JSON logs, SIGTERM with a run in flight, restart.

The server is ``python -m corral serve`` on a free loopback port (``--port 0``; it prints
the address it took), driving `tests.serve_app`, whose slow lookup records every call
in a ledger file (the outside world's record). Shutdown is tested twice: with a grace
period long enough for the run in flight to finish, and with one too short, where the
restarted server finishes the run without repeating a completed model or tool call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._serve_process import ROOT, TOKEN, Served, ledger, served

pytestmark = pytest.mark.slow


def submit(server: Served) -> str:
    response = server.client.post("/v1/runs", json={"task": "Are items a and b in stock?"})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def started_b(server: Served, run_id: str) -> bool:
    events = server.events(run_id)
    b_calls = {
        e["call_id"]
        for e in events
        if e["kind"] == "tool_call_proposed" and e["arguments"] == {"item": "b"}
    }
    return any(e["kind"] == "tool_call_started" and e["call_id"] in b_calls for e in events)


def test_sigterm_lets_the_run_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    with served(tmp_path, CORRAL_TEST_SLOW_S="0.6", CORRAL_SERVER__GRACE_S="20") as server:
        assert server.get("/readyz") == {"status": "ready"}
        run_id = submit(server)
        server.wait_for(lambda: started_b(server, run_id))
        code = server.stop()
        stderr = "".join(server.stderr)
        assert code == 0, stderr
        assert "SIGTERM: draining" in stderr and "every run is in the journal" in stderr
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    by_event = {entry["event"]: entry for entry in logs}
    assert {"server.started", "server.draining", "server.stopped"} <= set(by_event)
    assert all(entry["level"] and entry["ts"].endswith("Z") for entry in logs)
    assert TOKEN not in stderr  # the token never reaches a log
    assert any(e.get("run_id") == run_id for e in logs)  # records carry the run they are about
    assert ledger(tmp_path) == ["a", "b"]
    with served(tmp_path) as again:
        view = again.get(f"/v1/runs/{run_id}")
        assert (view["status"], view["outcome"]) == ("finished", "completed")
        assert again.stop() == 0


def test_a_run_cut_off_by_shutdown_is_finished_by_the_next_start_without_repeats(
    tmp_path: Path,
) -> None:
    with served(tmp_path, CORRAL_TEST_SLOW_S="3", CORRAL_SERVER__GRACE_S="0.2") as server:
        run_id = submit(server)
        server.wait_for(lambda: started_b(server, run_id))
        assert server.stop() == 0, "".join(server.stderr)
    with served(tmp_path, CORRAL_TEST_SLOW_S="0") as server:
        view = server.wait_for(
            lambda: (v := server.get(f"/v1/runs/{run_id}"))["status"] == "finished" and v
        )
        assert view["outcome"] == "completed", view
        events = server.events(run_id)
        assert server.stop() == 0
    # a was completed before the shutdown and never ran again; b was cut off mid-call
    # (a read tool, so it was run again); no model call was made twice
    assert ledger(tmp_path) == ["a", "b", "b"]
    model_calls = [e for e in events if e["kind"] == "model_called"]
    assert len(model_calls) == 3
    assert len({e["step"] for e in model_calls}) == 3


def test_serve_refuses_an_app_it_cannot_load_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "serve", "--port", "0", "--app", "nowhere:app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot load the application 'nowhere:app'" in result.stderr
    assert "Traceback" not in result.stderr
