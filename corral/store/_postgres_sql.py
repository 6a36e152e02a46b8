"""The PostgreSQL store's schema, its migrations, and the SQL of appending.

Everything lives in the schema ``corral`` of the database the URL names, so Corral's
tables never meet an application's own. ``corral.schema_version`` records each migration
applied (one row per version); opening a database runs every migration above its version
in one transaction, under a transaction-level advisory lock, so two processes opening a
new database cannot both migrate it and a failed migration changes nothing. A database
migrated by a newer Corral is refused with a `ConfigError`.

Appending is one statement: ``corral.append_events``, a PL/pgSQL function that inserts a
group commit's events and updates the index tables they imply (runs, gates, waits, blob
references, claims of new runs), in event order, inside the statement's own transaction.
It first checks the fences: each run the appending worker drives must still carry the
lease it claimed (owner and ``runs.lease_epoch``, which every claim but a store's renewal
of its own advances); the events of a run taken over are not written, and the function
returns it: a worker whose lease was taken over can no longer write to the run.
A batch of any size is then one round trip and one commit. The function reads the index
fields from each indexed event's JSON text (parsed as ``json``, not ``jsonb``, so any text
an event holds is accepted); the run status it keeps is the rule of
`corral.store._contract.run_status`, written in SQL.

Wake-ups (migration 3). Triggers send ``NOTIFY corral_wake`` in the transaction that
commits a change another worker may have to act on: an event ``gate_decided``,
``wait_resolved`` or ``run_finished`` (payload ``<kind> <run_id>``), and, at commit, a new
run that no worker claimed in it (``run_queued <run_id>``). PostgreSQL delivers them after
the commit, to every listening connection of the database; see
`corral.store.WakeupSource`.

Tenant budgets (migration 6): ``corral.tenant_days`` keeps what each tenant spent each
UTC day, ``corral.tenant_holds`` what calls in flight reserved; every transaction that
changes a day locks its row first, then the holds it touches in ``hold_id`` order (a lease
renewal locks run rows, then holds), so no two of them deadlock.

Never edit a released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = [
    "APPEND",
    "LOCK_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WAKE_CHANNEL",
    "PgMigration",
    "migrate",
]

LOCK_ID = 0x436F7272
"""The advisory lock taken while migrating ("Corr")."""


@dataclass(frozen=True, slots=True)
class PgMigration:
    """One step of the PostgreSQL schema."""

    version: int
    """The schema version after this step."""
    summary: str
    statements: tuple[str, ...]
    """SQL statements, run in order inside the migration transaction."""


_APPEND_FUNCTION = r"""
CREATE FUNCTION corral.append_events(
    p_run_ids text[], p_seqs integer[], p_kinds text[], p_ts double precision[],
    p_payloads text[], c_run_ids text[], c_owners text[], c_until double precision[],
    f_run_ids text[], f_owners text[], f_epochs bigint[]
) RETURNS TABLE (taken_run text, taken_holder text, taken_epoch bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    i integer;
    n integer := coalesce(array_length(p_run_ids, 1), 0);
    e json;
    k text;
    waiter text;
    taken text[] := '{}';
BEGIN
    IF coalesce(array_length(f_run_ids, 1), 0) > 0 THEN
        -- Fencing: a run this worker drives must still carry the lease (owner and epoch)
        -- it claimed; the events of a run taken over are not written, and the run is
        -- returned. The rows stay locked until the commit, so a takeover waits for it.
        PERFORM 1 FROM corral.runs WHERE run_id = ANY(f_run_ids) ORDER BY run_id FOR UPDATE;
        SELECT coalesce(array_agg(r.run_id), '{}') INTO taken
        FROM corral.runs r
        JOIN unnest(f_run_ids, f_owners, f_epochs) AS f(run_id, owner, epoch)
          ON r.run_id = f.run_id
        WHERE r.owner IS DISTINCT FROM f.owner OR r.lease_epoch <> f.epoch;
        RETURN QUERY SELECT r.run_id, r.owner, r.lease_epoch FROM corral.runs r
                     WHERE r.run_id = ANY(taken);
    END IF;
    INSERT INTO corral.events (run_id, seq, kind, ts, payload)
        SELECT * FROM unnest(p_run_ids, p_seqs, p_kinds, p_ts, p_payloads)
            AS u(run_id, seq, kind, ts, payload)
        WHERE NOT (u.run_id = ANY(taken));
    FOR i IN 1 .. n LOOP
        k := p_kinds[i];
        CONTINUE WHEN p_run_ids[i] = ANY(taken);
        CONTINUE WHEN k NOT IN ('run_started', 'gate_opened', 'gate_decided', 'wait_started',
                                'wait_resolved', 'run_finished', 'tool_call_finished');
        e := p_payloads[i]::json;
        IF k = 'run_started' THEN
            INSERT INTO corral.runs (run_id, agent, tenant, task, status, created_at,
                                     updated_at, last_seq)
            VALUES (p_run_ids[i], e->>'agent', e->>'tenant', e->>'task', 'running', p_ts[i],
                    p_ts[i], p_seqs[i]);
        ELSIF k = 'gate_opened' THEN
            INSERT INTO corral.gates (gate_id, run_id, call_id, tool, arguments, reason,
                                      status, created_at, expires_at, opened_seq)
            VALUES (e->>'gate_id', p_run_ids[i], e->>'call_id', e->>'tool',
                    (e->'arguments')::text, coalesce(e->>'reason', ''), 'open', p_ts[i],
                    (e->>'expires_at')::double precision, p_seqs[i]);
        ELSIF k = 'gate_decided' THEN
            UPDATE corral.gates SET status = e->>'decision', decided_by = e->>'by',
                note = e->>'note',
                decided_arguments = CASE WHEN json_typeof(e->'arguments') = 'null' THEN NULL
                                         ELSE (e->'arguments')::text END,
                decided_at = p_ts[i], decided_seq = p_seqs[i]
            WHERE gate_id = e->>'gate_id' AND status = 'open';
        ELSIF k = 'wait_started' THEN
            -- A delivery that came first (run_id NULL) is kept for this wait; a resolved
            -- wait on the key is replaced; another run's open wait refuses this one.
            SELECT w.run_id INTO waiter FROM corral.waits w
            WHERE w.key = e->>'key' AND w.run_id IS NOT NULL AND w.resolved_seq IS NULL;
            IF waiter IS NOT NULL AND waiter <> p_run_ids[i] THEN
                RAISE EXCEPTION 'another run (%) already waits on key %', waiter, e->>'key'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            INSERT INTO corral.waits AS w (key, run_id, created_at, expires_at, started_seq)
            VALUES (e->>'key', p_run_ids[i], p_ts[i], (e->>'expires_at')::double precision,
                    p_seqs[i])
            ON CONFLICT (key) DO UPDATE SET
                payload = CASE WHEN w.run_id IS NULL THEN w.payload END,
                delivered_at = CASE WHEN w.run_id IS NULL THEN w.delivered_at END,
                run_id = excluded.run_id, created_at = excluded.created_at,
                expires_at = excluded.expires_at, started_seq = excluded.started_seq,
                resolved_seq = NULL, resolved_at = NULL;
        ELSIF k = 'wait_resolved' THEN
            UPDATE corral.waits SET resolved_seq = p_seqs[i], resolved_at = p_ts[i]
            WHERE key = e->>'key' AND run_id = p_run_ids[i] AND resolved_seq IS NULL;
        ELSIF k = 'run_finished' THEN
            UPDATE corral.runs SET status = 'finished', outcome = e->>'outcome',
                updated_at = greatest(updated_at, p_ts[i]), owner = NULL,
                lease_until = NULL, wake_at = NULL
            WHERE run_id = p_run_ids[i];
        ELSIF k = 'tool_call_finished' THEN
            IF json_typeof(e->'result_blob') = 'string' THEN
                INSERT INTO corral.blob_refs (digest, run_id)
                VALUES (e->>'result_blob', p_run_ids[i]) ON CONFLICT DO NOTHING;
            END IF;
        END IF;
        IF k IN ('gate_opened', 'gate_decided', 'wait_started', 'wait_resolved') THEN
            -- the status rule of corral.store._contract.run_status
            UPDATE corral.runs r SET updated_at = greatest(r.updated_at, p_ts[i]),
                status = CASE
                    WHEN EXISTS (SELECT 1 FROM corral.gates g
                                 WHERE g.run_id = r.run_id AND g.status = 'open')
                      OR EXISTS (SELECT 1 FROM corral.waits w
                                 WHERE w.run_id = r.run_id AND w.resolved_seq IS NULL)
                    THEN 'waiting' ELSE 'running' END
            WHERE r.run_id = p_run_ids[i] AND r.status <> 'finished';
        END IF;
    END LOOP;
    UPDATE corral.runs r SET last_seq = greatest(r.last_seq, t.seq),
                             updated_at = greatest(r.updated_at, t.ts)
    FROM (SELECT u.run_id, max(u.seq) AS seq, max(u.ts) AS ts
          FROM unnest(p_run_ids, p_seqs, p_ts) AS u(run_id, seq, ts)
          WHERE NOT (u.run_id = ANY(taken)) GROUP BY u.run_id) t
    WHERE r.run_id = t.run_id;
    IF coalesce(array_length(c_run_ids, 1), 0) > 0 THEN
        -- the first lease of a run started in this batch: its epoch becomes 1
        UPDATE corral.runs r SET owner = c.owner, lease_until = c.until,
            lease_epoch = r.lease_epoch + 1
        FROM unnest(c_run_ids, c_owners, c_until) AS c(run_id, owner, until)
        WHERE r.run_id = c.run_id;
    END IF;
END
$fn$
"""

WAKE_CHANNEL = "corral_wake"
"""The channel every store LISTENs on: ``<kind> <run_id>`` per change that may wake a run
(see `corral.store.WakeupSource`), sent in the transaction that commits the change."""

_APPEND_FUNCTION_ORDERED = _APPEND_FUNCTION.replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
).replace(
    """BEGIN
    IF coalesce(array_length(f_run_ids, 1), 0) > 0 THEN
""",
    """BEGIN
    -- Every run row the batch updates is locked first, in run_id order, as lease
    -- renewals and claims lock theirs: two workers' commits never wait on each other in
    -- a cycle (PostgreSQL would abort one of them as a deadlock).
    PERFORM 1 FROM corral.runs WHERE run_id = ANY(p_run_ids) ORDER BY run_id FOR UPDATE;
    IF coalesce(array_length(f_run_ids, 1), 0) > 0 THEN
""",
    1,
)
"""`_APPEND_FUNCTION` as migration 5 replaces it (migration 1 keeps the text it shipped)."""
if _APPEND_FUNCTION_ORDERED.count("ORDER BY run_id FOR UPDATE") != 2:  # pragma: no cover
    raise AssertionError("the append function's lock order was not applied")


MIGRATIONS: tuple[PgMigration, ...] = (
    PgMigration(
        1,
        "the journal, its indexes, and the append function",
        (
            """CREATE TABLE corral.events (
                run_id text NOT NULL,
                seq integer NOT NULL,
                kind text NOT NULL,
                ts double precision NOT NULL,
                payload text NOT NULL,
                PRIMARY KEY (run_id, seq)
            )""",
            """CREATE TABLE corral.runs (
                run_id text PRIMARY KEY,
                ord bigint GENERATED ALWAYS AS IDENTITY,
                agent text NOT NULL,
                tenant text NOT NULL,
                task text NOT NULL,
                status text NOT NULL CHECK (status IN ('running', 'waiting', 'finished')),
                outcome text,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                owner text,
                lease_until double precision,
                lease_epoch bigint NOT NULL DEFAULT 0,
                wake_at double precision,
                last_seq integer NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX runs_created ON corral.runs (created_at, ord)",
            "CREATE INDEX runs_ready ON corral.runs (created_at, ord) WHERE status = 'running'",
            "CREATE INDEX runs_wake ON corral.runs (wake_at) WHERE wake_at IS NOT NULL",
            "CREATE INDEX runs_owner ON corral.runs (owner) WHERE owner IS NOT NULL",
            "CREATE INDEX runs_finished ON corral.runs (updated_at) WHERE status = 'finished'",
            """CREATE TABLE corral.gates (
                gate_id text PRIMARY KEY,
                ord bigint GENERATED ALWAYS AS IDENTITY,
                run_id text NOT NULL REFERENCES corral.runs (run_id),
                call_id text NOT NULL,
                tool text NOT NULL,
                arguments text NOT NULL,
                reason text NOT NULL,
                status text NOT NULL
                    CHECK (status IN ('open', 'approved', 'rejected', 'expired')),
                created_at double precision NOT NULL,
                expires_at double precision NOT NULL,
                decided_by text,
                note text,
                decided_arguments text,
                decided_at double precision,
                opened_seq integer NOT NULL,
                decided_seq integer
            )""",
            "CREATE INDEX gates_open_created ON corral.gates (created_at) WHERE status = 'open'",
            "CREATE INDEX gates_open_expiry ON corral.gates (expires_at) WHERE status = 'open'",
            "CREATE INDEX gates_run ON corral.gates (run_id, status)",
            """CREATE TABLE corral.waits (
                key text PRIMARY KEY,
                ord bigint GENERATED ALWAYS AS IDENTITY,
                run_id text REFERENCES corral.runs (run_id),
                created_at double precision NOT NULL,
                expires_at double precision,
                started_seq integer,
                payload text,
                delivered_at double precision,
                resolved_seq integer,
                resolved_at double precision
            )""",
            """CREATE INDEX waits_open ON corral.waits (run_id)
                WHERE run_id IS NOT NULL AND resolved_seq IS NULL""",
            """CREATE INDEX waits_open_expiry ON corral.waits (expires_at)
                WHERE run_id IS NOT NULL AND resolved_seq IS NULL""",
            "CREATE INDEX waits_run ON corral.waits (run_id)",
            """CREATE TABLE corral.blobs (
                digest text PRIMARY KEY,
                size bigint NOT NULL,
                data bytea NOT NULL,
                created_at double precision NOT NULL
            )""",
            """CREATE TABLE corral.blob_refs (
                digest text NOT NULL,
                run_id text NOT NULL,
                PRIMARY KEY (digest, run_id)
            )""",
            "CREATE INDEX blob_refs_run ON corral.blob_refs (run_id)",
            """CREATE TABLE corral.breakers (
                tool text PRIMARY KEY,
                state text NOT NULL,
                updated_at double precision NOT NULL
            )""",
            # the log is append-only: only retention may delete, and only finished runs
            """CREATE FUNCTION corral.events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                IF TG_OP = 'UPDATE' THEN
                    RAISE EXCEPTION 'events are append-only'
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                IF NOT EXISTS (SELECT 1 FROM corral.runs
                               WHERE runs.run_id = OLD.run_id AND runs.status = 'finished') THEN
                    RAISE EXCEPTION 'events of a run that has not finished cannot be deleted'
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN OLD;
            END
            $fn$""",
            """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON corral.events
                FOR EACH ROW EXECUTE FUNCTION corral.events_append_only()""",
            _APPEND_FUNCTION,
        ),
    ),
    PgMigration(
        2,
        "the registry of worker processes (corral workers)",
        (
            """CREATE TABLE corral.workers (
                owner text PRIMARY KEY,
                host text NOT NULL,
                pid integer NOT NULL,
                started_at double precision NOT NULL,
                seen_at double precision NOT NULL,
                max_active_runs integer,
                version text NOT NULL
            )""",
        ),
    ),
    PgMigration(
        3,
        "wake-ups across workers: NOTIFY corral_wake on decisions, deliveries, ends, queued runs",
        (
            f"""CREATE FUNCTION corral.notify_wake() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM pg_notify('{WAKE_CHANNEL}', NEW.kind || ' ' || NEW.run_id);
                RETURN NULL;
            END
            $fn$""",
            """CREATE TRIGGER events_wake AFTER INSERT ON corral.events FOR EACH ROW
                WHEN (NEW.kind IN ('gate_decided', 'wait_resolved', 'run_finished'))
                EXECUTE FUNCTION corral.notify_wake()""",
            # At commit (deferred): a new run nobody claimed in its first transaction
            # waits for a worker with room, which should hear of it now.
            f"""CREATE FUNCTION corral.notify_queued() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                IF EXISTS (SELECT 1 FROM corral.runs WHERE run_id = NEW.run_id
                           AND owner IS NULL AND status = 'running') THEN
                    PERFORM pg_notify('{WAKE_CHANNEL}', 'run_queued ' || NEW.run_id);
                END IF;
                RETURN NULL;
            END
            $fn$""",
            """CREATE CONSTRAINT TRIGGER runs_queued AFTER INSERT ON corral.runs
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                EXECUTE FUNCTION corral.notify_queued()""",
        ),
    ),
    PgMigration(
        4,
        "cancellations asked of the process driving a run",
        ("ALTER TABLE corral.runs ADD COLUMN cancel_request text",),
    ),
    PgMigration(
        5,
        "the append function locks every run row of its batch first, in run_id order",
        (_APPEND_FUNCTION_ORDERED,),
    ),
    PgMigration(
        6,
        "tenants' daily budgets, reserved across workers",
        (
            """CREATE TABLE corral.tenant_days (
                tenant text NOT NULL,
                day text NOT NULL,
                tokens bigint NOT NULL,
                cost_usd double precision NOT NULL,
                PRIMARY KEY (tenant, day)
            )""",
            """CREATE TABLE corral.tenant_holds (
                hold_id text PRIMARY KEY,
                tenant text NOT NULL,
                day text NOT NULL,
                tokens bigint NOT NULL,
                cost_usd double precision NOT NULL,
                owner text NOT NULL,
                run_id text NOT NULL,
                until double precision NOT NULL
            )""",
            "CREATE INDEX tenant_holds_day ON corral.tenant_holds (tenant, day)",
            "CREATE INDEX tenant_holds_owner ON corral.tenant_holds (owner, run_id)",
        ),
    ),
)
"""Every schema step, oldest first; step ``i`` takes the database from version ``i`` on."""

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The PostgreSQL schema version this code writes and reads."""

if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise AssertionError("migrations must be numbered 1, 2, ... without gaps")

APPEND = (
    "SELECT * FROM corral.append_events($1::text[], $2::integer[], $3::text[], "
    "$4::double precision[], $5::text[], $6::text[], $7::text[], $8::double precision[], "
    "$9::text[], $10::text[], $11::bigint[])"
)
"""Append a batch: its events' columns as arrays, the claims of new runs, the fences.

Returns a row ``(run_id, holder, epoch)`` per fenced run taken over (not written)."""

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS corral.schema_version (
    version integer PRIMARY KEY,
    summary text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def migrate(conn: Any, *, where: str) -> tuple[int, int]:
    """Bring the database up to `SCHEMA_VERSION` in one transaction.

    Args:
        conn: an asyncpg connection, outside any transaction.
        where: the database, for messages (its URL without the password).

    Returns:
        The versions before and after.

    Raises:
        ConfigError: the database has a newer schema than this code knows.
    """
    version = await _version(conn)
    _check_not_newer(version, where)
    if version == SCHEMA_VERSION:
        return version, version
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS corral")
        await conn.execute(_VERSION_TABLE)
        version = await _version(conn)  # another process may have migrated it meanwhile
        _check_not_newer(version, where)
        for migration in MIGRATIONS[version:]:
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO corral.schema_version (version, summary) VALUES ($1, $2)",
                migration.version,
                migration.summary,
            )
    return version, SCHEMA_VERSION


async def _version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('corral.schema_version') IS NOT NULL")
    if not exists:
        return 0
    found = await conn.fetchval("SELECT max(version) FROM corral.schema_version")
    return int(found or 0)


def _check_not_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{where} has Corral schema version {version}, newer than this Corral understands "
            f"({SCHEMA_VERSION}); upgrade Corral to open it"
        )
