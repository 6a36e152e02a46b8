"""The demo: invoice reconciliation by a `billing` sub-agent, plus a small `support` agent.

The billing agent's model is scripted but reactive: it reads the tool results and errors
Corral feeds back and decides its next call from them, the way a real model would. Along
the way it meets what production throws at agents: the invoice search answers 429 once,
the model sends a malformed invoice id and corrects it from the validation error, then
calls a tool that does not exist and corrects itself from the list of tools that do.

Use `billing_agent(model)` to run the same agent on a real model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from .errors import RateLimited, ToolError
from .models import FunctionModel, Model, ModelRequest, ToolResultMessage, UserMessage
from .models._fakes import Step, call
from .router import Router, Rule
from .runtime import App
from .subagents import SubAgent
from .tools import RetryPolicy, Tool, tool

__all__ = [
    "BILLING_INSTRUCTIONS",
    "App",
    "app",
    "DEMO_TASK",
    "InvoiceBook",
    "billing_agent",
    "demo_router",
    "scripted_billing_model",
    "scripted_support_model",
    "support_agent",
]

DEMO_TASK = (
    "Reconcile the unpaid invoices of customer Acme Corp: check every invoice total against "
    "its line items and flag each discrepancy."
)

BILLING_INSTRUCTIONS = """You are the billing reconciliation agent.
For the customer named in the task: search its unpaid invoices, fetch each one, recompute
its total with calculate_invoice (invoice ids look like INV-000123; currency is USD, EUR or
GBP), and call flag_discrepancy for every invoice whose recorded total is wrong.
Finish with a short report listing each discrepancy and its amount."""

SUPPORT_INSTRUCTIONS = """You are the customer-support agent. Look up the account named in
the request and the knowledge base, then answer in two or three sentences."""

Currency = Literal["USD", "EUR", "GBP"]
_INVOICE_ID = {"type": "string", "pattern": "^INV-[0-9]{6}$"}
"""JSON Schema of an invoice id, shared by the tools that take one."""


@dataclass
class _Invoice:
    invoice_id: str
    customer: str
    currency: Currency
    status: Literal["paid", "unpaid"]
    recorded_total: Decimal
    lines: list[tuple[str, int, Decimal]]

    def computed_total(self) -> Decimal:
        return sum((qty * price for _, qty, price in self.lines), Decimal("0"))

    def summary(self) -> dict[str, Any]:
        return {
            "invoice_id": self.invoice_id,
            "customer": self.customer,
            "currency": self.currency,
            "status": self.status,
            "recorded_total": float(self.recorded_total),
        }


def _demo_invoices() -> dict[str, _Invoice]:
    d = Decimal
    invoices = [
        _Invoice(
            "INV-000101",
            "Acme Corp",
            "USD",
            "unpaid",
            d("1250.00"),
            [("Consulting hours", 10, d("120.00")), ("Travel", 1, d("50.00"))],
        ),
        _Invoice(
            "INV-000102",
            "Acme Corp",
            "USD",
            "unpaid",
            d("1235.00"),
            [("Licences", 5, d("199.00")), ("Support plan", 1, d("200.00"))],
        ),
        _Invoice(
            "INV-000103",
            "Acme Corp",
            "EUR",
            "unpaid",
            d("945.00"),
            [("Hosting, monthly", 12, d("80.00"))],
        ),
        _Invoice(
            "INV-000104", "Acme Corp", "GBP", "paid", d("300.00"), [("Workshop", 1, d("300.00"))]
        ),
        _Invoice(
            "INV-000201", "Globex", "USD", "unpaid", d("80.00"), [("Support plan", 1, d("80.00"))]
        ),
    ]
    return {i.invoice_id: i for i in invoices}


@dataclass
class InvoiceBook:
    """The demo's in-memory invoice system, with an API that rate-limits its first search.

    Attributes:
        flags: every discrepancy flagged, in order (the side effect to audit).
        calls: how many times each tool function really ran.
    """

    invoices: dict[str, _Invoice] = field(default_factory=_demo_invoices)
    rate_limit_first_search: bool = True
    retry_after: float = 0.2
    flags: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def tools(self, *, retry: RetryPolicy | None = None) -> list[Tool]:
        """Build the four billing tools over this book."""
        retry = retry or RetryPolicy(initial_delay=0.05, multiplier=4.0, max_retries=3)
        book = self

        @tool(timeout=5.0, retry=retry)
        async def search_invoices(
            customer: str, status: Literal["paid", "unpaid", "any"] = "any"
        ) -> list[dict[str, Any]]:
            """Search invoices by customer name and status; returns their ids and totals."""
            book._count("search_invoices")
            if book.rate_limit_first_search:
                book.rate_limit_first_search = False
                raise RateLimited(
                    "invoice API: 429 Too Many Requests", retry_after=book.retry_after
                )
            wanted = customer.strip().lower()
            return [
                inv.summary()
                for inv in book.invoices.values()
                if inv.customer.lower() == wanted and status in ("any", inv.status)
            ]

        @tool(
            timeout=5.0,
            retry=retry,
            schema={
                "type": "object",
                "properties": {"invoice_id": _INVOICE_ID},
                "required": ["invoice_id"],
            },
        )
        async def get_invoice(invoice_id: str) -> dict[str, Any]:
            """Fetch one invoice with its line items."""
            book._count("get_invoice")
            inv = book.invoices.get(invoice_id)
            if inv is None:
                raise ToolError(f"no invoice {invoice_id}", retryable=False)
            return {
                **inv.summary(),
                "lines": [
                    {"item": item, "quantity": qty, "unit_price": float(price)}
                    for item, qty, price in inv.lines
                ],
            }

        @tool(
            timeout=5.0,
            retry=retry,
            schema={
                "type": "object",
                "properties": {
                    "invoice_id": _INVOICE_ID,
                    "amount": {"type": "number", "minimum": 0},
                    "currency": {"enum": ["USD", "EUR", "GBP"]},
                },
                "required": ["invoice_id", "amount", "currency"],
            },
        )
        async def calculate_invoice(
            invoice_id: str, amount: float, currency: str
        ) -> dict[str, Any]:
            """Recompute an invoice's total from its line items and compare it with `amount`."""
            book._count("calculate_invoice")
            inv = book.invoices.get(invoice_id)
            if inv is None:
                raise ToolError(f"no invoice {invoice_id}", retryable=False)
            if currency != inv.currency:
                raise ToolError(
                    f"{invoice_id} is in {inv.currency}, not {currency}", retryable=False
                )
            computed = inv.computed_total()
            difference = Decimal(str(amount)) - computed
            return {
                "invoice_id": invoice_id,
                "recorded_total": amount,
                "computed_total": float(computed),
                "difference": float(difference),
                "currency": currency,
                "matches": difference == 0,
            }

        @tool(side_effect="write", scopes={"invoices:write"}, timeout=5.0, retry=retry)
        async def flag_discrepancy(
            invoice_id: str, difference: float, reason: str
        ) -> dict[str, Any]:
            """Flag an invoice whose recorded total is wrong, for the finance team."""
            book._count("flag_discrepancy")
            flag = {
                "flag_id": f"FLAG-{len(book.flags) + 1}",
                "invoice_id": invoice_id,
                "difference": difference,
                "reason": reason,
            }
            book.flags.append(flag)
            return flag

        return [search_invoices, get_invoice, calculate_invoice, flag_discrepancy]


def _results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


def _json(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def scripted_billing_model() -> FunctionModel:
    """The demo's reactive scripted model for the billing agent.

    It decides each call from what it has been told so far, so it also works when a
    step fails in a way the script did not plan.
    """

    def respond(request: ModelRequest) -> Step:
        results = _results(request)
        last = results[-1] if results else None
        task = next(m.content for m in request.messages if isinstance(m, UserMessage))
        customer_match = re.search(r"customer\s+([A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*)*)", task)
        customer = customer_match.group(1) if customer_match else "Acme Corp"

        # What do we know? Invoices found, fetched, checked, flagged.
        found: list[dict[str, Any]] = []
        fetched: dict[str, dict[str, Any]] = {}
        checked: dict[str, dict[str, Any]] = {}
        flagged: set[str] = set()
        asked_unknown = False
        for r in results:
            data = _json(r.content)
            if r.tool == "search_invoices" and isinstance(data, list):
                found = data
            elif r.tool == "get_invoice" and isinstance(data, dict) and "lines" in data:
                fetched[data["invoice_id"]] = data
            elif r.tool == "calculate_invoice" and isinstance(data, dict):
                checked[data["invoice_id"]] = data
            elif r.tool == "flag_discrepancy" and isinstance(data, dict):
                flagged.add(data["invoice_id"])
            elif r.tool == "lookup_exchange_rate":
                asked_unknown = True

        if last is not None and last.is_error and "Invalid arguments" in last.content:
            # Correct a malformed invoice id from the validation error.
            bad = next(
                c
                for m in reversed(request.messages)
                if hasattr(m, "tool_calls")
                for c in m.tool_calls
                if c.id == last.call_id
            )
            args = dict(bad.arguments)
            digits = re.sub(r"\D", "", str(args.get("invoice_id", "")))
            args["invoice_id"] = f"INV-{int(digits or 0):06d}"
            return call(bad.name, **args)
        if not found:
            return call("search_invoices", customer=customer, status="unpaid")
        for inv in found:
            iid = inv["invoice_id"]
            if iid not in fetched:
                if inv["currency"] != "USD" and not asked_unknown:
                    # A model inventing a tool it saw in training; Corral lists the real ones.
                    return call("lookup_exchange_rate", currency=inv["currency"])
                return call("get_invoice", invoice_id=iid)
            if iid not in checked:
                first_check = not checked and not any(
                    r.tool == "calculate_invoice" for r in results
                )
                shown_id = f"INV-{int(iid[4:])}" if first_check else iid  # the sloppy first try
                return call(
                    "calculate_invoice",
                    invoice_id=shown_id,
                    amount=fetched[iid]["recorded_total"],
                    currency=fetched[iid]["currency"],
                )
        wrong = [c for c in checked.values() if not c["matches"]]
        refused = [r for r in results if r.tool == "flag_discrepancy" and r.is_error]
        to_flag = [c for c in wrong if c["invoice_id"] not in flagged]
        if to_flag and not refused:
            # Independent calls go in one response, as real models do.
            return [
                call(
                    "flag_discrepancy",
                    invoice_id=c["invoice_id"],
                    difference=c["difference"],
                    reason=(
                        f"recorded {c['recorded_total']:.2f} {c['currency']} but line items "
                        f"sum to {c['computed_total']:.2f}"
                    ),
                )
                for c in to_flag
            ]
        if not wrong:
            return f"All {len(checked)} unpaid invoices of {customer} match their line items."
        lines = "\n".join(
            f"- {c['invoice_id']}: recorded {c['recorded_total']:.2f} {c['currency']}, "
            f"line items {c['computed_total']:.2f} ({c['difference']:+.2f})"
            + ("" if c["invoice_id"] in flagged else " (not flagged: refused)")
            for c in wrong
        )
        return (
            f"Checked {len(checked)} unpaid invoices of {customer}; {len(wrong)} discrepancies "
            f"found, {len(flagged)} flagged:\n{lines}"
        )

    return FunctionModel(respond, name="scripted-billing")


def billing_agent(model: Model | None = None, *, book: InvoiceBook | None = None) -> SubAgent:
    """The demo's billing sub-agent (four tools), on `model` or the scripted demo model."""
    book = book or InvoiceBook()
    return SubAgent(
        "billing",
        instructions=BILLING_INSTRUCTIONS,
        tools=book.tools(),
        model=model or scripted_billing_model(),
        scopes={"invoices:read", "invoices:write"},
    )


_KB = {
    "password": "Passwords are reset from Settings > Security; the link is valid for 30 minutes.",
    "login": "Repeated failed logins lock an account for 15 minutes.",
    "export": "Data exports run nightly and are kept for 7 days.",
}


def _support_tools() -> list[Tool]:
    @tool(timeout=5.0)
    async def search_kb(query: str) -> list[str]:
        """Search the help-centre articles."""
        words = set(re.findall(r"[a-z]+", query.lower()))
        return [text for key, text in _KB.items() if key in words] or ["No article found."]

    @tool(timeout=5.0)
    async def get_account(email: str) -> dict[str, Any]:
        """Look up a customer account by email address."""
        return {"email": email, "status": "active", "plan": "business", "locked": False}

    return [search_kb, get_account]


def scripted_support_model() -> FunctionModel:
    """A scripted support model: search the knowledge base once, then answer from it."""

    def respond(request: ModelRequest) -> Step:
        results = _results(request)
        task = next(m.content for m in request.messages if isinstance(m, UserMessage))
        if not results:
            return call("search_kb", query=task)
        articles = _json(results[-1].content) or [results[-1].content]
        return "From the help centre: " + " ".join(str(a) for a in articles)

    return FunctionModel(respond, name="scripted-support")


def support_agent(model: Model | None = None) -> SubAgent:
    """The demo's support sub-agent (read-only tools)."""
    return SubAgent(
        "support",
        instructions=SUPPORT_INSTRUCTIONS,
        tools=_support_tools(),
        model=model or scripted_support_model(),
        scopes={"accounts:read"},
    )


def demo_router() -> Router:
    """The demo's routing rules (the same as examples/routes.toml)."""
    return Router(
        [
            Rule("billing-kind", agent="billing", kind="billing"),
            Rule(
                "billing-words",
                agent="billing",
                keywords=("invoice", "invoices", "refund", "billing", "payment", "discrepancy"),
            ),
            Rule("support-kind", agent="support", kind="support"),
            Rule(
                "support-words",
                agent="support",
                keywords=("password", "login", "account", "error", "export"),
            ),
        ]
    )


def app(model: Model | None = None) -> App:
    """The demo application: the billing and support agents and their routing rules.

    Args:
        model: run the billing agent on this model instead of the scripted one.
    """
    return App(agents=[billing_agent(model), support_agent()], router=demo_router())
