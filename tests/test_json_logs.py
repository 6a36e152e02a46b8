"""JSON logs: one object per line, run context bound, secrets redacted, nothing global touched."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anyio
import pytest
import structlog

from corral import MockClock, Runtime, SubAgent, tool
from corral._log import (
    bind_run_context,
    bind_step,
    current_log_context,
    get_logger,
    reset_log_context,
)
from corral.errors import ConfigError
from corral.models import ScriptedModel, call, reply
from corral.observability import add_log_context, configure_json_logs

KEY = "sk-ant-api03-" + "Zq8xW2vN5mK7pL1rT4yB6hJ9cF3dG0sA" * 3


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    undo = configure_json_logs("info", stream=out)
    try:
        yield out
    finally:
        undo()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_its_fields(stream: io.StringIO) -> None:
    log = get_logger("corral.test")
    log.warning("thing.happened", count=3, path="a/b")
    log.debug("too.quiet")  # below the level
    (line,) = lines(stream)
    assert list(line) == ["ts", "level", "logger", "event", "count", "path"]
    assert line["level"] == "warning" and line["logger"] == "corral.test"
    assert line["event"] == "thing.happened"
    assert (line["count"], line["path"]) == (3, "a/b")
    assert line["ts"].endswith("Z")
    assert datetime.fromisoformat(line["ts"]).utcoffset() is not None


def test_secrets_are_redacted_in_every_string_value(stream: io.StringIO) -> None:
    log = get_logger("corral.test")
    log.error(
        f"call.failed token={KEY}",
        error=f"401 for key {KEY}",
        nested={"headers": [f"Bearer {KEY}"]},
        obj=ValueError(f"api_key={KEY}"),  # not JSON: its repr, redacted
    )
    try:
        raise RuntimeError(f"provider said: invalid x-api-key {KEY}")
    except RuntimeError:
        log.error("with.traceback", exc_info=True)
    text = stream.getvalue()
    assert KEY not in text and "Zq8xW2vN5mK7" not in text
    first, second = lines(stream)
    assert "[REDACTED:" in first["error"] and "[REDACTED:" in first["nested"]["headers"][0]
    assert first["obj"].startswith("ValueError(")
    assert "RuntimeError: provider said" in second["exception"]


def test_run_context_is_on_every_record_of_the_task_that_bound_it(stream: io.StringIO) -> None:
    log = get_logger("corral.test")

    async def main() -> None:
        async def a_run() -> None:
            token = bind_run_context(run_id="run_1", agent="billing", tenant="acme")
            try:
                log.info("run.begins")
                bind_step(2)
                log.info("step.begins", run_id="explicit wins")
            finally:
                reset_log_context(token)
            log.info("run.over")

        async def elsewhere() -> None:
            await anyio.sleep(0)
            log.info("unrelated")

        async with anyio.create_task_group() as tg:
            tg.start_soon(a_run)
            tg.start_soon(elsewhere)

    anyio.run(main)
    by_event = {line["event"]: line for line in lines(stream)}
    assert by_event["run.begins"] | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "corral.test",
        "event": "run.begins",
        "run_id": "run_1",
        "agent": "billing",
        "tenant": "acme",
    }
    assert by_event["step.begins"]["step"] == 2
    assert by_event["step.begins"]["run_id"] == "explicit wins"
    for event in ("run.over", "unrelated"):
        assert not {"run_id", "agent", "tenant", "step"} & set(by_event[event])
    assert current_log_context() is None


def test_a_field_named_like_a_line_key_is_kept_under_another_name(stream: io.StringIO) -> None:
    get_logger("corral.test").warning("odd", level="high", ts=1)
    (line,) = lines(stream)
    assert (line["level"], line["level_"], line["ts_"]) == ("warning", "high", 1)


def test_default_stream_is_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    undo = configure_json_logs("warning")
    try:
        get_logger("corral.test").warning("to.stderr")
    finally:
        undo()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to.stderr"


def test_undo_restores_the_logger_and_structlog_is_never_configured() -> None:
    logger = logging.getLogger("corral")
    before = (list(logger.handlers), logger.level, logger.propagate)
    structlog_before = structlog.get_config()
    undo = configure_json_logs("debug", stream=io.StringIO())
    assert logger.level == logging.DEBUG and logger.propagate is False
    undo()
    assert (list(logger.handlers), logger.level, logger.propagate) == before
    assert structlog.get_config() == structlog_before


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        configure_json_logs("loud")


def test_add_log_context_is_a_structlog_processor_for_a_programs_own_logs() -> None:
    token = bind_run_context(run_id="run_2", agent="support", tenant="t")
    try:
        assert add_log_context(None, "info", {"event": "x"}) == {
            "event": "x",
            "run_id": "run_2",
            "agent": "support",
            "tenant": "t",
        }
    finally:
        reset_log_context(token)
    assert add_log_context(None, "info", {"event": "x"}) == {"event": "x"}


async def test_a_tools_logs_carry_the_run_it_runs_in(stream: io.StringIO) -> None:
    log = get_logger("corral.tools.lookup")

    @tool(timeout=5)
    async def lookup(invoice_id: str) -> str:
        """Look up an invoice."""
        log.info("lookup.called", invoice_id=invoice_id)
        return "10.00"

    model = ScriptedModel([reply("hi"), call("lookup", invoice_id="INV-1"), reply("10.00")])
    agent = SubAgent("billing", instructions="x", tools=[lookup], model=model)
    async with Runtime(agents=[agent], clock=MockClock()) as rt:
        await rt.run("hello", tenant="other")
        result = await rt.run("total?", tenant="acme")
    (line,) = [line for line in lines(stream) if line["event"] == "lookup.called"]
    assert {k: line[k] for k in ("run_id", "agent", "tenant", "step")} == {
        "run_id": result.run_id,
        "agent": "billing",
        "tenant": "acme",
        "step": 1,
    }
    assert current_log_context() is None
