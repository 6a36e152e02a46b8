"""Shared fixtures. Tests run on asyncio via pytest-asyncio (asyncio_mode = auto)."""

from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No accidental spend: real model adapters refuse to reach a provider in tests.

    A test that passes its own client or transport (``httpx.MockTransport``) is unaffected.
    """
    import corral.models

    monkeypatch.setattr(corral.models, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A PostgreSQL URL with the right to create databases: ``CORRAL_TEST_PG_URL``, or one
    throwaway cluster's for the whole session (it fails, never skips, when none starts)."""
    from tests._postgres import Cluster, external_url

    given = external_url()
    if given is not None:
        yield given
        return
    cluster = Cluster.start()
    try:
        yield cluster.url()
    finally:
        cluster.destroy()


@pytest.fixture
async def pg_url(pg_admin: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    from tests._postgres import create_database, drop_database, fresh_name

    name = fresh_name()
    url = await create_database(pg_admin, name)
    try:
        yield url
    finally:
        await drop_database(pg_admin, name)
