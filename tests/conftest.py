"""Shared fixtures. Tests run on asyncio via pytest-asyncio (asyncio_mode = auto)."""

import pytest


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No accidental spend: real model adapters refuse to reach a provider in tests.

    A test that passes its own client or transport (``httpx.MockTransport``) is unaffected.
    """
    import corral.models

    monkeypatch.setattr(corral.models, "ALLOW_MODEL_REQUESTS", False)
