"""One settings loader for the CLI and the Runtime; logs through stdlib `logging`, never stdout."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import corral
from corral import Limits, MockClock, Runtime, SubAgent, load_settings
from corral._settings import ServerSettings, TokenSpec
from corral.cli import main
from corral.errors import ConfigError
from corral.models import PriceTable, ScriptedModel
from corral.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``corral`` as a real process, with a clean ``CORRAL_*`` environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return subprocess.run(
        [sys.executable, "-m", "corral.cli", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``CORRAL_*`` variable from outside, and a working directory of our own."""
    for key in list(os.environ):
        if key.startswith("CORRAL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the loader's messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            "[limits]\nmax_tokens = 0\n",
            {},
            "{file}: limits.max_tokens: Input should be greater than 0",
        ),
        (
            "[limits]\nmax_tokenz = 5\nmax_tool_calls = -1\n",
            {},
            "{file}: limits.max_tool_calls: Input should be greater than 0; "
            "limits.max_tokenz: Extra inputs are not permitted",
        ),
        ("db = = 1\n", {}, "{file}: not valid TOML: "),
        ("", {"CORRAL_LOG_LEVEL": "loud"}, "CORRAL_LOG_LEVEL: log_level: Input should be 'debug'"),
        (
            "[limits]\nmax_tokens = 5\n",
            {"CORRAL_LIMITS__MAX_TOKENS": "many"},
            "CORRAL_LIMITS__MAX_TOKENS: limits.max_tokens: Input should be a valid integer",
        ),
    ],
)
def test_a_broken_setting_is_refused_naming_where_it_came_from(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"CORRAL_CONFIG": str(path), **env})
    assert str(caught.value).startswith(message.format(file=path))


def test_values_are_never_echoed_and_bad_bytes_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"CORRAL_LIMITS__MAX_TOKENS": "sk-ant-secret-value"})
    assert "sk-ant-secret-value" not in str(caught.value)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('db = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{latin1}: not valid TOML: not UTF-8 text"):
        load_settings(env={"CORRAL_CONFIG": str(latin1)})


def test_the_log_level_is_a_validated_setting(clean_env: Path) -> None:
    assert load_settings(env={}).log_level == "warning"
    assert load_settings(env={"CORRAL_LOG_LEVEL": " INFO "}).log_level == "info"
    assert load_settings(env={"CORRAL_CONFIG": ""}).log_level == "warning"  # empty: unset


# -- the CLI reads the same settings ---------------------------------------------------------


def test_the_cli_refuses_a_broken_settings_file_with_the_loaders_message(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text("[limits]\nmax_tokens = = 3\n")
    proc = cli("runs", "list", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("corral: ConfigError: corral.toml: not valid TOML: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "corral.db").exists()  # refused before anything ran

    named = tmp_path / "elsewhere.toml"
    named.write_text("[breakers]\nfailure_threshold = 0\n")
    proc = cli("runs", "list", cwd=tmp_path, env={"CORRAL_CONFIG": str(named)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"corral: ConfigError: {named}: breakers.failure_threshold: "
        "Input should be greater than 0\n"
    )


def test_the_cli_takes_the_journal_and_limits_from_the_settings(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = clean_env / "from-settings.db"
    (clean_env / "corral.toml").write_text(f'db = "sqlite:///{db}"\n[limits]\nmax_tokens = 54321\n')
    assert main(["demo", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (started,) = [e for e in payload["events"] if e["kind"] == "run_started"]
    assert started["limits"]["max_tokens"] == 54321
    assert db.is_file() and not (clean_env / "corral.db").exists()
    assert main(["runs", "list", "--json"]) == 0  # the same journal, found through settings
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["run_id"] == payload["result"]["run_id"]


def test_the_cli_logs_to_stderr_from_the_settings_level(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{clean_env / 'j.db'}"
    anyio.run(_create_journal, clean_env / "j.db")  # `runs list` never creates one
    assert main(["runs", "list", "--db", db]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == "no runs\n" and quiet.err == ""  # warning and up by default

    monkeypatch.setenv("CORRAL_LOG_LEVEL", "info")
    assert main(["runs", "list", "--db", db]) == 0
    loud = capsys.readouterr()
    assert loud.out == "no runs\n"
    assert loud.err == "INFO corral.cli: cli.settings config_file=None log_level='info'\n"
    assert logging.getLogger("corral").handlers == []  # main put logging back as it was


async def _create_journal(path: Path) -> None:
    async with SqliteStore(path):
        pass


# -- the Runtime reads the same settings -----------------------------------------------------


def echo(limits: Limits | None = None) -> SubAgent:
    return SubAgent(
        "echo", instructions="Echo.", tools=[], model=ScriptedModel(["done"] * 3), limits=limits
    )


async def test_runtime_from_settings_uses_the_loader_and_owns_the_journal_it_opens(
    clean_env: Path,
) -> None:
    db = clean_env / "runtime.db"
    (clean_env / "corral.toml").write_text(
        f'db = "sqlite:///{db}"\n[limits]\nmax_tokens = 4321\n[breakers]\ncooldown_s = 7\n'
    )
    async with Runtime.from_settings(agents=[echo()], clock=MockClock()) as rt:
        assert rt.limits.max_tokens == 4321 and rt.breakers.cooldown_s == 7
        result = await rt.run("hello")
        journal = rt.journal
    assert result.outcome == "completed" and isinstance(journal, SqliteStore)
    async with journal:  # the runtime closed it (opening an open store is refused)
        pass
    async with SqliteStore(str(db)) as store:  # and everything was committed to the file
        assert [e.kind for e in await store.read(result.run_id)][-1] == "run_finished"

    explicit = Runtime.from_settings(agents=[echo()], limits=Limits(max_tokens=99))
    assert explicit.limits.max_tokens == 99 and explicit.breakers.cooldown_s == 7


def test_runtime_from_settings_refuses_a_broken_file_like_the_cli(clean_env: Path) -> None:
    (clean_env / "corral.toml").write_text("[limits]\nmax_tokens = 0\n")
    with pytest.raises(ConfigError, match=r"^corral.toml: limits.max_tokens: Input should be"):
        Runtime.from_settings(agents=[echo()])


# -- logs ------------------------------------------------------------------------------------


async def test_runtime_logs_reach_stdlib_logging_and_never_stdout(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    agent = SubAgent(
        "echo", instructions="Echo.", tools=[], model=ScriptedModel(["done"], name="no-price")
    )

    def broken_subscriber(event: Any) -> None:
        raise RuntimeError("subscriber bug")

    with caplog.at_level(logging.WARNING, logger="corral"):
        async with Runtime(agents=[agent], clock=MockClock(), cost=PriceTable.default().cost) as rt:
            rt.subscribe(broken_subscriber)
            result = await rt.run("hello")
    assert result.outcome == "completed"
    out, _ = capfd.readouterr()
    assert out == ""
    by_event = {r.corral["event"]: r for r in caplog.records}  # type: ignore[attr-defined]
    price = by_event["models.price_unknown"]
    assert (price.name, price.levelname) == ("corral.models", "WARNING")
    assert price.getMessage().startswith("models.price_unknown model='no-price' hint=")
    failed = by_event["runtime.subscriber_failed"]
    assert (failed.name, failed.levelname) == ("corral.runtime", "ERROR")
    assert "subscriber bug" in failed.getMessage()
    assert not structlog.is_configured()


def test_an_embedding_programs_stdout_and_structlog_config_are_left_alone(tmp_path: Path) -> None:
    program = tmp_path / "app.py"
    program.write_text(
        textwrap.dedent(
            """
            import anyio, structlog, sys
            from corral import MockClock, Runtime, SubAgent
            from corral.models import PriceTable, ScriptedModel

            structlog.configure(
                processors=[structlog.processors.JSONRenderer()],
                logger_factory=structlog.PrintLoggerFactory(sys.stdout),
            )
            config = structlog.get_config()

            async def main():
                structlog.get_logger().info("app.started")
                agent = SubAgent("a", instructions="x", tools=[],
                                 model=ScriptedModel(["done"], name="no-price"))
                async with Runtime(agents=[agent], clock=MockClock(),
                                   cost=PriceTable.default().cost) as rt:
                    result = await rt.run("go")
                print("result", result.outcome)
                assert structlog.get_config() == config

            anyio.run(main)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(program)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{"event": "app.started"}\nresult completed\n'
    # No logging configured: Python's last-resort handler prints warnings to stderr.
    assert proc.stderr.startswith("models.price_unknown model='no-price'")


def test_every_corral_logger_is_a_stdlib_logger_under_corral() -> None:
    loggers = {}
    for info in pkgutil.walk_packages(corral.__path__, "corral."):
        module = importlib.import_module(info.name)
        log = getattr(module, "log", None)
        if log is not None:
            loggers[info.name] = log
    assert {"corral.runtime._base", "corral.actors._system", "corral.cli"} <= loggers.keys()
    for name, log in loggers.items():
        assert isinstance(log, structlog.stdlib.BoundLogger), name
        assert log.name == "corral" or log.name.startswith("corral."), name
        assert isinstance(log._logger, logging.Logger), name


# -- the server's settings -------------------------------------------------------------------

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HASH_A = hashlib.sha256(b"crl_token-a").hexdigest()
HASH_B = hashlib.sha256(b"crl_token-b").hexdigest()


def test_server_settings_default_to_a_closed_local_server(clean_env: Path) -> None:
    server = load_settings(env={}).server
    assert server == ServerSettings()
    assert (server.host, server.port, server.tokens, server.webhooks) == ("127.0.0.1", 8000, [], [])
    assert (server.max_body_bytes, server.rate_limit_per_minute, server.rate_limit_burst) == (
        1_048_576,
        600,
        60,
    )
    assert (server.max_queued_runs, server.grace_s) == (1000, 30.0)
    assert not server.allow_self_approval and not server.public_metrics
    assert load_settings(env={"CORRAL_SERVER__PORT": "0"}).server.port == 0  # any free port


def test_server_settings_load_from_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "corral.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            host = "0.0.0.0"
            port = 8080
            allow_self_approval = true

            [[server.tokens]]
            name = "alice@example.com"
            sha256 = "{HASH_A.upper()}"
            roles = ["approve", "read"]

            [[server.webhooks]]
            keys = "orders-*"
            secrets = ["{WHSEC}", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

            [[server.webhooks]]
            scheme = "github"
            secrets = ["It's a Secret to Everybody"]
            """
        )
    )
    server = load_settings(env={"CORRAL_CONFIG": str(path)}).server
    assert (server.host, server.port, server.allow_self_approval) == ("0.0.0.0", 8080, True)
    (alice,) = server.tokens
    assert alice == TokenSpec(name="alice@example.com", sha256=HASH_A, roles={"approve", "read"})
    assert alice.sha256 == HASH_A  # lowered
    standard, github = server.webhooks
    assert (standard.keys, standard.scheme, standard.tolerance_s) == ("orders-*", "standard", 300)
    assert [s.get_secret_value() for s in standard.secrets][0] == WHSEC
    assert (github.keys, github.scheme) == ("*", "github")

    tokens = [{"name": "ci", "sha256": HASH_B, "roles": ["submit"]}]
    env = {
        "CORRAL_CONFIG": str(path),
        "CORRAL_SERVER__PORT": "9000",
        "CORRAL_SERVER__PUBLIC_METRICS": "true",
        "CORRAL_SERVER__TOKENS": json.dumps(tokens),
        "CORRAL_SERVER__WEBHOOKS": json.dumps([{"keys": "k", "secrets": [WHSEC]}]),
    }
    server = load_settings(env=env).server
    assert (server.host, server.port, server.public_metrics) == ("0.0.0.0", 9000, True)
    assert [(t.name, t.roles) for t in server.tokens] == [("ci", frozenset({"submit"}))]
    assert [w.keys for w in server.webhooks] == ["k"]  # the variable replaces the file's list


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CORRAL_SERVER__PORT": "-1"},
            "CORRAL_SERVER__PORT: server.port: Input should be greater",
        ),
        (
            {"CORRAL_SERVER__PORT": "65536"},
            "CORRAL_SERVER__PORT: server.port: Input should be less",
        ),
        (
            {"CORRAL_SERVER__RATE_LIMIT_BURST": "0"},
            "CORRAL_SERVER__RATE_LIMIT_BURST: server.rate_limit_burst: Input should be",
        ),
        (
            {"CORRAL_SERVER__RATE_LIMIT_PER_MINUTE": "-1"},
            "CORRAL_SERVER__RATE_LIMIT_PER_MINUTE: server.rate_limit_per_minute: Input",
        ),
        (
            {"CORRAL_SERVER__HOSTT": "x"},
            "CORRAL_SERVER__HOSTT: server.hostt: Extra inputs are not permitted",
        ),
        (
            {"CORRAL_SERVER__TOKENS": "[{name: 'ci'}]"},
            "CORRAL_SERVER__TOKENS: server.tokens: not a valid JSON list (Expecting property name",
        ),
        (
            {"CORRAL_SERVER__TOKENS": '{"name": "ci"}'},
            "CORRAL_SERVER__TOKENS: server.tokens: Input should be a valid list",
        ),
        (
            {
                "CORRAL_SERVER__TOKENS": json.dumps(
                    [{"name": "ci", "sha256": "crl_the-token-itself", "roles": ["read"]}]
                )
            },
            "CORRAL_SERVER__TOKENS: server.tokens.0.sha256: must be the token's SHA-256 as 64 hex "
            "digits (the hash, not the token)",
        ),
        (
            {"CORRAL_SERVER__TOKENS": json.dumps([{"name": "ci", "sha256": HASH_A, "roles": []}])},
            "CORRAL_SERVER__TOKENS: server.tokens.0.roles: Frozenset should have at least 1 item",
        ),
        (
            {
                "CORRAL_SERVER__TOKENS": json.dumps(
                    [{"name": "ci", "sha256": HASH_A, "roles": ["root"]}]
                )
            },
            "CORRAL_SERVER__TOKENS: server.tokens.0.roles.0: Input should be 'read', 'submit', "
            "'approve' or 'admin'",
        ),
        (
            {
                "CORRAL_SERVER__TOKENS": json.dumps(
                    [{"name": "c i", "sha256": HASH_A, "roles": ["read"]}]
                )
            },
            "CORRAL_SERVER__TOKENS: server.tokens.0.name: a token name is 1 to 128 letters",
        ),
        (
            {
                "CORRAL_SERVER__TOKENS": json.dumps(
                    [
                        {"name": "ci", "sha256": HASH_A, "roles": ["read"]},
                        {"name": "ci", "sha256": HASH_B, "roles": ["read"]},
                    ]
                )
            },
            "CORRAL_SERVER__TOKENS: server.tokens: tokens[0] and tokens[1] are both named 'ci'",
        ),
        (
            {
                "CORRAL_SERVER__TOKENS": json.dumps(
                    [
                        {"name": "a", "sha256": HASH_A, "roles": ["read"]},
                        {"name": "b", "sha256": HASH_A.upper(), "roles": ["admin"]},
                    ]
                )
            },
            "CORRAL_SERVER__TOKENS: server.tokens: tokens[0] and tokens[1] have the same sha256",
        ),
        (
            {"CORRAL_SERVER__WEBHOOKS": json.dumps([{"secrets": []}])},
            "CORRAL_SERVER__WEBHOOKS: server.webhooks.0.secrets: List should have at least 1 item",
        ),
        (
            {"CORRAL_SERVER__WEBHOOKS": json.dumps([{"secrets": ["whsec_sk-live!secret-value"]}])},
            "CORRAL_SERVER__WEBHOOKS: server.webhooks.0: secrets[0]: not a Standard Webhooks "
            "secret: expected whsec_ followed by base64",
        ),
        (
            {"CORRAL_SERVER__WEBHOOKS": json.dumps([{"secrets": [WHSEC, "whsec_c2stbGl2ZQ=="]}])},
            "CORRAL_SERVER__WEBHOOKS: server.webhooks.0: secrets[1]: Standard Webhooks secret too "
            "short: 7 bytes once decoded, at least 16 needed",
        ),
        (
            {"CORRAL_SERVER__WEBHOOKS": json.dumps([{"scheme": "github", "secrets": [" "]}])},
            "CORRAL_SERVER__WEBHOOKS: server.webhooks.0: secrets[0] is empty",
        ),
        (
            {"CORRAL_SERVER__WEBHOOKS": json.dumps([{"scheme": "svix", "secrets": [WHSEC]}])},
            "CORRAL_SERVER__WEBHOOKS: server.webhooks.0.scheme: Input should be 'standard' or",
        ),
    ],
)
def test_broken_server_settings_are_refused_without_echoing_them(
    clean_env: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert str(caught.value).startswith(message)
    for secret in ("crl_the-token-itself", "sk-live!secret-value", "c2stbGl2ZQ", "MfKQ9r8GKYq"):
        assert secret not in str(caught.value)
        assert secret not in str(caught.value.__cause__)  # nor in a traceback's chained error


def test_webhook_secrets_never_show_in_the_settings(clean_env: Path) -> None:
    github_secret = "It's a Secret to Everybody"
    webhooks = [{"secrets": [WHSEC]}, {"scheme": "github", "secrets": [github_secret]}]
    settings = load_settings(env={"CORRAL_SERVER__WEBHOOKS": json.dumps(webhooks)})
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.server)]
    for text in shown:
        assert "MfKQ9r8GKYq" not in text and github_secret not in text
        assert "**********" in text
    assert settings.server.webhooks[1].secrets[0].get_secret_value() == github_secret


def test_a_broken_server_section_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corral.toml"
    path.write_text('[server]\nport = 8000\n[[server.webhooks]]\nsecrets = ["whsec_hunter2!"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"CORRAL_CONFIG": str(path)})
    assert str(caught.value) == (
        f"{path}: server.webhooks.0: secrets[0]: not a Standard Webhooks secret: "
        "expected whsec_ followed by base64"
    )
    path.write_text('[[server.tokens]]\nname = "ci"\nroles = ["read"]\n')
    with pytest.raises(ConfigError, match=rf"^{path}: server.tokens.0.sha256: Field required$"):
        load_settings(env={"CORRAL_CONFIG": str(path)})
