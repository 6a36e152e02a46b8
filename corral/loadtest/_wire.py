"""The chaos model behind a real socket: a loopback provider speaking the Anthropic Messages API.

With ``corral loadtest --wire anthropic`` the harness serves the chaos model's decisions
from an HTTP/1.1 server on 127.0.0.1 (a free port), inside the harness's own task group,
and points Corral's real `corral.models.AnthropicModel` at it: requests go through the
``anthropic`` SDK and httpx over TCP, and the injected faults are real HTTP answers
(``429`` with ``Retry-After``, ``529 overloaded_error``, ``500``, ``503``, an answer that
never comes). So the load test covers the adapter, its error mapping and its connection
pool, not only the agent loop.

The server is deliberately small (keep-alive, ``Content-Length`` bodies, one request at a
time per connection, which is what httpx sends); it is not a general HTTP server.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from ..models import (
    AnthropicModel,
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)
from ._workload import CHAOS_MODEL_NAME, ChaosAgent

__all__ = ["LoopbackProvider", "anthropic_model", "decode_anthropic", "encode_anthropic"]

_ERROR_TYPES = {
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_REASONS = {
    200: "OK",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


def decode_anthropic(body: dict[str, Any]) -> ModelRequest:
    """The `ModelRequest` a Messages API body carries (as the provider reads it).

    Args:
        body: the decoded JSON body of ``POST /v1/messages``.

    Returns:
        The request: system prompt, conversation and tools.
    """
    system = body.get("system", "")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    names: dict[str, str] = {}
    messages: list[Message] = []
    for message in body.get("messages", []):
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            if role == "user":
                messages.append(UserMessage(content=content))
            else:
                messages.append(AssistantMessage(text=content))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content or []:
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "tool_use":
                names[block["id"]] = block["name"]
                calls.append(
                    ToolCall(id=block["id"], name=block["name"], arguments=block.get("input") or {})
                )
            elif kind == "tool_result":
                result = block.get("content", "")
                if isinstance(result, list):
                    result = "".join(b.get("text", "") for b in result if isinstance(b, dict))
                call_id = str(block.get("tool_use_id", ""))
                messages.append(
                    ToolResultMessage(
                        call_id=call_id,
                        tool=names.get(call_id, ""),
                        content=str(result),
                        is_error=bool(block.get("is_error", False)),
                    )
                )
        if role == "assistant":
            messages.append(AssistantMessage(text="".join(texts), tool_calls=tuple(calls)))
        elif texts:
            messages.append(UserMessage(content="".join(texts)))
    tools = tuple(
        ToolSpec(
            name=t["name"], description=t.get("description", ""), input_schema=t["input_schema"]
        )
        for t in body.get("tools", [])
    )
    return ModelRequest(
        system=str(system),
        messages=tuple(messages),
        tools=tools,
        max_tokens=int(body.get("max_tokens", 4096)),
    )


_message_ids = itertools.count(1)


def encode_anthropic(response: ModelResponse) -> dict[str, Any]:
    """A Messages API response body for one of the chaos model's answers."""
    content: list[dict[str, Any]] = []
    if response.text:
        content.append({"type": "text", "text": response.text})
    for call in response.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return {
        "id": f"msg_loadtest_{next(_message_ids)}",
        "type": "message",
        "role": "assistant",
        "model": response.model or CHAOS_MODEL_NAME,
        "content": content,
        "stop_reason": response.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
        },
    }


class LoopbackProvider:
    """An Anthropic-compatible provider on 127.0.0.1 answering from a `ChaosAgent`.

    Use `LoopbackProvider.running` to start it inside a task group::

        async with LoopbackProvider.running(agent) as provider:
            model = anthropic_model(provider.url)

    Args:
        agent: the chaos model's decisions.
    """

    def __init__(self, agent: ChaosAgent) -> None:
        self.agent = agent
        self.port = 0
        self.requests = 0
        """Model requests received."""
        self.statuses: dict[int, int] = {}
        """How many answers of each HTTP status were sent."""

    @property
    def url(self) -> str:
        """The base URL to give the adapter."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @asynccontextmanager
    async def running(cls, agent: ChaosAgent) -> AsyncIterator[LoopbackProvider]:
        """Serve on a free loopback port until the block ends (hanging answers are cut)."""
        provider = cls(agent)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        provider.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, provider._connection, tg)
                try:
                    yield provider
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        buffer = b""
        try:
            async with stream:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive(65_536)
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    method, path = lines[0].split(" ")[:2]
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    length = int(headers.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += await stream.receive(65_536)
                    body, buffer = buffer[:length], buffer[length:]
                    status, extra, payload = await self._answer(method, path, body)
                    await stream.send(_http(status, extra, payload))
                    self.statuses[status] = self.statuses.get(status, 0) + 1
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return

    async def _answer(
        self, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method != "POST" or not path.startswith("/v1/messages"):
            return (
                404,
                {},
                json.dumps(
                    {
                        "type": "error",
                        "error": {
                            "type": "not_found_error",
                            "message": f"no route {method} {path}",
                        },
                    }
                ).encode(),
            )
        self.requests += 1
        request = decode_anthropic(json.loads(body))
        decision = self.agent.decide(request)
        if decision.delay_s > 0:
            await anyio.sleep(decision.delay_s)
        if decision.kind == "hang":
            # A hang never answers: by now the client has given up on this connection.
            raise anyio.EndOfStream
        if decision.kind in ("rate_limit", "error"):
            status = decision.status
            headers = {}
            if status == 429:
                headers["retry-after"] = f"{decision.retry_after_s:g}"
            error = {
                "type": "error",
                "error": {
                    "type": _ERROR_TYPES.get(status, "api_error"),
                    "message": f"chaos: {status} {_REASONS.get(status, '')}",
                },
            }
            return status, headers, json.dumps(error).encode()
        payload = json.dumps(encode_anthropic(decision.response)).encode()
        self.agent.answered(decision)
        return 200, {}, payload


def _http(status: int, headers: dict[str, str], payload: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    lines.append("content-type: application/json")
    lines.append(f"content-length: {len(payload)}")
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def anthropic_model(base_url: str, *, connections: int = 100) -> tuple[AnthropicModel, Any]:
    """Corral's real Anthropic adapter pointed at a loopback provider.

    Args:
        base_url: the provider's URL.
        connections: the connection pool's size (at least the run concurrency).

    Returns:
        The adapter, and the SDK's HTTP client it uses (close it with ``aclose()``).
    """
    import anthropic  # imported here: the SDK takes about a second to import

    # The SDK's own HTTP client class (anthropic 2.x ships its httpx as ``httpx2``).
    sdk_http = importlib.import_module(
        next(
            c.__module__.split(".")[0]
            for c in anthropic.DefaultAsyncHttpxClient.__mro__
            if c.__name__ == "AsyncClient"
        )
    )
    client = anthropic.DefaultAsyncHttpxClient(
        limits=sdk_http.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=sdk_http.Timeout(30.0),
    )
    model = AnthropicModel(
        CHAOS_MODEL_NAME, base_url=base_url, api_key="loadtest-key", http_client=client
    )
    return model, client
