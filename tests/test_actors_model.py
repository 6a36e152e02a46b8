"""Every path of the concurrency model that `corral.actors` documents, one test or more each.

The paths: the event loop check, inline and queued asks, ask timeouts (waiting for room,
waiting for the answer), asks and tells to a stopped actor, a cancelled asker, restarts
timed by the injected clock (backoff, the window, the limit and `child_failed`), messages
sent during a backoff, a `BaseException` from a handler, `abort`, the shutdown order, and
`OneShotActor`. Restarts run under a `MockClock`, so no test waits for a backoff.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from corral import MockClock
from corral.actors import NOT_INLINE, Actor, ActorRef, ActorSystem, OneShotActor, RestartPolicy
from corral.errors import ActorDeadError, AskTimeoutError, ConfigError


def _task() -> int:
    """The id of the task running now, to tell the sender's task from the actor's."""
    return anyio.get_current_task().id


class Echo(Actor):
    """Answers in its own task with the message and the name of the task that handled it."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, anyio.Event):
            await message.wait()
            return "released"
        if message == "boom":
            raise RuntimeError("boom")
        return message, _task()


class Tally(Actor):
    """Adds numbers inline (a crash on a negative one); anything else goes to `receive`."""

    def __init__(self, seen: list[int] | None = None) -> None:
        self.total = 0
        self.seen = seen if seen is not None else []

    def receive_inline(self, message: Any) -> Any:
        if not isinstance(message, int):
            return NOT_INLINE
        if message < 0:
            raise ValueError(f"negative amount {message}")
        self.total += message
        self.seen.append(_task())
        return self.total

    async def receive(self, message: Any) -> Any:
        if isinstance(message, int):
            return self.receive_inline(message)
        if isinstance(message, anyio.Event):
            await message.wait()
            return "released"
        return await super().receive(message)


class HeldClock(MockClock):
    """A mock clock whose `sleep` waits until the test releases it: a backoff held open."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = anyio.Event()
        self.release = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        """Say a sleep began, wait for the release, then advance as `MockClock` does."""
        self.sleeping.set()
        await self.release.wait()
        await super().sleep(seconds)


# -- the event loop -----------------------------------------------------------------------------


def test_an_actor_system_refuses_trio_before_starting_anything() -> None:
    system = ActorSystem()

    async def main() -> None:
        async with system:
            pass  # pragma: no cover - never reached: entering raises

    with pytest.raises(ConfigError) as caught:
        anyio.run(main, backend="trio")
    message = str(caught.value)
    assert message.startswith("ActorSystem runs on asyncio only, but this program runs on trio")
    assert "anyio.run(main)" in message and "asyncio.run(main())" in message
    assert system._tg is None  # nothing was left half-started


# -- ask: inline, queued, timeouts, a stopped actor, a cancelled asker ---------------------------


async def test_a_queued_ask_is_answered_in_the_actors_own_task() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        message, handled_in = await ref.ask("hello")
        assert message == "hello"
        assert handled_in != _task()
        assert ref.statistics().processed == 1


async def test_an_inline_ask_is_answered_in_the_senders_task_and_counted() -> None:
    seen: list[int] = []
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Tally(seen), name="tally")
        await anyio.sleep(0)  # let it reach its receive loop
        assert await ref.ask(2) == 2
        ref.tell_nowait(3)
        assert await ref.ask(0) == 5
        assert seen == [_task()] * 3
        assert ref.statistics().processed == 3
        assert ref.statistics().queued == 0


async def test_an_ask_waiting_for_room_times_out_and_leaves_the_mailbox_as_it_was() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo", mailbox_size=1)
        gate = anyio.Event()
        await ref.tell(gate)  # the actor takes it and blocks
        await anyio.wait_all_tasks_blocked()
        await ref.tell("filler")  # the mailbox is now full
        with pytest.raises(AskTimeoutError) as info:
            await ref.ask("late", timeout=0.01)
        assert (info.value.actor, info.value.message_type) == ("echo", "str")
        stats = ref.statistics()
        assert (stats.queued, stats.waiting_senders) == (1, 0)  # the ask left nothing behind
        gate.set()
        message, _ = await ref.ask("next")
        assert message == "next"
        assert ref.statistics().processed == 3  # gate, filler, next: the late ask never got in


async def test_an_answer_after_the_deadline_is_dropped_and_the_actor_goes_on() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        gate = anyio.Event()
        with pytest.raises(AskTimeoutError):
            await ref.ask(gate, timeout=0.01)  # the actor took it and is still blocked
        gate.set()  # now it answers an ask nobody waits for
        message, _ = await ref.ask("after")
        assert message == "after"
        assert ref.statistics().processed == 2
        assert ref.statistics().restarts == 0


async def test_a_cancelled_asker_leaves_the_actor_able_to_answer_later() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        gate = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, gate)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # the asker goes away while the actor holds its message
        gate.set()
        message, _ = await ref.ask("after")
        assert message == "after"
        assert ref.statistics().restarts == 0


@pytest.mark.parametrize("factory", [Echo, Tally], ids=["queued", "inline-capable"])
async def test_asks_and_tells_to_a_stopped_actor_raise_actor_dead_error(
    factory: type[Actor],
) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(factory, name="gone")
        await anyio.sleep(0)
        await ref.stop()
        assert not ref.alive
        assert system.get("gone") is None
        with pytest.raises(ActorDeadError) as info:
            await ref.ask(1)
        assert info.value.actor == "gone"
        with pytest.raises(ActorDeadError):
            await ref.tell(1)
        with pytest.raises(ActorDeadError):
            await ref.tell(1, wait=False)
        with pytest.raises(ActorDeadError):
            ref.tell_nowait(1)


# -- restarts, timed by the injected clock ------------------------------------------------------


async def test_restart_backoff_doubles_up_to_its_cap_on_the_injected_clock() -> None:
    clock = MockClock()
    policy = RestartPolicy(max_restarts=4, within=60, backoff=1.0, max_backoff=3.0)
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(Echo, name="echo", restart=policy)
        for _ in range(4):
            await ref.tell("boom")
            message, _ = await ref.ask("up")  # queued behind the crash: a fresh instance answers
            assert message == "up"
        assert clock.slept == [1.0, 2.0, 3.0, 3.0]
        assert ref.statistics().restarts == 4
        assert ref.alive


async def test_crashes_further_apart_than_the_window_restart_with_a_fresh_backoff() -> None:
    clock = MockClock()
    policy = RestartPolicy(max_restarts=1, within=10, backoff=1.0)
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(Echo, name="echo", restart=policy)
        await ref.tell("boom")
        await ref.ask("up")
        clock.advance(20)  # the first crash has left the window
        await ref.tell("boom")
        await ref.ask("up")
        assert clock.slept == [1.0, 1.0]
        assert ref.statistics().restarts == 2
        assert ref.alive


async def test_a_restart_limit_exceeded_in_the_window_goes_to_the_parents_child_failed() -> None:
    clock = MockClock()
    failed = anyio.Event()
    failures: list[tuple[str, str, int]] = []
    policy = RestartPolicy(max_restarts=2, within=10, backoff=1.0)

    class Parent(Actor):
        async def receive(self, message: Any) -> Any:
            return await self.spawn(Echo, name="child", restart=policy)

        async def child_failed(self, child: ActorRef, error: BaseException) -> None:
            failures.append((child.name, str(error), _task()))
            failed.set()

    async with ActorSystem(clock=clock) as system:
        parent = await system.spawn(Parent, name="parent")
        child: ActorRef = await parent.ask("spawn")
        for _ in range(3):  # two restarts allowed within 10 s; the third crash gives up
            await child.tell("boom")
        with anyio.fail_after(5):
            await failed.wait()
        assert clock.slept == [1.0, 2.0]  # 3 s of backoff: all three crashes in the window
        assert [(name, error) for name, error, _ in failures] == [("parent/child", "boom")]
        assert failures[0][2] != _task()  # the parent's own task
        assert not child.alive and parent.alive
        assert [a.name for a in system.actors()] == ["parent"]


async def test_messages_sent_during_a_backoff_wait_for_the_fresh_instance() -> None:
    clock = HeldClock()
    seen: list[int] = []
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(
            lambda: Tally(seen), name="tally", restart=RestartPolicy(backoff=5.0)
        )
        await anyio.sleep(0)
        assert await ref.ask(4) == 4
        await ref.tell(-1)  # raises inline: the actor crashes in its own task
        with anyio.fail_after(5):
            await clock.sleeping.wait()
        assert ref.alive and ref.statistics().restarts == 1
        ref.tell_nowait(2)  # no instance during the backoff: queued, not taken inline
        assert ref.statistics().queued == 1
        clock.release.set()
        assert await ref.ask(3) == 5  # the fresh instance, its total started again at 0
        assert clock.slept == [5.0]
        me = _task()
        assert seen[0] == me and seen[1] != me  # the queued 2 was handled by the actor's task


# -- fatal errors, abort and shutdown -----------------------------------------------------------


class Fatal(BaseException):
    """Neither an `Exception` nor a cancellation: not a crash to restart from."""


async def test_a_base_exception_from_a_handler_aborts_the_system_without_a_restart() -> None:
    class Doomed(Actor):
        async def receive(self, message: Any) -> Any:
            raise Fatal("stop everything")

    restarted: list[int] = []
    with pytest.raises(Fatal, match="stop everything"):
        async with ActorSystem() as system:
            ref = await system.spawn(Doomed, name="doomed")
            await ref.tell("go")
            try:
                await anyio.sleep_forever()
            finally:
                restarted.append(ref.statistics().restarts)
    assert restarted == [0]
    assert not ref.alive


async def test_abort_stops_every_actor_children_first_and_raises_the_first_error() -> None:
    stopped: list[str] = []

    class Tracked(Actor):
        def __init__(self, label: str) -> None:
            self.label = label

        async def receive(self, message: Any) -> Any:
            return await self.spawn(lambda: Tracked(f"{self.label}/child"), name="child")

        async def stopped(self) -> None:
            stopped.append(self.label)

    with pytest.raises(RuntimeError, match="first") as caught:
        async with ActorSystem() as system:
            first = await system.spawn(lambda: Tracked("first"), name="first")
            await first.ask("spawn")
            await system.spawn(lambda: Tracked("second"), name="second")
            system.abort(RuntimeError("first"))
            system.abort(RuntimeError("second"))  # the first one wins
            await anyio.sleep_forever()
    assert type(caught.value) is RuntimeError  # as itself, not in an exception group
    assert stopped.index("first/child") < stopped.index("first")
    assert sorted(stopped) == ["first", "first/child", "second"]
    assert system.actors() == []


async def test_shutdown_stops_top_level_actors_latest_spawned_first() -> None:
    stopped: list[str] = []

    class Tracked(Actor):
        def __init__(self, label: str) -> None:
            self.label = label

        async def stopped(self) -> None:
            stopped.append(self.label)

    async with ActorSystem() as system:
        for label in ("a", "b", "c"):
            await system.spawn(functools.partial(Tracked, label), name=label)
    assert stopped == ["c", "b", "a"]


# -- OneShotActor -------------------------------------------------------------------------------


async def test_a_one_shot_actor_runs_its_job_again_after_a_crash_then_stops() -> None:
    attempts: list[int] = []
    done = anyio.Event()

    class Job(OneShotActor):
        async def run_once(self) -> None:
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                raise RuntimeError("first try fails")

    async def after_stop() -> None:
        done.set()

    def make() -> Job:
        job = Job()
        job.after_stop = after_stop
        return job

    clock = MockClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(make, name="job", restart=RestartPolicy(backoff=0.5))
        with anyio.fail_after(5):
            await done.wait()
        assert attempts == [1, 2]
        assert clock.slept == [0.5]
        assert not ref.alive
        assert system.get("job") is None  # it left the registry before `after_stop` ran
