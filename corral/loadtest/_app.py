"""The load-test application that ``corral serve --app corral.loadtest:app`` serves."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..models import PriceTable
from ..runtime import App
from ._ledger import Ledger
from ._profiles import load_profile


def app(env: Mapping[str, str] | None = None) -> App:
    """The load-test application, for ``corral serve --app corral.loadtest:app``.

    Configured by environment variables: ``CORRAL_LOADTEST_PROFILE`` (a shipped profile's
    name or a TOML file; default ``production``) and ``CORRAL_LOADTEST_LEDGER`` (the file
    the chaos tools and model append the ledger to, as JSON lines; default
    ``loadtest-ledger.jsonl``). The harness's ``--ledger`` must name the same file.

    Args:
        env: the environment to read. Default: ``os.environ``.

    Returns:
        The application: the load test's agent on the chaos model, with prices.

    Raises:
        ConfigError: the profile cannot be loaded.
    """
    from ._workload import ChaosAgent, ChaosAgentModel, build_agent

    environ = os.environ if env is None else env
    profile = load_profile(environ.get("CORRAL_LOADTEST_PROFILE", "production"))
    ledger = Ledger(environ.get("CORRAL_LOADTEST_LEDGER", "loadtest-ledger.jsonl"))
    model = ChaosAgentModel(ChaosAgent(profile, ledger))
    return App(agents=[build_agent(profile, model, ledger)], cost=PriceTable.default().cost)
