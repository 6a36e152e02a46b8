"""The PostgreSQL store: the journal in one database, for several processes and machines.

Layout. The tables of ``_postgres_sql.py`` in the schema ``corral``, as the SQLite store
keeps them: ``events`` is the append-only log (``PRIMARY KEY (run_id, seq)``; a trigger
refuses any UPDATE, and any DELETE except of finished runs by retention); ``runs``,
``gates``, ``waits``, ``blobs`` and ``blob_refs`` are indexes, written by the same
statement that writes the events they derive from, so they never disagree with the log;
``breakers`` keeps circuit-breaker states; ``schema_version`` the migrations applied.

Group commit. Events appended in the same event-loop tick go out in one statement (one
round trip, one commit): see ``_postgres_batch.py``. With 100 runs stepping at once (the
benchmark's workload: about 4 events a step, one of them waited for) a step costs about a
fifth of a round trip.

Several processes. Every process may open the same database. Gate decisions, wait
resolutions, deliveries and expiries are conditional appends that lock the row they check
(``SELECT ... FOR UPDATE``) and append in the same transaction, so two processes cannot
both decide a gate. Runs are claimed through leases (`claim`, `claim_runs` with ``FOR
UPDATE SKIP LOCKED``, `renew_leases`, `release`). Each claim that changes a run's owner
raises its lease epoch, and the store fences the group commits of the runs it claimed
with the epoch it claimed them at: once another worker has taken a run over (its lease
having run out), this worker's appends to it fail with a `JournalError` ("taken over"),
so it never writes the intent of a step the new owner may also take. (Conditional
appends are not fenced: any process may decide a gate or deliver an event, by design.)
Wake-ups. Every change another worker may have to act on (a gate decided or expired, a
wait resolved, a run finished or cancelled, a run queued or released while ready) sends
``NOTIFY corral_wake`` in the transaction that commits it; `watch_wakeups` LISTENs on a
connection of its own and reports them (`corral.store.WakeupSource`), so a runtime wakes
the run at once; its poller remains the fallback for a notification lost. What this
backend does not do yet: keep tenant budgets in the database.

Failures. A lost connection (the server stopped, restarted, failed over), a server that
refuses work, or a statement timeout fails the appenders concerned with a `JournalError`
naming the database (its URL without the password), the runs and seqs lost, and the
server's error with its SQLSTATE. What was committed is intact, and the store reconnects
by itself: the next call after the server is back works.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Collection, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode

from .._clock import Clock, SystemClock
from ..errors import ConfigError, CorralError, UsageError
from ..events import GateDecided, GateOpened, WaitResolved, WaitStarted
from ._coalesce import Coalescer, Job
from ._codec import decode_as, from_json, to_json
from ._contract import (
    WORKER_FORGET_S,
    GateRecord,
    RunInfo,
    RunStatus,
    TenantAsk,
    TenantDenied,
    TenantHold,
    TenantSpend,
    WaitRecord,
    WorkerInfo,
    check_not_expired,
    tenant_day,
    tenant_grant,
)
from ._postgres_batch import PostgresEngine, append_in_transaction
from ._postgres_sql import WAKE_CHANNEL
from ._rows import StoreStatistics

__all__ = ["PostgresStore", "parse_postgres_url", "redact_postgres_url"]

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_OPTIONS = ("pool_size", "connect_timeout", "command_timeout", "listen_retry", "listen_check")
"""Corral's own URL options (the others go to asyncpg)."""
_INFO = (
    "run_id, agent, tenant, status, outcome, created_at, updated_at, task, owner, lease_until, "
    "wake_at"
)
"""The ``runs`` columns of a `RunInfo`, in its field order."""
_GATES = """
    SELECT g.run_id, g.opened_seq, o.payload, g.decided_seq, d.payload FROM corral.gates g
    JOIN corral.events o ON o.run_id = g.run_id AND o.seq = g.opened_seq
    LEFT JOIN corral.events d ON d.run_id = g.run_id AND d.seq = g.decided_seq
"""
_LEASE_FREE = "(r.owner IS NULL OR r.owner = $1 OR r.lease_until IS NULL OR r.lease_until <= $3)"
"""A lease `owner` ($1) may take at `now` ($3)."""


def _mine_join(ids: str, epochs: str) -> str:
    """Join the leases the claiming store holds as `owner` (parameters `ids`, `epochs`)."""
    return (
        f"LEFT JOIN unnest({ids}::text[], {epochs}::bigint[]) AS mine(run_id, epoch) "
        "ON mine.run_id = r.run_id"
    )


_RENEWAL = "(r.owner IS NOT DISTINCT FROM $1 AND mine.epoch IS NOT DISTINCT FROM r.lease_epoch)"
"""A claim renews the lease only when it is the claiming store's own: same owner, and the
epoch it holds; any other claim (another process, or a restarted one under the same owner
name) takes the run over and starts a new epoch, which fences the previous holder."""


def _next_epoch(renewal: str) -> str:
    """Set the claimed lease's epoch: kept by a renewal (`renewal`), else one more."""
    return f"lease_epoch = r.lease_epoch + CASE WHEN {renewal} THEN 0 ELSE 1 END"


def redact_postgres_url(url: str) -> str:
    """The URL with its password (in the user part or a ``password=`` option) as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    location, q, query = rest.partition("?")
    credentials, at, hosts = location.rpartition("@")
    if at and ":" in credentials:
        location = f"{credentials.split(':', 1)[0]}:***@{hosts}"
    if q:
        pairs = [
            (name, "***" if name == "password" else value)
            for name, value in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*")
    return f"{scheme}{sep}{location}{q}{query}"


def parse_postgres_url(url: str) -> tuple[str, str, str, dict[str, float]]:
    """Split a ``postgresql://`` URL into what asyncpg needs and Corral's own options.

    Corral's options (``pool_size``, ``connect_timeout``, ``command_timeout``,
    ``listen_retry``, ``listen_check``) are taken out of the query; the others
    (``sslmode``, ``application_name``...) go to asyncpg.

    Args:
        url: ``postgresql://user:password@host:port/database?options`` (or
            ``postgres://``, ``postgresql+asyncpg://``).

    Returns:
        ``(dsn, where, password, options)``: the DSN for asyncpg, the URL without its
        password (for messages), the password (empty if none), and Corral's options.

    Raises:
        ConfigError: another scheme, no database named, or an invalid option. (No host:
            asyncpg's default, ``PGHOST`` or the local socket.)
    """
    where = redact_postgres_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError(
            f"not a PostgreSQL URL: {where!r}; use postgresql://user:password@host:port/database"
        )
    location, _, query = rest.partition("?")
    if "#" in location or "#" in query:
        raise ConfigError(f"invalid PostgreSQL URL {where!r}: a fragment (#) is not allowed")
    credentials, _, hostpath = location.rpartition("@")
    hosts, slash, database = hostpath.partition("/")
    if not slash or not database:
        raise ConfigError(f"invalid PostgreSQL URL {where!r}: no database named (…/database)")
    secret = unquote(credentials.split(":", 1)[1]) if ":" in credentials else ""
    options: dict[str, float] = {}
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _OPTIONS:
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not (math.isfinite(number) and number > 0) or (
                name == "pool_size" and number != int(number)
            ):
                what = "a whole number >= 1" if name == "pool_size" else "seconds > 0"
                raise ConfigError(f"invalid PostgreSQL URL {where!r}: {name} must be {what}")
            options[name] = number
        else:
            if name == "password":
                secret = value
            passed.append((name, value))
    dsn = f"postgresql://{location}"
    if passed:
        dsn += "?" + urlencode(passed, quote_via=quote)
    return dsn, where, secret, options


class PostgresStore(PostgresEngine):
    """A durable journal in a PostgreSQL database: implements `Journal`, every part of it.

    Use it as ``async with PostgresStore(url) as store: ...``, or call `open` and `close`;
    `journal_from_url` builds one from a ``postgresql://`` URL. It needs asyncpg
    (``pip install 'corral[postgres]'``). Beyond the `Journal` contract it offers
    `statistics`, and `watch_wakeups` (it is a `corral.store.WakeupSource`). One object
    serves one event loop; several processes may share the database (see the module
    docstring for what that covers today).

    Args:
        url: ``postgresql://user:password@host:port/database`` (``postgres://`` too), with
            asyncpg's options (``sslmode=require``...) and Corral's: ``pool_size``,
            ``connect_timeout``, ``command_timeout``, ``listen_retry``, ``listen_check``
            (they override the arguments below).
        pool_size: most connections the store holds open. Default 10.
        connect_timeout_s: how long connecting (or waiting for a free pooled connection)
            may take before failing. Default 10 s.
        command_timeout_s: how long one statement may run before failing with a
            `JournalError` (never a silent hang on a dead network). Default 60 s.
        max_pending_events: most events appended and not yet committed; an append beyond
            it waits until a batch commits (back-pressure). Default 10,000.
        max_pending_bytes: the same bound on their JSON size. Default 16 MiB.
        listen_retry_s: how long `watch_wakeups` waits before connecting again after its
            connection was lost or refused. Default 1 s.
        listen_check_s: how often `watch_wakeups` checks its connection with a query (a
            connection dead without a word is noticed within this). Default 10 s.
        clock: where `put_blob` and `save_breakers` read the time. Default: the system
            clock.

    Raises:
        ConfigError: not a PostgreSQL URL, or an invalid option.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 60.0,
        max_pending_events: int = 10_000,
        max_pending_bytes: int = 16 * 2**20,
        listen_retry_s: float = 1.0,
        listen_check_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        dsn, where, secret, options = parse_postgres_url(url)
        pool_size = int(options.get("pool_size", pool_size))
        connect_timeout_s = options.get("connect_timeout", connect_timeout_s)
        command_timeout_s = options.get("command_timeout", command_timeout_s)
        listen_retry_s = options.get("listen_retry", listen_retry_s)
        listen_check_s = options.get("listen_check", listen_check_s)
        if pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        if not (connect_timeout_s > 0 and command_timeout_s > 0):
            raise ConfigError("connect_timeout_s and command_timeout_s must be positive")
        if max_pending_events < 1 or max_pending_bytes < 1:
            raise ConfigError("max_pending_events and max_pending_bytes must be positive")
        if not (listen_retry_s > 0 and listen_check_s > 0):
            raise ConfigError("listen_retry_s and listen_check_s must be positive")
        self.where = where
        self._dsn = dsn
        self._secret = secret
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._max_events = max_pending_events
        self._max_bytes = max_pending_bytes
        self._listen_retry_s = listen_retry_s
        self._listen_check_s = listen_check_s
        self._listeners = set()
        self._clock = clock or SystemClock()
        self._tenant_jobs = Coalescer(self._run_tenant_jobs)
        self._pool = None
        self._closing = False
        self._reset()

    @property
    def url(self) -> str:
        """The database's URL without its password."""
        return self.where

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<PostgresStore {self.where!r} {state}>"

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the run index --------------------------------------------------------------------------

    async def runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int | None = 100,
        agents: Collection[str] | None = None,
        updated_since: float | None = None,
        tenant: str | None = None,
        outcome: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after: str | None = None,
    ) -> list[RunInfo]:
        """Return runs, newest first, with the filters given (see `RunIndex.runs`)."""
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, op, value in (
            ("status", "=", status),
            ("tenant", "=", tenant),
            ("outcome", "=", outcome),
            ("updated_at", ">=", updated_since),
            ("created_at", ">=", created_after),
            ("created_at", "<", created_before),
        ):
            if value is not None:
                where.append(f"{column} {op} {arg(value)}")
        if agents is not None:
            where.append(f"agent = ANY({arg(list(agents))}::text[])")
        if after is not None:  # keyset pagination, in the listing's own order
            where.append(
                "(created_at, ord) < (SELECT created_at, ord FROM corral.runs "
                f"WHERE run_id = {arg(after)})"
            )
        text = f"SELECT {_INFO} FROM corral.runs"
        if where:
            text += " WHERE " + " AND ".join(where)
        text += " ORDER BY created_at DESC, ord DESC"
        if limit is not None:
            text += f" LIMIT {arg(limit)}"
        rows = await self._read(_fetch, text, *args)
        return [RunInfo(*row) for row in rows]

    async def run(self, run_id: str) -> RunInfo | None:
        """Return one run as the index knows it (status, lease, timer), or None."""
        rows = await self._read(
            _fetch, f"SELECT {_INFO} FROM corral.runs WHERE run_id = $1", run_id, run=run_id
        )
        return RunInfo(*rows[0]) if rows else None

    async def unfinished_runs(self) -> list[str]:
        """Return the ids of runs started and not finished, oldest first."""
        rows = await self._read(
            _fetch,
            "SELECT run_id FROM corral.runs WHERE status <> 'finished' ORDER BY created_at, ord",
        )
        return [row[0] for row in rows]

    # -- gates ----------------------------------------------------------------------------------

    async def gates(
        self, *, status: str | None = "open", run_id: str | None = None
    ) -> list[GateRecord]:
        """Return gates with `status` (None for all), of one run or of all, oldest first."""
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            args.append(status)
            where.append(f"g.status = ${len(args)}")
        if run_id is not None:
            args.append(run_id)
            where.append(f"g.run_id = ${len(args)}")
        text = _GATES + (" WHERE " + " AND ".join(where) if where else "")
        text += " ORDER BY g.created_at, g.ord"
        rows = await self._read(_fetch, text, *args, run=run_id)
        return [self._gate_record(*row) for row in rows]

    async def gate(self, gate_id: str) -> GateRecord | None:
        """Return one gate with its decision, if any, or None."""
        rows = await self._read(_fetch, _GATES + " WHERE g.gate_id = $1", gate_id)
        return self._gate_record(*rows[0]) if rows else None

    def _gate_record(
        self,
        run_id: str,
        opened_seq: int,
        opened: str,
        decided_seq: int | None,
        decided: str | None,
    ) -> GateRecord:
        return GateRecord(
            run_id,
            decode_as(self.where, run_id, opened_seq, opened, GateOpened),
            None
            if decided_seq is None or decided is None
            else decode_as(self.where, run_id, decided_seq, decided, GateDecided),
        )

    async def decide_gate(self, decision: GateDecided) -> bool:
        """Append `decision` only if its gate is still open, atomically across processes.

        An approval or rejection is refused when ``decision.ts`` is at or after the gate's
        ``expires_at``, in the same transaction: a decision racing the deadline cannot win
        after it, whether or not anyone has expired the gate yet.

        Returns:
            True if this call decided the gate; False if it was already decided (by this
            or another process) or does not exist.

        Raises:
            UsageError: the gate belongs to another run than ``decision.run_id``.
            GateExpired: the decision is not an expiry and came at or after the deadline.
        """
        return await self._conditional([decision.run_id], _decide_gate, decision)

    async def expire_gates(self, now: float, *, note: str = "") -> list[GateRecord]:
        """Decide every open gate whose ``expires_at`` is at or before `now` as ``expired``.

        Each gets a ``gate_decided`` event (``decision="expired"``, ``ts=now``) in one
        transaction; a gate decided meanwhile by someone else is left alone.

        Args:
            now: the current time, Unix seconds.
            note: the decision's note, for example ``"no decision within 48 h"``.

        Returns:
            The gates this call expired, with their decisions.
        """
        due = await self._read(
            _fetch,
            "SELECT gate_id, run_id FROM corral.gates WHERE status = 'open' "
            "AND expires_at <= $1 ORDER BY created_at, ord",
            now,
        )
        if not due:
            return []
        records: list[tuple[str, int, str, GateDecided]] = await self._conditional(
            {row[1] for row in due}, _expire_gates, [row[0] for row in due], now, note
        )
        return [
            GateRecord(
                run_id,
                decode_as(self.where, run_id, seq, payload, GateOpened),
                decided,
            )
            for run_id, seq, payload, decided in records
        ]

    # -- waits ----------------------------------------------------------------------------------

    async def waits(self) -> list[WaitRecord]:
        """Return the waits not yet resolved, oldest first."""
        rows = await self._read(
            _fetch,
            "SELECT w.run_id, w.started_seq, e.payload FROM corral.waits w "
            "JOIN corral.events e ON e.run_id = w.run_id AND e.seq = w.started_seq "
            "WHERE w.run_id IS NOT NULL AND w.resolved_seq IS NULL "
            "ORDER BY w.created_at, w.ord",
        )
        return [
            WaitRecord(run_id, decode_as(self.where, run_id, seq, payload, WaitStarted))
            for run_id, seq, payload in rows
        ]

    async def deliver(self, key: str, payload: Any, *, now: float) -> str | None:
        """Deliver an external event (a webhook) by correlation key, exactly once.

        If a run waits on `key`, its ``wait_resolved`` event (with the payload) is appended
        in the same transaction and its id returned. Otherwise the payload is kept until a
        run starts waiting on `key` (`take_delivery` finds it). Delivering a key again
        keeps the first payload and returns None; so does delivering to a wait already
        resolved. A wait that started with a delivery already kept, and was not resolved,
        is resolved by the next delivery with the first payload.

        Args:
            key: the correlation key.
            payload: JSON-serialisable data.
            now: the current time, Unix seconds.

        Returns:
            The id of the run woken, or None.

        Raises:
            UsageError: the payload cannot be serialised to JSON.
        """
        data = to_json(payload, what=f"the payload delivered to {key!r}")
        for _ in range(5):  # a wait may start or end between the look-up and the write
            expected = await self._read(_open_wait_run, key)
            outcome, run_id = await self._conditional(
                [expected] if expected else [], _deliver, key, data, now, expected
            )
            if outcome != "retry":
                return run_id
        raise CorralError(f"could not deliver {key!r}: its wait kept changing")

    async def take_delivery(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, payload)`` if a payload was delivered for `key` and not yet used.

        The delivery is used up when the wait on `key` is resolved, not by this call, so a
        crash between taking it and resolving the wait does not lose it.
        """
        rows = await self._read(
            _fetch,
            "SELECT payload FROM corral.waits WHERE key = $1 AND delivered_at IS NOT NULL "
            "AND resolved_seq IS NULL",
            key,
        )
        return (True, from_json(rows[0][0])) if rows else (False, None)

    async def resolve_wait(self, resolution: WaitResolved) -> bool:
        """Append `resolution` only if its run's wait on the key is still open (atomically).

        Returns:
            False when the wait was already resolved, or another run waits on the key.
        """
        return await self._conditional([resolution.run_id], _resolve_wait, resolution)

    async def expire_waits(self, now: float) -> list[WaitResolved]:
        """Resolve every open wait whose ``expires_at`` is at or before `now`, timed out.

        Returns:
            The ``wait_resolved`` events appended (one transaction).
        """
        due = await self._read(
            _fetch,
            "SELECT key, run_id FROM corral.waits WHERE run_id IS NOT NULL "
            "AND resolved_seq IS NULL AND expires_at <= $1 ORDER BY created_at, ord",
            now,
        )
        if not due:
            return []
        return await self._conditional(
            {row[1] for row in due}, _expire_waits, [row[0] for row in due], now
        )

    # -- leases and timers ----------------------------------------------------------------------

    async def claim(self, run_id: str, owner: str, *, lease_s: float, now: float) -> bool:
        """Take (or renew) the right to drive an unfinished run until ``now + lease_s``.

        A new run whose first events are still queued here is claimed in the same
        statement that commits them (starting a run costs one round trip). A fresh claim
        (the run was not `owner`'s) forgets the run's cached counter, so the next append
        numbers after events another process wrote meanwhile.

        Args:
            run_id: the run.
            owner: this process's name in leases.
            lease_s: how long the lease lasts without renewal, seconds.
            now: the current time, Unix seconds.

        Returns:
            False when another owner's lease is still live (``lease_until > now``) or the
            run is finished or unknown.
        """
        pending = self._pending
        if run_id in pending.started and run_id not in self._fences:
            pending.claims.append((run_id, owner, now + lease_s))
            pending.wait(run_id)
            await self._wait_for(pending, run_id)
            return True
        if self._uncommitted(run_id):
            await self._flush()
        claimed = await self._write(_claim, [run_id], owner, now + lease_s, now, self._mine(owner))
        self._claimed(claimed, owner)
        return bool(claimed)

    async def claim_many(
        self, run_ids: list[str], owner: str, *, lease_s: float, now: float
    ) -> list[str]:
        """Claim each of `run_ids` that is free (as `claim` does), in one statement.

        Args:
            run_ids: the runs to claim.
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.

        Returns:
            The ids claimed, in the order given.
        """
        if not run_ids:
            return []
        if self._pending.rows or self._inflight is not None:
            await self._flush()
        claimed = await self._write(
            _claim, list(run_ids), owner, now + lease_s, now, self._mine(owner)
        )
        self._claimed(claimed, owner)
        taken = {run_id for run_id, _, _ in claimed}
        return [run_id for run_id in dict.fromkeys(run_ids) if run_id in taken]

    async def claim_runs(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        limit: int = 100,
        agents: Collection[str] | None = None,
        exclude: Collection[str] = (),
        fair: bool = False,
    ) -> list[str]:
        """Claim up to `limit` ready runs, oldest first, in one statement.

        Ready: status ``running``, no timer or a timer due (``wake_at <= now``), and a
        lease that is free, expired, or `owner`'s own. Rows another process is claiming at
        the same instant are skipped (``FOR UPDATE SKIP LOCKED``), so workers sharing the
        database never wait for each other here.

        Args:
            owner: this process's name in leases.
            lease_s: how long the leases last without renewal, seconds.
            now: the current time, Unix seconds.
            limit: most runs to claim. Default 100.
            agents: only runs of these agents. Default: any.
            exclude: runs never to claim.
            fair: take them round-robin by tenant (each tenant's oldest ready run, then
                each one's second-oldest, ...). A run being claimed by another worker at
                that instant is skipped and the next in that order taken. Default False.

        Returns:
            The ids claimed, in the order taken (oldest first, or round by round).
        """
        if self._pending.rows or self._inflight is not None:
            await self._flush()
        claimed = await self._write(
            _claim_runs_fairly if fair else _claim_runs,
            owner,
            now + lease_s,
            now,
            limit,
            None if agents is None else list(agents),
            list(exclude),
            self._mine(owner),
        )
        self._claimed(claimed, owner)
        return [run_id for run_id, _, _ in claimed]

    def _mine(self, owner: str) -> tuple[list[str], list[int]]:
        """The leases this store holds as `owner`: claiming one again renews it."""
        mine = [(run_id, epoch) for run_id, (held, epoch) in self._held.items() if held == owner]
        return [run_id for run_id, _ in mine], [epoch for _, epoch in mine]

    def _claimed(self, claimed: list[tuple[str, bool, int]], owner: str) -> None:
        """Hold the leases just claimed; forget the counters of runs taken over."""
        for run_id, fresh, epoch in claimed:
            self._held[run_id] = (owner, epoch)
            if fresh:
                self._forget_counter(run_id)  # another process may have appended meanwhile

    async def renew_leases(
        self,
        owner: str,
        *,
        lease_s: float,
        now: float,
        run_ids: Collection[str] | None = None,
    ) -> int:
        """Extend every lease `owner` still holds on unfinished runs to ``now + lease_s``.

        One statement for all of them. It only extends a lease `owner` holds: a run
        released meanwhile or taken over by another process is left alone, never claimed.

        Args:
            owner: this process's name in leases.
            lease_s: the new lease length, seconds.
            now: the current time, Unix seconds.
            run_ids: only these runs. Default: all.

        Returns:
            How many leases were renewed.
        """
        if run_ids is not None and not run_ids:
            return 0
        # The rows are locked in run_id order, as the append function locks its batch's:
        # a renewal and a commit of the same worker never deadlock on each other.
        mine = "SELECT run_id FROM corral.runs WHERE owner = $2 AND status <> 'finished'"
        args: list[Any] = [now + lease_s, owner]
        if run_ids is not None:
            mine += " AND run_id = ANY($3::text[])"
            args.append(list(run_ids))
        # The tenant holds made for the runs renewed are extended with them (the run rows
        # first, then the holds in hold_id order, as reservations lock them).
        text = (
            f"WITH renewed AS (UPDATE corral.runs SET lease_until = $1 WHERE run_id IN ({mine} "
            "ORDER BY run_id FOR UPDATE) AND owner = $2 AND status <> 'finished' "
            "RETURNING run_id), held AS (UPDATE corral.tenant_holds SET until = $1 WHERE "
            "hold_id IN (SELECT hold_id FROM corral.tenant_holds WHERE owner = $2 AND run_id IN "
            "(SELECT run_id FROM renewed) ORDER BY hold_id FOR UPDATE)) "
            "SELECT count(*) FROM renewed"
        )
        return int(await self._write(_value, text, *args))

    async def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on a run (nothing happens if it holds none).

        The run's events still queued here are committed first (so whoever claims it next
        reads them). A lease this store claimed is released only if it is still that claim
        (same epoch): a stale process never frees the lease of the one that took its run
        over, even under the same owner name. Released while the run is ready to go on,
        the other workers are told at once (``run_queued``, see `watch_wakeups`). The
        run's counter is forgotten too (another process may append next), and so is the
        claim this store held.
        """
        if self._uncommitted(run_id):  # what it appended goes first: the next holder reads it
            await self._flush()
        text = (
            "UPDATE corral.runs SET owner = NULL, lease_until = NULL "
            "WHERE run_id = $1 AND owner = $2"
        )
        held = self._held.get(run_id)
        if held is not None and held[0] == owner:  # only the lease this store claimed
            await self._write(
                _count, _released(text + " AND lease_epoch = $3"), run_id, owner, held[1]
            )
        else:
            await self._write(_count, _released(text), run_id, owner)
        self._held.pop(run_id, None)
        self._forget_counter(run_id)

    async def request_cancel(self, run_id: str, reason: str, *, now: float) -> bool:
        """Ask the process driving an unfinished run to cancel it; False if finished/unknown.

        Its holder hears of it at once (``NOTIFY corral_wake 'cancel_requested <run id>'``,
        in the same transaction), or at its next tick.
        """
        return await self._write(_request_cancel, run_id, reason)

    async def cancel_requests(self, run_ids: Collection[str]) -> dict[str, str]:
        """The cancellations requested of the unfinished runs among `run_ids`."""
        if not run_ids:
            return {}
        rows = await self._query(
            _fetch,
            "SELECT run_id, cancel_request FROM corral.runs WHERE cancel_request IS NOT NULL "
            "AND status <> 'finished' AND run_id = ANY($1::text[])",
            list(run_ids),
        )
        return {run_id: reason for run_id, reason in rows}

    async def set_wake(self, run_id: str, wake_at: float | None) -> bool:
        """Set (or clear, with None) a run's durable timer, read back by `due_runs`.

        Returns:
            False when the run is unknown or finished.
        """
        if self._uncommitted(run_id):
            await self._flush()
        changed = await self._write(
            _count,
            "UPDATE corral.runs SET wake_at = $1 WHERE run_id = $2 AND status <> 'finished'",
            wake_at,
            run_id,
        )
        return changed == 1

    async def due_runs(self, now: float, *, limit: int = 1000) -> list[str]:
        """Return unfinished runs whose timer is due (``wake_at <= now``), earliest first.

        Args:
            now: the current time, Unix seconds.
            limit: most ids to return. Default 1,000.
        """
        rows = await self._read(
            _fetch,
            "SELECT run_id FROM corral.runs WHERE wake_at IS NOT NULL AND wake_at <= $1 "
            "AND status <> 'finished' ORDER BY wake_at, ord LIMIT $2",
            now,
            limit,
        )
        return [row[0] for row in rows]

    # -- blobs ----------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Store bytes once by content (storing the same bytes again is a no-op).

        Returns:
            Their SHA-256 digest, lowercase hex.
        """
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        await self._write(
            _count,
            "INSERT INTO corral.blobs (digest, size, data, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (digest) DO NOTHING",
            digest,
            len(data),
            data,
            self._clock.now(),
        )
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        """Return stored bytes by digest, or None.

        Raises:
            CorralError: the stored bytes no longer match their digest.
        """
        rows = await self._query(_fetch, "SELECT data FROM corral.blobs WHERE digest = $1", digest)
        if not rows:
            return None
        found = bytes(rows[0][0])
        if hashlib.sha256(found).hexdigest() != digest:
            raise CorralError(f"journal {self.where}: blob {digest} is corrupt")
        return found

    # -- workers --------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Record `worker` as alive at ``worker.seen_at``; forget workers unseen for a week."""
        await self._write(_heartbeat, worker, worker.seen_at - WORKER_FORGET_S)

    async def workers(self, *, now: float, within_s: float) -> list[WorkerInfo]:
        """Return the workers seen within `within_s` of `now`, oldest first, with leases."""
        rows = await self._query(_fetch, _WORKERS, now, now - within_s)
        return [WorkerInfo(*row) for row in rows]

    async def retire(self, owner: str) -> None:
        """Remove a worker from the registry."""
        await self._write(_count, "DELETE FROM corral.workers WHERE owner = $1", owner)

    # -- tenant budgets -------------------------------------------------------------------------

    async def reserve_tenant(
        self, ask: TenantAsk, *, now: float, until: float
    ) -> TenantHold | TenantDenied:
        """Hold what `ask` needs of the tenant's day, under a lock on the day's row.

        Two workers reserving for one tenant take turns on that row, so they never both
        take the last of its budget (see `TenantBudgets.reserve_tenant`). The holds and
        settlements asked in the same tick share one transaction (one commit), taking the
        day rows in (tenant, day) order, as every worker does: no deadlock.
        """
        key = (ask.tenant, tenant_day(now), 1)
        hold: TenantHold | TenantDenied = await self._tenant_jobs.call(
            key, _reserve_tenant, ask, now, until
        )
        return hold

    async def settle_tenant(self, hold: TenantHold, *, tokens: int, cost_usd: float) -> bool:
        """Give `hold` back and count what the call used (False: it had expired)."""
        key = (hold.tenant, hold.day, 0)  # before the reservations of the same day
        settled: bool = await self._tenant_jobs.call(key, _settle_tenant, hold, tokens, cost_usd)
        return settled

    async def _run_tenant_jobs(self, jobs: list[Job]) -> list[Any]:
        return await self._write(_tenant_jobs, jobs)

    async def tenant_spend(self, tenant: str, *, now: float) -> TenantSpend:
        """Return the tenant's day (the UTC day of `now`), across every worker."""
        return await self._query(_tenant_spend, tenant, tenant_day(now), now)

    # -- breakers, retention, maintenance -------------------------------------------------------

    async def save_breakers(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the saved circuit-breaker states (tool -> JSON-serialisable data).

        Raises:
            UsageError: a state cannot be serialised to JSON.
        """
        now = self._clock.now()
        rows = [
            (tool, to_json(dict(state), what=f"the state of breaker {tool!r}"), now)
            for tool, state in states.items()
        ]
        await self._write(_replace_breakers, rows)

    async def load_breakers(self) -> dict[str, dict[str, Any]]:
        """Return the saved circuit-breaker states (empty if none were saved)."""
        rows = await self._query(_fetch, "SELECT tool, state FROM corral.breakers ORDER BY tool")
        return {tool: from_json(state) for tool, state in rows}

    async def prune(self, *, older_than_s: float, now: float) -> int:
        """Delete finished runs last updated before ``now - older_than_s``.

        Their events, gates, waits and blob references go with them, as do blobs no run
        uses any more and early deliveries nobody waited for, when older than the cutoff.
        Runs are deleted 500 per transaction, so other writers are not held up long.
        Unfinished runs are never pruned.

        Returns:
            The number of runs deleted.
        """
        self._open_pool()
        await self._flush()
        cutoff = now - older_than_s
        total = 0
        while True:
            deleted = await self._write(_prune_some, cutoff, 500)
            total += deleted
            if deleted < 500:
                return total

    async def vacuum(self) -> None:
        """Run ``VACUUM (ANALYZE)`` on Corral's tables: space freed by `prune` is reused.

        Plain ``VACUUM`` takes no lock that blocks other workers; returning the space to
        the operating system (``VACUUM FULL``) locks the tables, and is left to operators.
        """
        self._open_pool()
        await self._flush()
        await self._query(
            _execute,
            "VACUUM (ANALYZE) corral.events, corral.runs, corral.gates, corral.waits, "
            "corral.blobs, corral.blob_refs, corral.breakers, corral.tenant_days, "
            "corral.tenant_holds",
        )

    def statistics(self) -> StoreStatistics:
        """Return counters: transactions, events written, batch sizes, queue, memory."""
        return StoreStatistics(
            transactions=self._transactions,
            events=self._events,
            largest_batch=self._largest,
            conditional_writes=self._conditional_count,
            failed_batches=self._failed,
            pending_events=len(self._pending.rows),
            pending_bytes=self._pending.nbytes,
            cached_runs=len(self._seq),
        )


# -- statements, each given a connection (in a transaction for writes) ----------------------------


def _released(update: str) -> str:
    """`update` (of a lease) notifying the other workers when the run is left ready to go on."""
    return (
        f"WITH freed AS ({update} RETURNING run_id, status, wake_at) "
        f"SELECT count(pg_notify('{WAKE_CHANNEL}', 'run_queued ' || run_id)) FROM freed "
        "WHERE status = 'running' AND wake_at IS NULL"
    )


_WORKERS = (
    "SELECT w.owner, w.host, w.pid, w.started_at, w.seen_at, w.max_active_runs, w.version, "
    "(SELECT count(*) FROM corral.runs r WHERE r.owner = w.owner AND r.status <> 'finished' "
    "AND r.lease_until > $1)::integer FROM corral.workers w WHERE w.seen_at >= $2 "
    "ORDER BY w.started_at, w.owner"
)


async def _request_cancel(conn: Any, run_id: str, reason: str) -> bool:
    changed = await _count(
        conn,
        "UPDATE corral.runs SET cancel_request = $2 WHERE run_id = $1 AND status <> 'finished'",
        run_id,
        reason,
    )
    if changed:
        await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, f"cancel_requested {run_id}")
    return changed > 0


async def _heartbeat(conn: Any, worker: WorkerInfo, cutoff: float) -> None:
    await conn.execute(
        "INSERT INTO corral.workers "
        "(owner, host, pid, started_at, seen_at, max_active_runs, version) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner) DO UPDATE SET "
        "host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, "
        "seen_at = EXCLUDED.seen_at, max_active_runs = EXCLUDED.max_active_runs, "
        "version = EXCLUDED.version",
        worker.owner,
        worker.host,
        worker.pid,
        worker.started_at,
        worker.seen_at,
        worker.max_active_runs,
        worker.version,
    )
    await conn.execute("DELETE FROM corral.workers WHERE seen_at < $1", cutoff)


async def _fetch(conn: Any, text: str, *args: Any) -> list[Any]:
    return list(await conn.fetch(text, *args))


async def _execute(conn: Any, text: str) -> None:
    await conn.execute(text)


async def _value(conn: Any, text: str, *args: Any) -> Any:
    return await conn.fetchval(text, *args)


async def _count(conn: Any, text: str, *args: Any) -> int:
    status = str(await conn.execute(text, *args))  # "UPDATE 3", "INSERT 0 1"
    return int(status.rsplit(" ", 1)[-1])


async def _load(conn: Any, where: str, run_id: str, seq: int) -> str:
    payload = await conn.fetchval(
        "SELECT payload FROM corral.events WHERE run_id = $1 AND seq = $2", run_id, seq
    )
    if payload is None:
        raise CorralError(f"journal {where}: event {seq} of run {run_id!r} is missing")
    return str(payload)


async def _decide_gate(conn: Any, where: str, decision: GateDecided) -> bool:
    row = await conn.fetchrow(
        "SELECT run_id, status, expires_at FROM corral.gates WHERE gate_id = $1 FOR UPDATE",
        decision.gate_id,
    )
    if row is None or row[1] != "open":
        return False
    if row[0] != decision.run_id:
        raise UsageError(
            f"gate {decision.gate_id!r} belongs to run {row[0]!r}, not {decision.run_id!r}"
        )
    check_not_expired(decision, float(row[2]))
    await append_in_transaction(conn, decision)
    return True


async def _expire_gates(
    conn: Any, where: str, gate_ids: list[str], now: float, note: str
) -> list[tuple[str, int, str, GateDecided]]:
    expired: list[tuple[str, int, str, GateDecided]] = []
    for gate_id in gate_ids:
        row = await conn.fetchrow(
            "SELECT run_id, call_id, opened_seq FROM corral.gates "
            "WHERE gate_id = $1 AND status = 'open' AND expires_at <= $2 FOR UPDATE",
            gate_id,
            now,
        )
        if row is None:
            continue
        run_id, call_id, opened_seq = row
        decided = await append_in_transaction(
            conn,
            GateDecided(
                run_id=run_id,
                ts=now,
                gate_id=gate_id,
                call_id=call_id,
                decision="expired",
                note=note,
            ),
        )
        opened = await _load(conn, where, run_id, opened_seq)
        expired.append((run_id, opened_seq, opened, cast(GateDecided, decided)))
    return expired


async def _open_wait_run(conn: Any, key: str) -> str | None:
    found = await conn.fetchval(
        "SELECT run_id FROM corral.waits WHERE key = $1 AND run_id IS NOT NULL "
        "AND resolved_seq IS NULL",
        key,
    )
    return None if found is None else str(found)


async def _deliver(
    conn: Any, where: str, key: str, data: str, now: float, expected: str | None
) -> tuple[str, str | None]:
    """Keep or deliver a payload for `key`, if the run waiting is `expected` (see SQLite's)."""
    row = await conn.fetchrow(
        "SELECT run_id, started_seq, payload, delivered_at, resolved_seq FROM corral.waits "
        "WHERE key = $1 FOR UPDATE",
        key,
    )
    open_run = row[0] if row is not None and row[0] is not None and row[4] is None else None
    if open_run != expected:
        return "retry", None  # not the run whose appends we held back
    if row is None:
        inserted = await _count(
            conn,
            "INSERT INTO corral.waits (key, run_id, created_at, payload, delivered_at) "
            "VALUES ($1, NULL, $2, $3, $2) ON CONFLICT (key) DO NOTHING",
            key,
            now,
            data,
        )
        return ("kept", None) if inserted else ("retry", None)
    if open_run is None:
        return "ignored", None  # a delivery is already kept, or the wait is resolved
    if row[3] is None:
        await conn.execute(
            "UPDATE corral.waits SET payload = $1, delivered_at = $2 WHERE key = $3",
            data,
            now,
            key,
        )
    else:
        data = row[2]  # delivered before the wait started: the first payload wins
    started = decode_as(
        where, open_run, row[1], await _load(conn, where, open_run, row[1]), WaitStarted
    )
    await append_in_transaction(
        conn,
        WaitResolved(
            run_id=open_run,
            ts=now,
            call_id=started.call_id,
            tool=started.tool,
            key=key,
            payload=from_json(data),
        ),
    )
    return "resolved", open_run


async def _resolve_wait(conn: Any, where: str, resolution: WaitResolved) -> bool:
    found = await conn.fetchval(
        "SELECT run_id FROM corral.waits WHERE key = $1 AND run_id IS NOT NULL "
        "AND resolved_seq IS NULL FOR UPDATE",
        resolution.key,
    )
    if found != resolution.run_id:
        return False
    await append_in_transaction(conn, resolution)
    return True


async def _expire_waits(conn: Any, where: str, keys: list[str], now: float) -> list[WaitResolved]:
    resolved: list[WaitResolved] = []
    for key in keys:
        row = await conn.fetchrow(
            "SELECT run_id, started_seq FROM corral.waits WHERE key = $1 AND run_id IS NOT NULL "
            "AND resolved_seq IS NULL AND expires_at <= $2 FOR UPDATE",
            key,
            now,
        )
        if row is None:
            continue
        started = decode_as(
            where, row[0], row[1], await _load(conn, where, row[0], row[1]), WaitStarted
        )
        event = WaitResolved(
            run_id=row[0],
            ts=now,
            call_id=started.call_id,
            tool=started.tool,
            key=key,
            timed_out=True,
        )
        resolved.append(cast(WaitResolved, await append_in_transaction(conn, event)))
    return resolved


async def _claim(
    conn: Any,
    run_ids: list[str],
    owner: str,
    until: float,
    now: float,
    mine: tuple[list[str], list[int]],
) -> list[tuple[str, bool, int]]:
    """Claim each free run of `run_ids`; return (run_id, fresh, lease epoch) of each."""
    rows = await conn.fetch(
        "WITH free AS (SELECT r.run_id, "
        f"{_RENEWAL} AS renewal FROM corral.runs r {_mine_join('$5', '$6')} "
        f"WHERE r.run_id = ANY($4::text[]) AND r.status <> 'finished' AND {_LEASE_FREE} "
        "ORDER BY r.run_id FOR UPDATE OF r) "
        "UPDATE corral.runs r SET owner = $1, lease_until = $2, "
        f"{_next_epoch('free.renewal')} FROM free "
        "WHERE r.run_id = free.run_id RETURNING r.run_id, NOT free.renewal, r.lease_epoch",
        owner,
        until,
        now,
        run_ids,
        *mine,
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def _claim_runs(
    conn: Any,
    owner: str,
    until: float,
    now: float,
    limit: int,
    agents: list[str] | None,
    exclude: list[str],
    mine: tuple[list[str], list[int]],
) -> list[tuple[str, bool, int]]:
    """Claim up to `limit` ready runs, oldest first; return (run_id, fresh, epoch) of each."""
    rows = await conn.fetch(
        "WITH ready AS (SELECT r.run_id, r.created_at, r.ord, "
        f"{_RENEWAL} AS renewal FROM corral.runs r {_mine_join('$7', '$8')} "
        f"WHERE r.status = 'running' AND {_LEASE_FREE} "
        "AND (r.wake_at IS NULL OR r.wake_at <= $3) "
        "AND ($5::text[] IS NULL OR r.agent = ANY($5::text[])) "
        "AND NOT (r.run_id = ANY($6::text[])) "
        "ORDER BY r.created_at, r.ord LIMIT $4 FOR UPDATE OF r SKIP LOCKED) "
        "UPDATE corral.runs r SET owner = $1, lease_until = $2, "
        f"{_next_epoch('ready.renewal')} FROM ready "
        "WHERE r.run_id = ready.run_id "
        "RETURNING r.run_id, NOT ready.renewal, r.lease_epoch, ready.created_at, ready.ord",
        owner,
        until,
        now,
        limit,
        agents,
        exclude,
        *mine,
    )
    ordered = sorted(rows, key=lambda row: (row[3], row[4]))
    return [(row[0], row[1], row[2]) for row in ordered]


_READY = (
    f"r.status = 'running' AND {_LEASE_FREE} AND (r.wake_at IS NULL OR r.wake_at <= $3) "
    "AND ($5::text[] IS NULL OR r.agent = ANY($5::text[])) AND NOT (r.run_id = ANY($6::text[]))"
)
"""A run `_claim_runs_fairly` may take (the same test `_claim_runs` makes)."""


async def _claim_runs_fairly(
    conn: Any,
    owner: str,
    until: float,
    now: float,
    limit: int,
    agents: list[str] | None,
    exclude: list[str],
    mine: tuple[list[str], list[int]],
) -> list[tuple[str, bool, int]]:
    """`_claim_runs` round-robin by tenant; return (run_id, fresh, epoch) in that order.

    PostgreSQL refuses ``FOR UPDATE`` beside a window function, so ``ranked`` numbers the
    ready runs within their tenant, after the runs the tenant has in flight (``busy``: a
    live lease of another owner, or the claimer's own on a run it excludes), without
    locks; ``ready`` then locks them in the order of those numbers with ``SKIP LOCKED``
    up to `limit`: a row another worker is claiming is passed over and the next one in
    the order taken, so the batch is still full and fair. Its readiness is tested again
    on the row it locks (``ranked`` read an older snapshot: the row may have been claimed
    and committed since). Skipping never waits for a lock, so locking in this order
    rather than by ``run_id`` cannot deadlock.
    """
    rows = await conn.fetch(
        "WITH busy AS (SELECT r.tenant, count(*) AS n FROM corral.runs r "
        "WHERE r.owner IS NOT NULL AND r.lease_until > $3 AND r.status <> 'finished' "
        "AND (r.owner <> $1 OR r.run_id = ANY($6::text[])) GROUP BY r.tenant), "
        "ranked AS (SELECT r.run_id, COALESCE(busy.n, 0) + ROW_NUMBER() OVER "
        "(PARTITION BY r.tenant ORDER BY r.created_at, r.ord) AS rn "
        f"FROM corral.runs r LEFT JOIN busy ON busy.tenant = r.tenant WHERE {_READY}), "
        "ready AS (SELECT r.run_id, ranked.rn, r.created_at, r.ord, "
        f"{_RENEWAL} AS renewal FROM corral.runs r JOIN ranked ON ranked.run_id = r.run_id "
        f"{_mine_join('$7', '$8')} WHERE {_READY} "
        "ORDER BY ranked.rn, r.created_at, r.ord LIMIT $4 FOR UPDATE OF r SKIP LOCKED) "
        "UPDATE corral.runs r SET owner = $1, lease_until = $2, "
        f"{_next_epoch('ready.renewal')} FROM ready "
        "WHERE r.run_id = ready.run_id "
        "RETURNING r.run_id, NOT ready.renewal, r.lease_epoch, ready.rn, ready.created_at, "
        "ready.ord",
        owner,
        until,
        now,
        limit,
        agents,
        exclude,
        *mine,
    )
    ordered = sorted(rows, key=lambda row: (row[3], row[4], row[5]))
    return [(row[0], row[1], row[2]) for row in ordered]


_TENANT_SPEND = (
    "SELECT (SELECT tokens FROM corral.tenant_days WHERE tenant = $1 AND day = $2), "
    "(SELECT cost_usd FROM corral.tenant_days WHERE tenant = $1 AND day = $2), "
    "COALESCE(SUM(tokens) FILTER (WHERE until <= $3), 0), "
    "COALESCE(SUM(cost_usd) FILTER (WHERE until <= $3), 0.0), "
    "COALESCE(SUM(tokens) FILTER (WHERE until > $3), 0), "
    "COALESCE(SUM(cost_usd) FILTER (WHERE until > $3), 0.0) "
    "FROM corral.tenant_holds WHERE tenant = $1 AND day = $2"
)
"""A tenant's day in one round trip: settled, expired holds, live holds (tokens, USD)."""


async def _tenant_spend(conn: Any, tenant: str, day: str, now: float) -> TenantSpend:
    row = await conn.fetchrow(_TENANT_SPEND, tenant, day, now)
    settled = (row[0], row[1]) if row[0] is not None else None
    return TenantSpend.from_rows(tenant, day, settled, (row[2], row[3]), (row[4], row[5]))


async def _lock_tenant_day(conn: Any, tenant: str, day: str) -> None:
    """Lock the day's row (made if missing) until the transaction ends: one round trip."""
    await conn.execute(
        "INSERT INTO corral.tenant_days (tenant, day, tokens, cost_usd) VALUES ($1, $2, 0, 0) "
        "ON CONFLICT (tenant, day) DO UPDATE SET tokens = corral.tenant_days.tokens",
        tenant,
        day,
    )


async def _reserve_tenant(
    conn: Any, ask: TenantAsk, now: float, until: float
) -> TenantHold | TenantDenied:
    day = tenant_day(now)
    await _lock_tenant_day(conn, ask.tenant, day)
    # Holds that expired unsettled (their worker died) count as spent, whole.
    await conn.execute(
        "WITH gone AS (DELETE FROM corral.tenant_holds WHERE hold_id IN ("
        "SELECT hold_id FROM corral.tenant_holds WHERE tenant = $1 AND day = $2 AND until <= $3 "
        "ORDER BY hold_id FOR UPDATE) RETURNING tokens, cost_usd) "
        "UPDATE corral.tenant_days SET tokens = tokens + (SELECT COALESCE(SUM(tokens), 0) "
        "FROM gone), cost_usd = cost_usd + (SELECT COALESCE(SUM(cost_usd), 0.0) FROM gone) "
        "WHERE tenant = $1 AND day = $2",
        ask.tenant,
        day,
        now,
    )
    spend = await _tenant_spend(conn, ask.tenant, day, now)
    granted = tenant_grant(ask, spend)
    if isinstance(granted, TenantDenied):
        return granted
    output, tokens, cost = granted
    hold = TenantHold(uuid.uuid4().hex, ask.tenant, day, tokens, cost, output)
    await conn.execute(
        "INSERT INTO corral.tenant_holds "
        "(hold_id, tenant, day, tokens, cost_usd, owner, run_id, until) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        hold.hold_id,
        hold.tenant,
        day,
        tokens,
        cost,
        ask.owner,
        ask.run_id,
        until,
    )
    return hold


async def _tenant_jobs(conn: Any, jobs: list[Job]) -> list[Any]:
    return [await job.fn(conn, *job.args) for job in jobs]


async def _settle_tenant(conn: Any, hold: TenantHold, tokens: int, cost: float) -> bool:
    await _lock_tenant_day(conn, hold.tenant, hold.day)  # the day first, as reservations do
    done = await conn.execute(
        "WITH gone AS (DELETE FROM corral.tenant_holds WHERE hold_id = $5 RETURNING 1) "
        "UPDATE corral.tenant_days SET tokens = tokens + $3, cost_usd = cost_usd + $4 "
        "WHERE tenant = $1 AND day = $2 AND EXISTS (SELECT 1 FROM gone)",
        hold.tenant,
        hold.day,
        tokens,
        cost,
        hold.hold_id,
    )
    return bool(done == "UPDATE 1")


async def _replace_breakers(conn: Any, rows: list[tuple[str, str, float]]) -> None:
    await conn.execute("DELETE FROM corral.breakers")
    if rows:
        await conn.executemany(
            "INSERT INTO corral.breakers (tool, state, updated_at) VALUES ($1, $2, $3)", rows
        )


async def _prune_some(conn: Any, cutoff: float, limit: int) -> int:
    ids = [
        row[0]
        for row in await conn.fetch(
            "SELECT run_id FROM corral.runs WHERE status = 'finished' AND updated_at < $1 "
            "LIMIT $2 FOR UPDATE",
            cutoff,
            limit,
        )
    ]
    for table in ("events", "gates", "waits", "blob_refs", "runs"):
        await conn.execute(f"DELETE FROM corral.{table} WHERE run_id = ANY($1::text[])", ids)
    if len(ids) < limit:  # the last round: what no run uses any more
        await conn.execute(
            "DELETE FROM corral.blobs b WHERE created_at < $1 AND NOT EXISTS "
            "(SELECT 1 FROM corral.blob_refs r WHERE r.digest = b.digest)",
            cutoff,
        )
        await conn.execute(
            "DELETE FROM corral.waits WHERE run_id IS NULL AND delivered_at < $1", cutoff
        )
        first_day = tenant_day(cutoff)
        await conn.execute("DELETE FROM corral.tenant_days WHERE day < $1", first_day)
        await conn.execute("DELETE FROM corral.tenant_holds WHERE day < $1", first_day)
    return len(ids)
