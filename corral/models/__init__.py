"""Models: the one-method protocol, provider adapters, and the fakes.

Public: `Model`, the request/response types, `ScriptedModel`, `FunctionModel`,
`ChaosModel` and the `call` / `reply` helpers for scripts, and token estimates.
"""

from ._fakes import ChaosModel as ChaosModel
from ._fakes import FunctionModel as FunctionModel
from ._fakes import ScriptedModel as ScriptedModel
from ._fakes import call as call
from ._fakes import reply as reply
from ._tokens import estimate_request_tokens as estimate_request_tokens
from ._tokens import estimate_tokens as estimate_tokens
from ._types import AssistantMessage as AssistantMessage
from ._types import Message as Message
from ._types import Model as Model
from ._types import ModelRequest as ModelRequest
from ._types import ModelResponse as ModelResponse
from ._types import StopReason as StopReason
from ._types import ToolCall as ToolCall
from ._types import ToolResultMessage as ToolResultMessage
from ._types import ToolSpec as ToolSpec
from ._types import Usage as Usage
from ._types import UserMessage as UserMessage

__all__ = [
    "AssistantMessage",
    "ChaosModel",
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ScriptedModel",
    "StopReason",
    "ToolCall",
    "ToolResultMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
    "call",
    "estimate_request_tokens",
    "estimate_tokens",
    "reply",
]
