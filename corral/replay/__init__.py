"""Record and replay: any journaled run is a cassette, re-run against the current code.

A run's journal holds every model response, tool result and gate decision it saw.
`replay` runs the recorded task again, in memory, through a `corral.Runtime` built from
the application as it is now (agents, router, guards, checks, approval policy) and the
current settings (limits, breakers), with the recording standing in for the model, the
tools and the people at its gates, and reports each `Divergence`: a call now refused
and by which check, a gate that now opens or no longer does, a limit that now stops the
run, a route that changed, another outcome, output or step count, a step or a call the
recording has no answer for. Nothing is written to the production journal; no real model,
tool body, status probe or alert is called.

Public:

* `Cassette`: a recorded run, from an export document (``corral export RUN_ID``), a
  file, or a journal and a run id;
* `replay(cassette, app=..., settings=...)` -> `ReplayReport` (async), and
  `replay_window(journal, app=..., since=...)` -> `WindowReport` for many runs;
* `Divergence`, `DivergenceKind`, `DIVERGENCE_KINDS`;
* `assert_replays` / `assert_replays_async`: a recorded run as a regression test;
* `CassetteModel`: the model that answers from a recording.

``corral replay`` and ``corral export`` are the command line (``_command``). This package
sits on top, beside `corral.cli` and `corral.server`: it may import anything in Corral,
and only the CLI imports it (lazily).
"""

from ._cassette import Cassette as Cassette
from ._play import CassetteModel as CassetteModel
from ._play import replay as replay
from ._play import replay_window as replay_window
from ._report import DIVERGENCE_KINDS as DIVERGENCE_KINDS
from ._report import Divergence as Divergence
from ._report import DivergenceKind as DivergenceKind
from ._report import ReplayReport as ReplayReport
from ._report import WindowReport as WindowReport
from ._testing import assert_replays as assert_replays
from ._testing import assert_replays_async as assert_replays_async

__all__ = [
    "DIVERGENCE_KINDS",
    "Cassette",
    "CassetteModel",
    "Divergence",
    "DivergenceKind",
    "ReplayReport",
    "WindowReport",
    "assert_replays",
    "assert_replays_async",
    "replay",
    "replay_window",
]
