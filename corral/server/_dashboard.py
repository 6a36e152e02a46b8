"""The dashboard, served by ``corral serve`` at ``/`` (being built: issue 15)."""

from __future__ import annotations

from fastapi import FastAPI

from ._service import Service

__all__ = ["install_dashboard"]


def install_dashboard(api: FastAPI, service: Service) -> None:
    """Add the dashboard's routes and assets to `api` (none yet)."""
