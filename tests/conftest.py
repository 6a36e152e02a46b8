"""Shared fixtures. Tests run on asyncio via pytest-asyncio (asyncio_mode = auto)."""
