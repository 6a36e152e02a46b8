from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral.actors import NOT_INLINE, Actor, ActorRef, ActorSystem, RestartPolicy
from corral.errors import ActorDeadError, AskTimeoutError, MailboxFullError, UsageError

FAST = RestartPolicy(max_restarts=2, within=60, backoff=0.0)


class Counter(Actor):
    instances = 0

    def __init__(self) -> None:
        Counter.instances += 1
        self.count = 0

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        if message == "bad-ask":
            raise ValueError("bad request")
        if isinstance(message, anyio.Event):
            await message.wait()
            return "released"
        self.count += 1
        return self.count


async def test_tell_and_ask_handle_one_message_at_a_time_in_order() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="counter")
        for _ in range(5):
            await ref.tell("inc")
        assert await ref.ask("inc") == 6
        assert ref.statistics().processed == 6


async def test_ask_timeout_names_actor_and_message_type() -> None:
    class Slow(Actor):
        async def receive(self, message: Any) -> Any:
            await anyio.sleep_forever()

    class Ping:
        pass

    async with ActorSystem() as system:
        ref = await system.spawn(Slow, name="slow")
        with pytest.raises(AskTimeoutError) as info:
            await ref.ask(Ping(), timeout=0.05)
        assert info.value.actor == "slow"
        assert info.value.message_type == "Ping"
        assert "slow" in str(info.value) and "Ping" in str(info.value)


async def test_error_while_answering_ask_goes_to_caller_and_actor_survives() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="c")
        assert await ref.ask("inc") == 1
        with pytest.raises(ValueError, match="bad request"):
            await ref.ask("bad-ask")
        assert await ref.ask("inc") == 2  # same instance, state kept
        assert ref.statistics().restarts == 0


async def test_crash_on_tell_restarts_with_fresh_state_and_same_mailbox() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="c", restart=FAST)
        await ref.ask("inc")
        await ref.tell("boom")
        assert await ref.ask("inc") == 1  # a fresh instance
        assert ref.statistics().restarts == 1
        assert ref.alive


async def test_restarts_are_bounded_and_escalate_to_the_parent() -> None:
    failures: list[tuple[str, str]] = []

    class Parent(Actor):
        async def receive(self, message: Any) -> Any:
            if message == "spawn":
                return await self.spawn(Counter, name="child", restart=FAST)
            return None

        async def child_failed(self, child: ActorRef, error: BaseException) -> None:
            failures.append((child.name, str(error)))

    async with ActorSystem() as system:
        parent = await system.spawn(Parent, name="parent")
        child: ActorRef = await parent.ask("spawn")
        for _ in range(3):  # 2 restarts allowed, the third crash gives up
            await child.tell("boom")
        with anyio.fail_after(5):
            while not failures:
                await anyio.sleep(0.001)
        assert failures == [("parent/child", "boom")]
        assert not child.alive
        assert parent.alive
        with pytest.raises(ActorDeadError):
            await child.tell("inc")


async def test_top_level_escalation_fails_the_system_loudly() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", restart=RestartPolicy(max_restarts=0))
            await ref.tell("boom")
            await anyio.sleep_forever()


async def test_on_escalation_hook_receives_top_level_failures() -> None:
    seen: list[str] = []
    async with ActorSystem(on_escalation=lambda path, exc: seen.append(path)) as system:
        ref = await system.spawn(Counter, name="c", restart=RestartPolicy(max_restarts=0))
        await ref.tell("boom")
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.001)
    assert seen == ["c"]


async def test_stop_fails_queued_asks_with_actor_dead_error() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="c")
        gate = anyio.Event()
        results: list[object] = []

        async def ask(message: Any) -> None:
            try:
                results.append(await ref.ask(message, timeout=5))
            except ActorDeadError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, gate)  # blocks the actor
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, "inc")  # queued behind it
            await anyio.wait_all_tasks_blocked()
            await ref.stop()
        assert len(results) == 2
        assert all(isinstance(r, ActorDeadError) for r in results)
        assert not ref.alive


async def test_full_mailbox_makes_tell_wait_or_fail_fast() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="c", mailbox_size=2)
        gate = anyio.Event()
        await ref.tell(gate)  # the actor takes it and blocks
        await anyio.wait_all_tasks_blocked()
        await ref.tell("a")
        await ref.tell("b")  # mailbox now full
        with pytest.raises(MailboxFullError) as info:
            await ref.tell("c", wait=False)
        assert info.value.capacity == 2
        with pytest.raises(MailboxFullError):
            ref.tell_nowait("c")

        delivered = anyio.Event()

        async def blocked_sender() -> None:
            await ref.tell("c")  # waits for room: back-pressure
            delivered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_sender)
            await anyio.wait_all_tasks_blocked()
            assert not delivered.is_set()
            assert ref.statistics().waiting_senders == 1
            gate.set()
        assert delivered.is_set()
        assert await ref.ask("inc") == 4


async def test_shutdown_stops_children_and_leaves_no_task() -> None:
    stopped: list[str] = []

    class Tracked(Actor):
        def __init__(self, label: str) -> None:
            self.label = label

        async def receive(self, message: Any) -> Any:
            if message == "spawn":
                return await self.spawn(lambda: Tracked(self.label + ".child"), name="child")
            return None

        async def stopped(self) -> None:
            stopped.append(self.label)

    async with ActorSystem() as system:
        root = await system.spawn(lambda: Tracked("root"), name="root")
        child = await root.ask("spawn")
        assert [a.name for a in system.actors()] == ["root", "root/child"]
    assert stopped == ["root.child", "root"]
    assert not child.alive and not root.alive
    assert system.actors() == []


async def test_spawn_rules() -> None:
    with pytest.raises(UsageError, match="not running"):
        await ActorSystem().spawn(Counter, name="x")
    async with ActorSystem() as system:
        await system.spawn(Counter, name="x")
        with pytest.raises(UsageError, match="already running"):
            await system.spawn(Counter, name="x")
        with pytest.raises(UsageError, match="invalid actor name"):
            await system.spawn(Counter, name="a/b")


async def test_unhandled_message_type_is_reported_to_the_asker() -> None:
    class Silent(Actor):
        pass

    async with ActorSystem() as system:
        ref = await system.spawn(Silent, name="s")
        with pytest.raises(UsageError, match="does not handle int"):
            await ref.ask(42)


async def test_an_error_in_the_body_comes_out_as_itself_not_a_group() -> None:
    with pytest.raises(KeyError):
        async with ActorSystem() as system:
            await system.spawn(Counter, name="c")
            raise KeyError("plain")


# -- inline dispatch: an idle actor takes a plain message in the sender's task ------------------


class Ledger(Actor):
    """Sync bookkeeping inline; `Slow` messages go through its own task."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.total = 0

    def receive_inline(self, message: Any) -> Any:
        if message == "add one to myself":
            self.ref.tell_nowait(1)  # while handling inline: queued, never handled re-entrantly
            self.log.append("told myself")
            return "told"
        if isinstance(message, int):
            if message < 0:
                raise ValueError(f"negative amount {message}")
            self.total += message
            self.log.append(f"add {message} in {anyio.get_current_task().name}")
            return self.total
        return NOT_INLINE

    async def receive(self, message: Any) -> Any:
        if isinstance(message, int):
            return self.receive_inline(message)
        if isinstance(message, Slow):
            await message.release.wait()
            self.log.append("slow done")
            return "slow"
        return await super().receive(message)


class Slow:
    def __init__(self) -> None:
        self.release = anyio.Event()


async def test_an_idle_actor_answers_a_plain_ask_in_the_senders_task() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ledger = await system.spawn(lambda: Ledger(log), name="ledger")
        await anyio.sleep(0)  # let it reach its receive loop
        assert await ledger.ask(5) == 5
        await ledger.tell(2)
        ledger.tell_nowait(3)
        assert await ledger.ask(0) == 10
        assert ledger.statistics().processed == 4
    assert all(f"in {anyio.get_current_task().name}" in line for line in log)


async def test_a_message_an_actor_sends_itself_while_inline_waits_its_turn() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ledger = await system.spawn(lambda: Ledger(log), name="ledger")
        await anyio.sleep(0)
        assert await ledger.ask("add one to myself") == "told"
        assert log == ["told myself"]  # the tell to itself did not run inside the ask
        with anyio.fail_after(5):
            while len(log) < 2:
                await anyio.sleep(0.001)
        assert log[1].startswith("add 1 in ")
        assert str(anyio.get_current_task().name) not in log[1]  # its own task took it


async def test_a_busy_actor_keeps_the_order_messages_were_sent_in() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ledger = await system.spawn(lambda: Ledger(log), name="ledger")
        await anyio.sleep(0)
        slow = Slow()
        await ledger.tell(slow)  # queued: the actor is busy until it is released
        async with anyio.create_task_group() as tg:

            async def add() -> None:
                assert await ledger.ask(7) == 7

            tg.start_soon(add)
            await anyio.sleep(0.01)
            assert log == []  # the ask waited behind the slow message, not overtook it
            slow.release.set()
        assert log[0] == "slow done"
        assert log[1].startswith("add 7 in ")
        assert "add" not in log[1].removeprefix("add 7 in ")  # handled by the actor's task


async def test_an_inline_ask_that_raises_answers_with_the_error_and_the_actor_lives_on() -> None:
    async with ActorSystem() as system:
        ledger = await system.spawn(lambda: Ledger([]), name="ledger")
        await anyio.sleep(0)
        with pytest.raises(ValueError, match="negative amount -1"):
            await ledger.ask(-1)
        assert await ledger.ask(4) == 4
        assert ledger.statistics().restarts == 0


async def test_an_inline_tell_that_raises_crashes_the_actor_which_restarts_fresh() -> None:
    async with ActorSystem() as system:
        ledger = await system.spawn(
            lambda: Ledger([]), name="ledger", restart=RestartPolicy(backoff=0)
        )
        await anyio.sleep(0)
        assert await ledger.ask(4) == 4
        await ledger.tell(-1)
        with anyio.fail_after(5):
            while ledger.statistics().restarts == 0:
                await anyio.sleep(0.001)
        assert await ledger.ask(1) == 1  # a fresh instance: the old total is gone


# -- spawning without waiting for the child's task -----------------------------------------------


class Spawner(Actor):
    """Spawns `Ledger` children without waiting for their tasks to start."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def receive(self, message: Any) -> Any:
        log = self.log
        return await self.spawn(lambda: Ledger(log), name=message, wait_started=False)


class Starter(Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def started(self) -> None:
        self.log.append("started")


async def test_a_child_spawned_without_waiting_takes_messages_sent_before_it_runs() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        parent = await system.spawn(lambda: Spawner(log), name="parent")
        child = await parent.ask("child")
        await child.tell(2)  # queued before the child's task ran
        assert await child.ask(3) == 5
        assert log[0].startswith("add 2 in ")


async def test_a_child_stopped_before_its_task_ran_never_starts() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        child = await system._spawn(
            lambda: Starter(log),
            name="late",
            parent=None,
            restart=None,
            mailbox_size=None,
            wait_started=False,
        )
        with anyio.fail_after(5):
            await child.stop()
        assert not child.alive
        assert log == []  # stopped before it ran: its `started` never did
