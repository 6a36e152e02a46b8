"""A throwaway PostgreSQL cluster for the tests and benchmarks that need one.

`Cluster.start` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<n>/bin`` (else
``pg_config --bindir``, else ``PATH``) in a temporary directory: it listens on 127.0.0.1
on a free port and on a unix socket in that directory, with password authentication for
the user ``corral`` (password `PASSWORD`). ``fsync`` is off when asked (tests only: a
crash of the machine could corrupt it, which a throwaway cluster does not mind). As root
(CI), initdb refuses to run, so the cluster runs as the unprivileged ``postgres`` user
(else ``nobody``), owning its directory.

When ``CORRAL_TEST_PG_URL`` is set, `external_url` returns it and the tests create their
databases there instead (tests that stop and start a server still start their own).
Nothing here skips: missing binaries raise `PostgresUnavailable`, whose message says how
to install them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from corral import ToolContext

USER = "corral"
PASSWORD = "s3cret-pw"
ENV_URL = "CORRAL_TEST_PG_URL"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries cannot be found or run."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: the newest /usr/lib/postgresql, pg_config, PATH."""
    for candidate in sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    ):
        return Path(candidate).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(found.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
        "apt-get install postgresql (Debian/Ubuntu; .ci/run does it), or set "
        f"{ENV_URL}=postgresql://user:password@host:port/database to use a running server"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def external_url() -> str | None:
    """``CORRAL_TEST_PG_URL`` when set."""
    return os.environ.get(ENV_URL) or None


def with_database(url: str, database: str) -> str:
    """`url` naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def fresh_name() -> str:
    """A new database name."""
    return "corral_test_" + uuid.uuid4().hex[:12]


class Cluster:
    """A PostgreSQL cluster in a temporary directory, stopped and removed by `destroy`."""

    def __init__(self, bindir: Path, root: Path, port: int, runas: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self.port = port
        self.runas = runas

    @classmethod
    def start(cls, *, fsync: bool = False) -> Cluster:
        """Create and start a cluster (see the module docstring).

        Raises:
            PostgresUnavailable: no binaries, or initdb or pg_ctl failed (with their output).
        """
        bindir = find_bindir()
        runas: str | None = None
        root = Path(tempfile.mkdtemp(prefix="corral-pg-"))
        if os.geteuid() == 0:
            runas = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
            if runas is None:
                raise PostgresUnavailable("running as root and no unprivileged user to run initdb")
            entry = pwd.getpwnam(runas)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(bindir, root, free_port(), runas)
        try:
            cluster._init(fsync=fsync)
            cluster.start_server()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.runas is not None:
            command = ["runuser", "-u", self.runas, "--", *command]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=120, cwd=self.root
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{args[0]} could not run: {exc}") from exc
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}"
            )
        return done

    def _init(self, *, fsync: bool) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self.sockets.mkdir()
        if self.runas is not None:
            entry = pwd.getpwnam(self.runas)
            for path in (pwfile, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.sockets}'",
            "max_connections = 200",
            f"fsync = {'on' if fsync else 'off'}",
            "full_page_writes = " + ("on" if fsync else "off"),
        ]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n" + "\n".join(settings) + "\n")

    def start_server(self) -> None:
        """Start the server (again), waiting until it accepts connections."""
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log))

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` disconnects every client at once."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    def url(self, database: str = "postgres", *, password: str = PASSWORD) -> str:
        """A URL for `database` over TCP on 127.0.0.1."""
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        """Stop the server (if running) and remove the directory."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop_server("immediate")
            except PostgresUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def create_database(admin_url: str, name: str) -> str:
    """Create database `name` through `admin_url`; return its URL."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever is still on it."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# -- a worker to kill ---------------------------------------------------------------------------


def takeover_answer(request: object) -> object:
    """The model of the takeover test: look ORD-7 up, then answer with what was found."""
    from corral.models import ToolResultMessage, call

    last = request.messages[-1]  # type: ignore[attr-defined]
    if isinstance(last, ToolResultMessage):
        return f"found {last.content}"
    return call("lookup", order_id="ORD-7")


async def crash_worker(url: str, marker: str) -> None:
    """Worker ``A``: submit one run whose tool call writes the run id to `marker`, then hangs.

    The test kills this process with SIGKILL while it holds the run's lease.
    """
    import anyio

    from corral import Durability, Runtime, SubAgent, tool
    from corral.models import FunctionModel
    from corral.store import PostgresStore

    @tool(timeout=600)
    async def lookup(order_id: str, ctx: ToolContext) -> str:
        """Look an order up (never returns here)."""
        Path(marker).write_text(ctx.run_id)
        await anyio.sleep_forever()
        return ""

    agent = SubAgent(
        "orders", instructions="x", tools=[lookup], model=FunctionModel(takeover_answer)
    )
    async with PostgresStore(url) as store:
        durability = Durability(poll_interval_s=None, lease_s=30, owner="A")
        async with Runtime(agents=[agent], journal=store, durability=durability) as runtime:
            await runtime.submit("look up ORD-7")
            await anyio.sleep_forever()


if __name__ == "__main__":
    import sys

    import anyio

    if sys.argv[1:2] == ["crash-worker"]:
        anyio.run(crash_worker, sys.argv[2], sys.argv[3])
