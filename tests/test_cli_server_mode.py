"""``corral --server URL ...``: the command line against a real ``corral serve`` process.

One ``python -m corral --db sqlite:///<tmp>/c.db serve --port P`` runs for the module, on a
free loopback port, with tokens from ``CORRAL_SERVER__TOKENS`` (their SHA-256 only). The
commands run in this process through `corral.cli.main`, over real HTTP; each test makes
its own runs (the scripted demo application), so they do not depend on one another.
The same journal read with ``--db`` is the reference: a command must print the same JSON
through the service as from the journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from corral.cli import main

ROOT = Path(__file__).resolve().parents[1]
TOKENS = {
    "tok-ana-0123456789": ("ana", ["submit", "read"]),
    "tok-bob-0123456789": ("bob", ["approve", "read"]),
    "tok-rita-012345678": ("rita", ["read"]),
    "tok-root-012345678": ("root", ["admin"]),
}
"""Tokens the server accepts: token -> (name, roles). The server is told only the hashes."""
ANA, BOB, RITA, ROOT_TOKEN = TOKENS
BILLING = "Reconcile the unpaid invoices of customer Acme Corp"

T = TypeVar("T")


@dataclass
class Served:
    """The running `corral serve`."""

    url: str
    db: str
    process: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def eventually(check: Callable[[], T | None], *, timeout: float = 20.0) -> T:
    """Call `check` until it returns something truthy (every 50 ms, `timeout` s at most)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("served")
    db = f"sqlite:///{home / 'c.db'}"
    port = _free_port()
    specs = [
        {"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(), "roles": roles}
        for token, (name, roles) in TOKENS.items()
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CORRAL_SERVER__TOKENS=json.dumps(specs),
        CORRAL_SERVER__GRACE_S="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "corral", "--db", db, "serve", "--port", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    served = Served(url=f"http://127.0.0.1:{port}", db=db, process=process)
    drain = threading.Thread(target=lambda: served.stderr.extend(process.stderr or ()))
    drain.start()

    def healthy() -> bool:
        assert process.poll() is None, "corral serve exited:\n" + "".join(served.stderr)
        try:
            return httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(healthy, timeout=30)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            drain.join(timeout=5)
            if process.stderr is not None:
                process.stderr.close()
    assert process.returncode == 0, "".join(served.stderr)
    for token in TOKENS:  # the server never logs a token
        assert token not in "".join(served.stderr)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CORRAL_") or key == "COLUMNS":
            monkeypatch.delenv(key)


def corral(
    capsys: pytest.CaptureFixture[str], served: Served, token: str | None, *argv: str
) -> tuple[int, str, str]:
    """``corral --server URL [--token T] ARGV`` in this process: (exit code, stdout, stderr)."""
    options = ["--server", served.url] + (["--token", token] if token else [])
    code = main([*options, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def remote_json(capsys: pytest.CaptureFixture[str], served: Served, token: str, *argv: str) -> Any:
    code, out, err = corral(capsys, served, token, "-o", "json", *argv)
    assert code == 0, err
    return json.loads(out)


def local_json(capsys: pytest.CaptureFixture[str], served: Served, *argv: str) -> Any:
    code = main(["--db", served.db, "-o", "json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def waiting_run(capsys: pytest.CaptureFixture[str], served: Served) -> dict[str, Any]:
    """Submit the billing task as ana; return its view once it waits at its two gates."""
    submitted = remote_json(capsys, served, ANA, "run", BILLING, "--kind", "billing")
    run_id = submitted["run_id"]

    def waiting() -> dict[str, Any] | None:
        view: dict[str, Any] = remote_json(capsys, served, RITA, "runs", "show", run_id)["run"]
        return view if view["status"] == "waiting" else None

    return eventually(waiting)


def finished(capsys: pytest.CaptureFixture[str], served: Served, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        view: dict[str, Any] = remote_json(capsys, served, RITA, "runs", "show", run_id)["run"]
        return view if view["status"] == "finished" else None

    return eventually(done)


# -- submitting and reading -------------------------------------------------------------------


def test_run_submits_and_prints_the_run_id_and_status(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    code, out, err = corral(capsys, served, ANA, "run", "I forgot my password")
    assert (code, err) == (0, "")
    run_id, status, *rest = out.split()
    assert run_id.startswith("run_") and status in {"running", "finished"}
    assert rest == ["agent", "support"]
    view = finished(capsys, served, run_id)
    assert view["outcome"] == "completed" and view["submitted_by"] == "ana"
    code, _, err = corral(capsys, served, ANA, "run", "x", "--explain")
    assert code == 2 and "--routes and --explain route here" in err


def test_reads_through_the_service_print_what_the_journal_says(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    run_id = waiting_run(capsys, served)["run_id"]
    for argv in (["runs", "show", run_id], ["trace", run_id]):
        assert remote_json(capsys, served, RITA, *argv) == local_json(capsys, served, *argv)
    remote = remote_json(capsys, served, RITA, "runs", "export", run_id)
    local = local_json(capsys, served, "runs", "export", run_id)
    assert remote["run"] == local["run"] and remote["events"] == local["events"]
    listed = remote_json(capsys, served, RITA, "runs", "list", "--status", "waiting")
    assert run_id in [r["run_id"] for r in listed]
    assert [r for r in listed if r["run_id"] == run_id] == [
        r for r in local_json(capsys, served, "runs", "list") if r["run_id"] == run_id
    ]
    remote_gates = remote_json(capsys, served, RITA, "approvals", "list")
    local_gates = local_json(capsys, served, "approvals", "list")
    assert [g for g in remote_gates if g["run_id"] == run_id] == [
        g for g in local_gates if g["run_id"] == run_id
    ]

    code, out, err = corral(capsys, served, RITA, "runs", "show", run_id)
    assert code == 0 and err == ""
    assert out.startswith(f"run       {run_id}\n") and "RateLimited" in out  # summary, trail
    code, out, _ = corral(capsys, served, RITA, "trace", run_id)
    assert code == 0 and "search_invoices" in out and "├──" in out


def test_runs_list_pages_with_the_services_cursor(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    for text in ("reset my password", "login broken", "account locked"):
        remote_json(capsys, served, ANA, "run", text)
    code, out, err = corral(capsys, served, RITA, "-o", "json", "runs", "list", "--limit", "2")
    assert code == 0 and len(json.loads(out)) == 2
    assert err.startswith("more runs: add --cursor ")
    cursor = err.split("--cursor ", 1)[1].strip()
    after = remote_json(capsys, served, RITA, "runs", "list", "--limit", "2", "--cursor", cursor)
    assert {r["run_id"] for r in after}.isdisjoint(r["run_id"] for r in json.loads(out))


# -- deciding through the service -------------------------------------------------------------


def test_approve_records_as_the_tokens_owner_and_the_service_finishes_the_run(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    view = waiting_run(capsys, served)
    first, second = (g["gate_id"] for g in view["gates"])
    # ana submitted the run: she may not approve its gates (no self-approval by default).
    code, out, err = corral(capsys, served, ANA, "approve", first)
    assert (code, out) == (2, "")
    assert err.startswith("corral: Forbidden: ") and ROOT_TOKEN not in err and ANA not in err

    code, out, err = corral(
        capsys, served, BOB, "approve", first, "--as", "mallory", "--note", "ok"
    )
    assert code == 0
    assert out == f"{first}  flag_discrepancy  approved by bob: ok\n"
    assert err == (
        "corral: note: --as is ignored with --server: the service records the token's name "
        "as who decided\n"
    )
    rejected = remote_json(capsys, served, BOB, "reject", second, "--reason", "credited")
    assert (rejected["status"], rejected["decided_by"], rejected["note"]) == (
        "rejected",
        "bob",
        "credited",
    )
    done = finished(capsys, served, view["run_id"])  # the service drives it: nothing ran here
    assert done["outcome"] == "completed"
    assert [(g["status"], g["decided_by"]) for g in done["gates"]] == [
        ("approved", "bob"),
        ("rejected", "bob"),
    ]
    code, _, err = corral(capsys, served, BOB, "approve", first)
    assert code == 2 and err.startswith("corral: Conflict: ")


def test_approve_all_and_cancel_through_the_service(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    waiting = waiting_run(capsys, served)
    cancelled = remote_json(
        capsys, served, ANA, "runs", "cancel", waiting["run_id"], "--reason", "not today"
    )
    assert cancelled["cancelled"] is True
    assert (cancelled["run"]["outcome"], cancelled["run"]["reason"]) == ("cancelled", "not today")
    code, out, _ = corral(capsys, served, ANA, "runs", "cancel", waiting["run_id"])
    assert code == 1 and "had already ended (cancelled)" in out

    other = waiting_run(capsys, served)
    approved = remote_json(capsys, served, BOB, "approve", "--all")
    assert {g["run_id"] for g in approved} >= {other["run_id"]}
    assert all(g["status"] == "approved" and g["decided_by"] == "bob" for g in approved)
    assert finished(capsys, served, other["run_id"])["outcome"] == "completed"


def test_deliver_through_the_service(capsys: pytest.CaptureFixture[str], served: Served) -> None:
    code, out, err = corral(capsys, served, ANA, "deliver", "payment:none", "--payload", "{}")
    assert (code, out, err) == (
        0,
        "no run waits on 'payment:none' yet; the event is kept for it\n",
        "",
    )
    result = remote_json(capsys, served, ANA, "deliver", "payment:none-2")
    assert (result["key"], result["run_id"]) == ("payment:none-2", None)


# -- errors: one line, the right exit code, never the token -----------------------------------


def test_refusals_are_one_line_with_exit_code_2_and_never_show_the_token(
    capsys: pytest.CaptureFixture[str], served: Served
) -> None:
    code, out, err = corral(capsys, served, RITA, "runs", "show", "run_nope")
    assert (code, out, err) == (2, "", "corral: Not Found: no run 'run_nope'\n")
    code, out, err = corral(capsys, served, "tok-wrong-secret", "runs", "list")
    assert (code, out) == (2, "")
    assert err.startswith("corral: Unauthorized: ") and "tok-wrong-secret" not in err
    code, _, err = corral(capsys, served, None, "runs", "list")
    assert code == 2 and err.rstrip().endswith("(pass --token, or set CORRAL_TOKEN)")
    code, _, err = corral(capsys, served, RITA, "approve", "gate_x")
    assert code == 2 and err.startswith("corral: Forbidden: ") and RITA not in err
    code, _, err = corral(capsys, served, RITA, "resume")
    assert code == 2 and "drop --server" in err


def test_an_unreachable_service_is_exit_code_1_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code = main(["--server", url, "--token", "tok-secret-value", "runs", "list"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(f"corral: cannot reach the server: {url}: ")
    assert err.count("\n") == 1 and "Traceback" not in err and "tok-secret-value" not in err
    code = main(["--server", "ftp://example.com", "runs", "list"])
    assert code == 2 and "--server must be an http(s) URL" in capsys.readouterr().err


def test_the_service_and_token_come_from_the_environment_or_a_file(
    served: Served, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(PYTHONPATH=str(ROOT), CORRAL_SERVER_URL=served.url, CORRAL_TOKEN=RITA)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral", *args],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    listed = run("-o", "json", "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    assert not (tmp_path / "corral.db").exists()  # it never touched a journal here
    (tmp_path / "token").write_text(RITA + "\n")
    from_file = run("--token-file", "token", "-o", "json", "approvals", "list", CORRAL_TOKEN="")
    assert from_file.returncode == 0, from_file.stderr
    # --db names a journal: the variable's service is not used.
    local = run("--db", f"sqlite:///{tmp_path / 'none.db'}", "runs", "list")
    assert local.returncode == 2 and "no journal at" in local.stderr
