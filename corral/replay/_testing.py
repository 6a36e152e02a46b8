"""A recorded run as a regression test: `assert_replays`."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import anyio

from .._settings import Settings
from ..runtime import App
from ._cassette import Cassette
from ._play import REPLAY_TIMEOUT_S, replay
from ._report import DIVERGENCE_KINDS, DivergenceKind, ReplayReport

__all__ = ["assert_replays", "assert_replays_async"]


def assert_replays(
    cassette: Cassette | str | Path | Mapping[str, Any],
    *,
    app: App | str,
    settings: Settings | None = None,
    expect: Collection[DivergenceKind] = (),
    timeout: float = REPLAY_TIMEOUT_S,
) -> ReplayReport:
    """Replay a recorded run and fail the test if it departs from its recording.

    For a plain ``def test_...``; in an ``async def`` test, ``await
    assert_replays_async(...)``, which takes the same arguments::

        from corral.replay import assert_replays

        def test_last_weeks_refund_still_decides_the_same():
            assert_replays("tests/fixtures/cassettes/refund.json", app="myteam.agents:app")

        def test_the_new_policy_refuses_the_injected_transfer():
            assert_replays("tests/fixtures/cassettes/attack.json", app=strict_app(),
                           expect={"blocked", "steps"})

    Args:
        cassette: the recorded run (`Cassette`, an export file's path, or its document);
            ``corral export RUN_ID FILE`` writes one.
        app: the application to replay it against (an `App`, or ``module:factory``).
        settings: limits, breakers, gate deadlines. Default: `corral.load_settings()`.
        expect: the divergence kinds the replay must show, exactly (default none: it
            must decide as recorded).
        timeout: real seconds the replayed run may take.

    Returns:
        The report, for further asserts.

    Raises:
        AssertionError: the replay diverged otherwise than `expect` says, with every
            divergence, what the recording did and what the replay did.
    """
    report: ReplayReport = anyio.run(_replay, cassette, app, settings, timeout, backend="asyncio")
    _check(report, cassette, expect)
    return report


async def assert_replays_async(
    cassette: Cassette | str | Path | Mapping[str, Any],
    *,
    app: App | str,
    settings: Settings | None = None,
    expect: Collection[DivergenceKind] = (),
    timeout: float = REPLAY_TIMEOUT_S,
) -> ReplayReport:
    """`assert_replays` for an ``async def`` test (same arguments, same checks).

    Returns:
        The report.

    Raises:
        AssertionError: as `assert_replays`.
    """
    report = await _replay(cassette, app, settings, timeout)
    _check(report, cassette, expect)
    return report


async def _replay(
    cassette: Cassette | str | Path | Mapping[str, Any],
    app: App | str,
    settings: Settings | None,
    timeout: float,
) -> ReplayReport:
    return await replay(cassette, app=app, settings=settings, timeout=timeout)


def _check(
    report: ReplayReport,
    cassette: Cassette | str | Path | Mapping[str, Any],
    expect: Collection[DivergenceKind],
) -> None:
    unknown = sorted(set(expect) - set(DIVERGENCE_KINDS))
    if unknown:
        raise AssertionError(f"expect names unknown divergence kinds {unknown}")
    found = set(report.kinds)
    if found == set(expect):
        return
    where = cassette if isinstance(cassette, str | Path) else f"run {report.run_id}"
    lines = [f"run {report.run_id} (agent {report.agent}, {where}) does not replay as expected:"]
    if expect:
        lines.append(f"  expected divergences {sorted(expect)}, found {sorted(found)}")
    lines.append(_indent(report.explain().split("\n", 1)[1]))
    for divergence in report.divergences:
        lines.append(f"  {divergence}")
        lines.append(f"    - recorded: {_shown(divergence.recorded)}")
        lines.append(f"    + replayed: {_shown(divergence.replayed)}")
    raise AssertionError("\n".join(lines))


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _indent(text: str) -> str:
    return "\n".join(line if line.startswith("  ") else f"  {line}" for line in text.splitlines())
