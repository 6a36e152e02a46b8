"""Workflows: sequential chains, parallel fan-outs and human gates, written in code.

Public: `Workflow`, `Step` (with `Step.call`, `Step.agent`, `Step.gate`, `Step.wait`,
`Step.fan_out`), the engine's `WorkflowActor` / `WorkflowState`, and `WorkflowHost` (with
`ChildOutcome`): what the engine needs from the runtime hosting it.
"""

from ._engine import ChildOutcome as ChildOutcome
from ._engine import WorkflowActor as WorkflowActor
from ._engine import WorkflowHost as WorkflowHost
from ._engine import WorkflowState as WorkflowState
from ._workflow import AgentStep as AgentStep
from ._workflow import CallStep as CallStep
from ._workflow import FanOut as FanOut
from ._workflow import GateStep as GateStep
from ._workflow import Step as Step
from ._workflow import WaitStep as WaitStep
from ._workflow import Workflow as Workflow

__all__ = [
    "AgentStep",
    "CallStep",
    "ChildOutcome",
    "FanOut",
    "GateStep",
    "Step",
    "WaitStep",
    "Workflow",
    "WorkflowActor",
    "WorkflowHost",
    "WorkflowState",
]
