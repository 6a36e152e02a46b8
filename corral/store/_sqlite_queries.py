"""The SQLite store's queries and conditional writes: one job per contract method.

Each function runs on an aiosqlite connection's thread (`corral.store._sqlite_sql.call`)
with a plain `sqlite3.Connection`. Reads run on the read-only connection; writes run in
`transaction`, so a check and the append it guards (a gate decision, a delivery, an
expiry) cannot be separated by another process.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from ..errors import CorralError, UsageError
from ..events import GateDecided, GateOpened, WaitResolved, WaitStarted
from ._coalesce import Job
from ._codec import decode_as, from_json
from ._contract import (
    GateRecord,
    RunInfo,
    RunStatus,
    TenantAsk,
    TenantDenied,
    TenantHold,
    TenantSpend,
    check_not_expired,
    tenant_day,
    tenant_grant,
)
from ._sqlite_sql import append_in_transaction, transaction

__all__ = [
    "GATE_SELECT",
    "SET_OWNER",
    "claim",
    "claim_many",
    "claim_runs",
    "decide_gate",
    "deliver",
    "execute_count",
    "expire_gates",
    "expire_waits",
    "fetch_all",
    "fetch_column",
    "gate_record",
    "get_blob",
    "open_wait_run",
    "prune_some",
    "put_blob",
    "renew_leases",
    "replace_breakers",
    "reserve_tenant",
    "resolve_wait",
    "select_run",
    "select_runs",
    "settle_tenant",
    "size_bytes",
    "tenant_jobs",
    "tenant_spend",
    "vacuum",
]

_M = TypeVar("_M", bound=BaseModel)

SET_OWNER = (
    "UPDATE runs SET owner = ?, lease_until = ?, lease_epoch = lease_epoch + 1 WHERE run_id = ?"
)
"""The lease of a new run, in the transaction that inserts it (its epoch becomes 1)."""
_INFO_COLUMNS = (
    "run_id, agent, tenant, status, outcome, created_at, updated_at, task, owner, lease_until, "
    "wake_at"
)
"""The ``runs`` columns of a `RunInfo`, in its field order."""
GATE_SELECT = """
    SELECT g.run_id, g.opened_seq, o.payload, g.decided_seq, d.payload FROM gates g
    JOIN events o ON o.run_id = g.run_id AND o.seq = g.opened_seq
    LEFT JOIN events d ON d.run_id = g.run_id AND d.seq = g.decided_seq
"""
"""Gates with their opening and deciding events (rows for `gate_record`)."""


# -- reading -------------------------------------------------------------------------------------


def fetch_all(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """Every row of a query."""
    return conn.execute(sql, args).fetchall()


def fetch_column(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """The first column of every row of a query."""
    return [row[0] for row in conn.execute(sql, args)]


@dataclass(frozen=True, slots=True)
class RunFilter:
    """The filters of `RunIndex.runs` (None: not filtered)."""

    status: RunStatus | None = None
    agents: list[str] | None = None
    updated_since: float | None = None
    tenant: str | None = None
    outcome: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    after: str | None = None


def select_runs(conn: sqlite3.Connection, filters: RunFilter, limit: int | None) -> list[RunInfo]:
    """Runs of the index, newest first, with the filters of `RunIndex.runs`."""
    where: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("status", "=", filters.status),
        ("tenant", "=", filters.tenant),
        ("outcome", "=", filters.outcome),
        ("updated_at", ">=", filters.updated_since),
        ("created_at", ">=", filters.created_after),
        ("created_at", "<", filters.created_before),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    if filters.agents is not None:
        where.append("agent IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(filters.agents))
    if filters.after is not None:  # keyset pagination, in the listing's own order
        where.append("(created_at, rowid) < (SELECT created_at, rowid FROM runs WHERE run_id = ?)")
        args.append(filters.after)
    sql = f"SELECT {_INFO_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [RunInfo(*row) for row in conn.execute(sql, args)]


def select_run(conn: sqlite3.Connection, run_id: str) -> RunInfo | None:
    """One run of the index, or None."""
    row = conn.execute(f"SELECT {_INFO_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else RunInfo(*row)


def gate_record(
    path: str,
    run_id: str,
    opened_seq: int,
    opened: str,
    decided_seq: int | None,
    decided: str | None,
) -> GateRecord:
    """A `GateRecord` from a row of `GATE_SELECT`."""
    return GateRecord(
        run_id,
        decode_as(path, run_id, opened_seq, opened, GateOpened),
        None
        if decided_seq is None or decided is None
        else decode_as(path, run_id, decided_seq, decided, GateDecided),
    )


def _load(conn: sqlite3.Connection, path: str, run_id: str, seq: int, cls: type[_M]) -> _M:
    row = conn.execute(
        "SELECT payload FROM events WHERE run_id = ? AND seq = ?", (run_id, seq)
    ).fetchone()
    if row is None:
        raise CorralError(f"journal {path}: event {seq} of run {run_id!r} is missing")
    return decode_as(path, run_id, seq, row[0], cls)


# -- conditional appends: gates and waits --------------------------------------------------------


def decide_gate(conn: sqlite3.Connection, path: str, decision: GateDecided) -> bool:
    """Append `decision` if its gate is open and the decision is in time (see `Journal`).

    Raises:
        UsageError: the gate belongs to another run.
        GateExpired: an approval or rejection at or after the deadline.
    """
    with transaction(conn):
        row = conn.execute(
            "SELECT run_id, status, expires_at FROM gates WHERE gate_id = ?",
            (decision.gate_id,),
        ).fetchone()
        if row is None or row[1] != "open":
            return False
        if row[0] != decision.run_id:
            raise UsageError(
                f"gate {decision.gate_id!r} belongs to run {row[0]!r}, not {decision.run_id!r}"
            )
        check_not_expired(decision, float(row[2]))
        append_in_transaction(conn, decision)
        return True


def expire_gates(
    conn: sqlite3.Connection, path: str, gate_ids: list[str], now: float, note: str
) -> list[GateRecord]:
    """Decide each of `gate_ids` still open and overdue as ``expired``; return them."""
    expired: list[GateRecord] = []
    with transaction(conn):
        for gate_id in gate_ids:
            row = conn.execute(
                "SELECT run_id, call_id, opened_seq FROM gates "
                "WHERE gate_id = ? AND status = 'open' AND expires_at <= ?",
                (gate_id, now),
            ).fetchone()
            if row is None:
                continue
            run_id, call_id, opened_seq = row
            decided = append_in_transaction(
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
            opened = _load(conn, path, run_id, opened_seq, GateOpened)
            expired.append(GateRecord(run_id, opened, cast(GateDecided, decided)))
    return expired


def open_wait_run(conn: sqlite3.Connection, key: str) -> str | None:
    """The run whose wait on `key` is open, or None."""
    row = conn.execute(
        "SELECT run_id FROM waits WHERE key = ? AND run_id IS NOT NULL AND resolved_seq IS NULL",
        (key,),
    ).fetchone()
    return None if row is None else str(row[0])


def deliver(
    conn: sqlite3.Connection, path: str, key: str, data: str, now: float, expected: str | None
) -> tuple[str, str | None]:
    """Keep or deliver a payload (JSON text) for `key`, if the run waiting is `expected`.

    Returns:
        ``("retry", None)`` when another run (or none) waits now than `expected`;
        ``("kept", None)``, ``("ignored", None)`` or ``("resolved", run_id)`` otherwise.
    """
    with transaction(conn):
        row = conn.execute(
            "SELECT run_id, started_seq, payload, delivered_at, resolved_seq FROM waits "
            "WHERE key = ?",
            (key,),
        ).fetchone()
        open_run = row[0] if row is not None and row[0] is not None and row[4] is None else None
        if open_run != expected:
            return "retry", None  # not the run whose appends we held back
        if row is None:
            conn.execute(
                "INSERT INTO waits (key, run_id, created_at, payload, delivered_at) "
                "VALUES (?, NULL, ?, ?, ?)",
                (key, now, data, now),
            )
            return "kept", None
        if open_run is None:
            return "ignored", None  # a delivery is already kept, or the wait is resolved
        if row[3] is None:
            conn.execute(
                "UPDATE waits SET payload = ?, delivered_at = ? WHERE key = ?", (data, now, key)
            )
        else:
            data = row[2]  # delivered before the wait started: the first payload wins
        started = _load(conn, path, open_run, row[1], WaitStarted)
        resolved = WaitResolved(
            run_id=open_run,
            ts=now,
            call_id=started.call_id,
            tool=started.tool,
            key=key,
            payload=from_json(data),
        )
        append_in_transaction(conn, resolved)
        return "resolved", open_run


def resolve_wait(conn: sqlite3.Connection, path: str, resolution: WaitResolved) -> bool:
    """Append `resolution` if its run's wait on the key is open."""
    with transaction(conn):
        if open_wait_run(conn, resolution.key) != resolution.run_id:
            return False
        append_in_transaction(conn, resolution)
        return True


def expire_waits(
    conn: sqlite3.Connection, path: str, keys: list[str], now: float
) -> list[WaitResolved]:
    """Resolve each wait on `keys` still open and overdue as timed out; return the events."""
    resolved: list[WaitResolved] = []
    with transaction(conn):
        for key in keys:
            row = conn.execute(
                "SELECT run_id, started_seq FROM waits WHERE key = ? AND run_id IS NOT NULL "
                "AND resolved_seq IS NULL AND expires_at <= ?",
                (key, now),
            ).fetchone()
            if row is None:
                continue
            started = _load(conn, path, row[0], row[1], WaitStarted)
            event = WaitResolved(
                run_id=row[0],
                ts=now,
                call_id=started.call_id,
                tool=started.tool,
                key=key,
                timed_out=True,
            )
            resolved.append(cast(WaitResolved, append_in_transaction(conn, event)))
    return resolved


# -- leases --------------------------------------------------------------------------------------


_LEASE_FREE = "(owner IS NULL OR owner = ? OR lease_until IS NULL OR lease_until <= ?)"


Held = Mapping[str, tuple[str, int]]
"""The leases a store holds: run id -> (owner, epoch) of its own last claim."""

_CLAIM_SELECT = (
    "SELECT owner, lease_epoch FROM runs WHERE run_id = ? AND status != 'finished' "
    f"AND {_LEASE_FREE}"
)
_RENEW_CLAIM = "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ?"
_TAKE_CLAIM = (
    "UPDATE runs SET owner = ?, lease_until = ?, lease_epoch = lease_epoch + 1 WHERE run_id = ?"
)


def _take(
    conn: sqlite3.Connection,
    run_id: str,
    previous: str | None,
    epoch: int,
    owner: str,
    until: float,
    held: Held,
) -> tuple[bool, int]:
    """Set the lease; return (fresh, epoch). Fresh: not a renewal of this store's own claim.

    Only the store that made the claim renews it without advancing the epoch: any other
    claim (another process, or a restarted one under the same owner name) takes the run
    over, and the writes of the previous holder are refused from then on.
    """
    if previous == owner and held.get(run_id) == (owner, epoch):
        conn.execute(_RENEW_CLAIM, (owner, until, run_id))
        return False, epoch
    conn.execute(_TAKE_CLAIM, (owner, until, run_id))
    return True, epoch + 1


def claim(
    conn: sqlite3.Connection, run_id: str, owner: str, until: float, now: float, held: Held
) -> tuple[bool, bool, int]:
    """Return (claimed, fresh, epoch); fresh when it took the run over (see `_take`)."""
    with transaction(conn):
        row = conn.execute(_CLAIM_SELECT, (run_id, owner, now)).fetchone()
        if row is None:
            return False, False, 0
        fresh, epoch = _take(conn, run_id, row[0], row[1], owner, until, held)
        return True, fresh, epoch


def claim_many(
    conn: sqlite3.Connection,
    run_ids: list[str],
    owner: str,
    until: float,
    now: float,
    held: Held,
) -> list[tuple[str, bool, int]]:
    """`claim` each run in one transaction; return (run_id, fresh, epoch) of those claimed."""
    claimed: list[tuple[str, bool, int]] = []
    with transaction(conn):
        for run_id in run_ids:
            row = conn.execute(_CLAIM_SELECT, (run_id, owner, now)).fetchone()
            if row is not None:
                claimed.append((run_id, *_take(conn, run_id, row[0], row[1], owner, until, held)))
    return claimed


_RANKED = (
    "run_id, owner, lease_epoch, tenant, created_at, rowid AS ord, "
    "ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY created_at, rowid) AS rn"
)
"""`claim_runs` with ``fair``: each ready run's rank among its tenant's, by age."""

_FAIR = (
    "SELECT ready.run_id, ready.owner, ready.lease_epoch FROM ({}) AS ready "
    "LEFT JOIN (SELECT tenant, COUNT(*) AS n FROM runs WHERE owner IS NOT NULL "
    "AND lease_until > ? AND status != 'finished' "
    "AND (owner != ? OR run_id IN (SELECT value FROM json_each(?))) GROUP BY tenant) AS busy "
    "ON busy.tenant = ready.tenant "
    "ORDER BY ready.rn + COALESCE(busy.n, 0), ready.created_at, ready.ord LIMIT ?"
)
"""Take the ranked runs round by round; a tenant's runs in flight (a live lease of
another owner, or the claimer's own on a run it excludes) count as its first rounds."""


def claim_runs(
    conn: sqlite3.Connection,
    owner: str,
    until: float,
    now: float,
    limit: int,
    agents: list[str] | None,
    exclude: list[str],
    held: Held,
    fair: bool = False,
) -> list[tuple[str, bool, int]]:
    """Claim up to `limit` ready runs, oldest first; return (run_id, fresh, epoch) of each.

    With `fair`, round-robin by tenant: rank each tenant's ready runs by age, after the
    runs it has in flight, then take rank 1 of every tenant, rank 2 of every tenant, ...
    (each rank oldest first).
    """
    columns = _RANKED if fair else "run_id, owner, lease_epoch"
    sql = (
        f"SELECT {columns} FROM runs WHERE status = 'running' AND {_LEASE_FREE} "
        "AND (wake_at IS NULL OR wake_at <= ?)"
    )
    args: list[Any] = [owner, now, now]
    if agents is not None:
        sql += " AND agent IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(agents))
    if exclude:
        sql += " AND run_id NOT IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(exclude))
    if fair:
        sql = _FAIR.format(sql)
        args += [now, owner, json.dumps(exclude)]
    else:
        sql += " ORDER BY created_at, rowid LIMIT ?"
    args.append(limit)
    with transaction(conn):
        rows = conn.execute(sql, args).fetchall()
        return [
            (run_id, *_take(conn, run_id, previous, epoch, owner, until, held))
            for run_id, previous, epoch in rows
        ]


_RENEW = "UPDATE runs SET lease_until = ? WHERE owner = ? AND status != 'finished'"
_RENEW_ONE = (
    "UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ? AND status != 'finished'"
)


def renew_leases(
    conn: sqlite3.Connection, owner: str, until: float, run_ids: Collection[str] | None
) -> int:
    """Extend `owner`'s leases (of `run_ids` only, if given) to `until`; return how many."""
    with transaction(conn):
        if run_ids is None:
            renewed = int(conn.execute(_RENEW, (until, owner)).rowcount)
        else:
            rows = [(until, run_id, owner) for run_id in run_ids]
            renewed = int(conn.executemany(_RENEW_ONE, rows).rowcount)
        if renewed:  # the tenant holds made for the runs renewed live as long
            conn.execute(_RENEW_HOLDS, (until, owner, owner, until))
        return renewed


_RENEW_HOLDS = (
    "UPDATE tenant_holds SET until = ? WHERE owner = ? AND run_id IN "
    "(SELECT run_id FROM runs WHERE owner = ? AND lease_until = ? AND status != 'finished')"
)
"""Extend an owner's tenant holds on the runs whose leases were just renewed."""


# -- tenant budgets ------------------------------------------------------------------------------

_DAY = "SELECT tokens, cost_usd FROM tenant_days WHERE tenant = ? AND day = ?"
_HOLDS = (
    "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(cost_usd), 0.0) FROM tenant_holds "
    "WHERE tenant = ? AND day = ? AND until {} ?"
)
_EXPIRED, _LIVE = _HOLDS.format("<="), _HOLDS.format(">")


def _tenant_spend(conn: sqlite3.Connection, tenant: str, day: str, now: float) -> TenantSpend:
    row = conn.execute(_DAY, (tenant, day)).fetchone()
    expired = conn.execute(_EXPIRED, (tenant, day, now)).fetchone()
    live = conn.execute(_LIVE, (tenant, day, now)).fetchone()
    return TenantSpend.from_rows(tenant, day, row, expired, live)


def tenant_spend(conn: sqlite3.Connection, tenant: str, now: float) -> TenantSpend:
    """The tenant's day of `now`: spent (expired holds counted whole) and reserved."""
    return _tenant_spend(conn, tenant, tenant_day(now), now)


def reserve_tenant(
    conn: sqlite3.Connection, ask: TenantAsk, now: float, until: float
) -> TenantHold | TenantDenied:
    """Fold the day's expired holds into its spend, then hold what `ask` needs, if it fits.

    Inside the transaction of `tenant_jobs` (the write lock is held: no other process
    reads the day meanwhile).
    """
    day = tenant_day(now)
    spend = _tenant_spend(conn, ask.tenant, day, now)
    conn.execute(
        "DELETE FROM tenant_holds WHERE tenant = ? AND day = ? AND until <= ?",
        (ask.tenant, day, now),
    )
    conn.execute(
        "INSERT OR REPLACE INTO tenant_days (tenant, day, tokens, cost_usd) VALUES (?, ?, ?, ?)",
        (ask.tenant, day, spend.tokens, spend.cost_usd),
    )
    granted = tenant_grant(ask, spend)
    if isinstance(granted, TenantDenied):
        return granted
    output, tokens, cost = granted
    hold = TenantHold(uuid.uuid4().hex, ask.tenant, day, tokens, cost, output)
    conn.execute(
        "INSERT INTO tenant_holds (hold_id, tenant, day, tokens, cost_usd, owner, run_id, until) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (hold.hold_id, hold.tenant, day, tokens, cost, ask.owner, ask.run_id, until),
    )
    return hold


def settle_tenant(conn: sqlite3.Connection, hold: TenantHold, tokens: int, cost: float) -> bool:
    """Delete `hold` and add what the call used to its day; False if it was gone.

    Inside the transaction of `tenant_jobs`.
    """
    gone = conn.execute("DELETE FROM tenant_holds WHERE hold_id = ?", (hold.hold_id,))
    if gone.rowcount == 0:
        return False
    conn.execute(
        "INSERT INTO tenant_days (tenant, day, tokens, cost_usd) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (tenant, day) DO UPDATE SET tokens = tokens + excluded.tokens, "
        "cost_usd = cost_usd + excluded.cost_usd",
        (hold.tenant, hold.day, tokens, cost),
    )
    return True


def tenant_jobs(conn: sqlite3.Connection, jobs: list[Job]) -> list[Any]:
    """Run `reserve_tenant` / `settle_tenant` jobs in one transaction; their results."""
    with transaction(conn):
        return [job.fn(conn, *job.args) for job in jobs]


def heartbeat(conn: sqlite3.Connection, row: tuple[Any, ...], cutoff: float) -> None:
    """Insert or replace a worker's row, and delete the workers unseen since `cutoff`."""
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO workers "
            "(owner, host, pid, started_at, seen_at, max_active_runs, version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        conn.execute("DELETE FROM workers WHERE seen_at < ?", (cutoff,))


WORKERS = (
    "SELECT w.owner, w.host, w.pid, w.started_at, w.seen_at, w.max_active_runs, w.version, "
    "(SELECT COUNT(*) FROM runs r WHERE r.owner = w.owner AND r.status != 'finished' "
    "AND r.lease_until > ?) FROM workers w WHERE w.seen_at >= ? ORDER BY w.started_at, w.owner"
)
"""The live workers and their live leases (``now``, ``now - within_s``)."""


def execute_count(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    """Run one write statement in a transaction; return the rows it changed."""
    with transaction(conn):
        return int(conn.execute(sql, args).rowcount)


# -- blobs, breakers, retention ------------------------------------------------------------------


def put_blob(conn: sqlite3.Connection, data: bytes, now: float) -> str:
    """Store bytes by content, once; return their SHA-256 hex digest."""
    digest = hashlib.sha256(data).hexdigest()  # here: hashing releases the GIL off the loop
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, data, created_at) VALUES (?, ?, ?, ?)",
            (digest, len(data), data, now),
        )
    return digest


def get_blob(conn: sqlite3.Connection, digest: str) -> bytes | None:
    """Stored bytes by digest, or None."""
    row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else bytes(row[0])


def replace_breakers(conn: sqlite3.Connection, rows: list[tuple[str, str, float]]) -> None:
    """Replace every saved breaker state with `rows` (tool, state JSON, time)."""
    with transaction(conn):
        conn.execute("DELETE FROM breakers")
        conn.executemany("INSERT INTO breakers (tool, state, updated_at) VALUES (?, ?, ?)", rows)


def prune_some(conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Delete up to `limit` finished runs last updated before `cutoff`; return how many.

    The last round (fewer than `limit`) also drops blobs no run uses and early deliveries
    nobody waited for, when older than the cutoff.
    """
    with transaction(conn):
        ids = [
            (row[0],)
            for row in conn.execute(
                "SELECT run_id FROM runs WHERE status = 'finished' AND updated_at < ? LIMIT ?",
                (cutoff, limit),
            )
        ]
        for table in ("events", "gates", "waits", "blob_refs", "runs"):
            conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
        if len(ids) < limit:  # the last round: what no run uses any more
            conn.execute(
                "DELETE FROM blobs WHERE created_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM blob_refs WHERE blob_refs.digest = blobs.digest)",
                (cutoff,),
            )
            conn.execute("DELETE FROM waits WHERE run_id IS NULL AND delivered_at < ?", (cutoff,))
            first_day = tenant_day(cutoff)
            conn.execute("DELETE FROM tenant_days WHERE day < ?", (first_day,))
            conn.execute("DELETE FROM tenant_holds WHERE day < ?", (first_day,))
    return len(ids)


def vacuum(conn: sqlite3.Connection) -> None:
    """Rebuild the file without free pages, and truncate the write-ahead log."""
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def size_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in use: pages in use times the page size."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return (pages - free) * size
