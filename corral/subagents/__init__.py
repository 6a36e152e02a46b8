"""Sub-agents: small agents of at most five tools, and the loop one actor runs per run.

Public: `SubAgent`, `RunState` (a run's state as a fold over its events), and the
`RunActor` / `RunServices` the runtime wires together.
"""

from ._agent import DEFAULT_MAX_TOOLS as DEFAULT_MAX_TOOLS
from ._agent import SubAgent as SubAgent
from ._run import RunActor as RunActor
from ._run import RunServices as RunServices
from ._state import RunState as RunState
from ._state import render_payload as render_payload

__all__ = ["DEFAULT_MAX_TOOLS", "RunActor", "RunServices", "RunState", "SubAgent", "render_payload"]
