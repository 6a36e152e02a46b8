"""Tools: functions the model may call, with strict schemas, side-effect levels and policies.

`RetryPolicy` lives with the retry engine (`corral._retry`) and is re-exported here.
`corral.tools.mcp` (tools from Model Context Protocol servers) needs the ``mcp`` extra and
is not imported here.
"""

from .._retry import RetryPolicy as RetryPolicy
from ._tool import SIDE_EFFECTS as SIDE_EFFECTS
from ._tool import Done as Done
from ._tool import NotDone as NotDone
from ._tool import Probe as Probe
from ._tool import ProbeAnswer as ProbeAnswer
from ._tool import SchemaViolation as SchemaViolation
from ._tool import SideEffect as SideEffect
from ._tool import Tool as Tool
from ._tool import ToolContext as ToolContext
from ._tool import Unknown as Unknown
from ._tool import WaitFor as WaitFor
from ._tool import retry_after_from_response as retry_after_from_response
from ._tool import tool as tool

__all__ = [
    "SIDE_EFFECTS",
    "Done",
    "NotDone",
    "Probe",
    "ProbeAnswer",
    "RetryPolicy",
    "SchemaViolation",
    "SideEffect",
    "Tool",
    "ToolContext",
    "Unknown",
    "WaitFor",
    "retry_after_from_response",
    "tool",
]
