"""Models: the one-method protocol, provider adapters, prices, and the fakes.

Public: `Model`, the request/response types, `ScriptedModel`, `FunctionModel`,
`ChaosModel` and the `call` / `reply` helpers for scripts, token estimates, and the token
bounds budgets are reserved with (`token_bound`, `request_token_bound`; an adapter that
knows its tokenizer may offer ``count_tokens(request) -> int`` instead).

Real providers: `AnthropicModel` (the ``anthropic`` SDK), `OpenAICompatibleModel` (any
``/v1/chat/completions`` server over httpx), `model_from_string` to pick one from a string
such as ``anthropic:claude-sonnet-5-5``, and `PriceTable` / `Price` for the cost of a call.

`ALLOW_MODEL_REQUESTS`: set it to False (Corral's test suite does) and the real adapters
refuse to reach a provider unless the caller supplied the client or transport, so a test
can never spend money by accident.
"""

from ._anthropic import AnthropicModel as AnthropicModel
from ._fakes import ChaosModel as ChaosModel
from ._fakes import FunctionModel as FunctionModel
from ._fakes import ScriptedModel as ScriptedModel
from ._fakes import call as call
from ._fakes import reply as reply
from ._openai import OpenAICompatibleModel as OpenAICompatibleModel
from ._pricing import DEFAULT_PRICES as DEFAULT_PRICES
from ._pricing import PRICES_AS_OF as PRICES_AS_OF
from ._pricing import Price as Price
from ._pricing import PriceTable as PriceTable
from ._select import has_credentials as has_credentials
from ._select import model_from_string as model_from_string
from ._tokens import estimate_request_tokens as estimate_request_tokens
from ._tokens import estimate_tokens as estimate_tokens
from ._tokens import request_token_bound as request_token_bound
from ._tokens import token_bound as token_bound
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

ALLOW_MODEL_REQUESTS = True
"""Whether real adapters may reach a provider with a client they built themselves.

Set it to False in tests (``corral.models.ALLOW_MODEL_REQUESTS = False``): a request then
raises `corral.errors.UsageError` unless the adapter was given its client or transport.
"""

__all__ = [
    "ALLOW_MODEL_REQUESTS",
    "DEFAULT_PRICES",
    "PRICES_AS_OF",
    "AnthropicModel",
    "AssistantMessage",
    "ChaosModel",
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "OpenAICompatibleModel",
    "Price",
    "PriceTable",
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
    "has_credentials",
    "model_from_string",
    "reply",
    "request_token_bound",
    "token_bound",
]
