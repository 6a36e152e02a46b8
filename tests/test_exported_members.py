"""The public surface of each public package is its ``__all__``, and ``__all__`` is pinned.

As httpx's ``tests/test_exported_members.py``: every public name a package defines or
imports (``vars()`` minus modules and private names) is in its ``__all__`` and nothing
else is, so a name cannot become public by accident; and each ``__all__`` is written out
below, so a change to the public surface shows in review.
"""

from __future__ import annotations
import __future__

import importlib
from types import ModuleType

import pytest

PINNED: dict[str, list[str]] = {
    "corral": [
        "Alerts",
        "App",
        "BreakerPolicy",
        "Clock",
        "Durability",
        "Guards",
        "Limits",
        "MockClock",
        "RetryPolicy",
        "Route",
        "Router",
        "Rule",
        "RunHandle",
        "RunResult",
        "Runtime",
        "Settings",
        "SubAgent",
        "SystemClock",
        "Task",
        "Tenants",
        "Tool",
        "ToolContext",
        "load_settings",
        "tool",
    ],
    "corral.guardrails": [
        "ALLOW",
        "ALL_KINDS",
        "DEFAULT_APPROVAL",
        "PERSONAL_KINDS",
        "SECRET_KINDS",
        "STRIP_MARKER",
        "AllowedValues",
        "Allowlist",
        "ApprovalCheck",
        "ApprovalDecision",
        "ApprovalPolicy",
        "ApprovalRule",
        "ArgumentOrigin",
        "ArgumentPolicy",
        "ArgumentRule",
        "ArgumentsParsedCheck",
        "CallCheck",
        "CallContext",
        "ChainVerdict",
        "CheckChain",
        "Decision",
        "FilteredResult",
        "InjectionAction",
        "InjectionCategory",
        "InjectionDetector",
        "InjectionFinding",
        "InjectionGuard",
        "InjectionPattern",
        "InjectionReport",
        "InputPolicy",
        "InputScreen",
        "NoPathTraversal",
        "NoSQLFragments",
        "Origin",
        "PIIDetector",
        "PIIFinding",
        "PIIKind",
        "Pattern",
        "PermissionCheck",
        "PermissionPolicy",
        "PolicyCheck",
        "ProposedCall",
        "ProvenanceCheck",
        "ProvenancePolicy",
        "Range",
        "RegisteredCheck",
        "ResultScreen",
        "SchemaCheck",
        "ScopePolicy",
        "ScreenResult",
        "SourceKind",
        "SourceRule",
        "Sources",
        "Verdict",
        "check_arguments_parsed",
        "check_permission",
        "check_policies",
        "check_registered",
        "check_schema",
        "default_patterns",
        "filter_result",
        "iban_valid",
        "input_policy_from_callable",
        "load_patterns",
        "luhn_valid",
        "normalize_text",
        "policy_from_callable",
        "redact_secrets",
        "scope_covers",
        "ssn_valid",
        "trace_arguments",
    ],
    "corral.store": [
        "DEFAULT_DB_URL",
        "SCHEMA_VERSION",
        "Blobs",
        "EventLog",
        "GateRecord",
        "Journal",
        "Leases",
        "MemoryJournal",
        "RunIndex",
        "RunInfo",
        "RunRow",
        "RunStatus",
        "SqliteJournal",
        "SqliteStore",
        "StoreStatistics",
        "Upkeep",
        "WaitRecord",
        "WaitRow",
        "check_not_expired",
        "gate_expired",
        "journal_from_url",
        "open_store",
        "run_status",
        "store_url",
    ],
    "corral.models": [
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
    ],
    "corral.supervisor": [
        "DEFAULT_GATE_TTL_S",
        "BreakerPolicy",
        "BreakerState",
        "Limits",
        "Supervisor",
        "TenantLimits",
        "TenantUsage",
        "UsageSnapshot",
    ],
    "corral.runtime": [
        "Alerts",
        "App",
        "Durability",
        "Guards",
        "RunHandle",
        "RunResult",
        "Runtime",
        "Tenants",
        "load_app",
    ],
    "corral.errors": [
        "ActorDeadError",
        "ActorError",
        "AskTimeoutError",
        "BudgetExceeded",
        "CallError",
        "CircuitOpen",
        "ConfigError",
        "CorralError",
        "GateExpired",
        "JournalError",
        "LoopDetected",
        "MailboxFullError",
        "ModelContractError",
        "ModelError",
        "ModelTimeout",
        "RateLimited",
        "RoutingError",
        "RunCancelled",
        "RunError",
        "StepLimitExceeded",
        "ToolError",
        "ToolTimeout",
        "UsageError",
    ],
    "corral.events": [
        "OUTCOMES",
        "TERMINAL_OUTCOMES",
        "BudgetReserved",
        "BudgetSettled",
        "CallReconciled",
        "Event",
        "EventAdapter",
        "GateDecided",
        "GateOpened",
        "GuardrailVerdict",
        "ModelCalled",
        "ModelFailed",
        "Outcome",
        "ReconcileAnswer",
        "ResponseRecord",
        "RunFinished",
        "RunStarted",
        "StepFailed",
        "StepFinished",
        "StepStarted",
        "ToolCallFailed",
        "ToolCallFinished",
        "ToolCallProposed",
        "ToolCallRecord",
        "ToolCallRejected",
        "ToolCallStarted",
        "UsageRecord",
        "WaitResolved",
        "WaitStarted",
    ],
    "corral.server": [
        "ApiError",
        "Principal",
        "Server",
        "ServerSettings",
        "Service",
        "TokenSpec",
        "WebhookSpec",
        "create_app",
        "hash_token",
        "new_token",
        "serve",
        "sign_standard",
    ],
    "corral.observability": [
        "Metrics",
        "OtelSpans",
        "TrailRow",
        "TrailWriter",
        "add_log_context",
        "configure_json_logs",
        "json_formatter",
        "render_trace",
        "trace_tree",
        "trail_row",
    ],
}


def _public(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and not isinstance(value, __future__._Feature)
    )


PACKAGES = [
    "corral",
    "corral.guardrails",
    "corral.models",
    "corral.runtime",
    "corral.store",
    "corral.supervisor",
    "corral.tools",
    "corral.workflows",
    "corral.actors",
    "corral.router",
    "corral.subagents",
    "corral.server",
    "corral.observability",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == _public(module)


@pytest.mark.parametrize("name", ["corral.errors", "corral.events"])
def test_every_class_a_public_module_defines_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    defined = sorted(
        n
        for n, v in vars(module).items()
        if isinstance(v, type) and v.__module__ == name and not n.startswith("_")
    )
    assert sorted(set(defined) - set(module.__all__)) == []
    assert all(hasattr(module, n) for n in module.__all__)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_public_surface_is_pinned(name: str) -> None:
    assert importlib.import_module(name).__all__ == PINNED[name]
