"""Tool-call policy: argument rules, scope policies, approval decisions, permission."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from corral import tool
from corral.errors import ConfigError
from corral.guardrails import (
    AllowedValues,
    Allowlist,
    ApprovalPolicy,
    ApprovalRule,
    ArgumentPolicy,
    NoPathTraversal,
    NoSQLFragments,
    Pattern,
    PermissionPolicy,
    ProposedCall,
    Range,
    ScopePolicy,
    Verdict,
    check_permission,
    check_policies,
    policy_from_callable,
    scope_covers,
)


def call(
    name: str = "refund",
    arguments: Mapping[str, Any] | None = None,
    *,
    side_effect: Any = "write",
    agent_scopes: tuple[str, ...] = (),
    tool_scopes: tuple[str, ...] = (),
) -> ProposedCall:
    return ProposedCall(
        run_id="run-1",
        agent="billing",
        agent_scopes=frozenset(agent_scopes),
        tool=name,
        side_effect=side_effect,
        tool_scopes=frozenset(tool_scopes),
        arguments=arguments or {},
        tenant="acme",
    )


# ------------------------------------------------------------------------ paths

PATHS = [
    ("amount", {"amount": 5}, [("$.amount", 5)]),
    ("$.amount", {"amount": 5}, [("$.amount", 5)]),
    ("customer.id", {"customer": {"id": "C1"}}, [("$.customer.id", "C1")]),
    (
        "lines[*].sku",
        {"lines": [{"sku": "A"}, {"sku": "B"}, {"qty": 1}]},
        [("$.lines[0].sku", "A"), ("$.lines[1].sku", "B")],
    ),
    ("lines[1].sku", {"lines": [{"sku": "A"}, {"sku": "B"}]}, [("$.lines[1].sku", "B")]),
    ("meta.*", {"meta": {"a": 1, "b": 2}}, [("$.meta.a", 1), ("$.meta.b", 2)]),
    ("missing", {"amount": 5}, []),
    ("lines[9]", {"lines": [1]}, []),
    ("amount.value", {"amount": 5}, []),
]


@pytest.mark.parametrize(("path", "arguments", "expected"), PATHS)
def test_paths_resolve_to_concrete_values(path: str, arguments: Any, expected: Any) -> None:
    seen: list[tuple[str, Any]] = []

    class Record(AllowedValues):
        def _violations(self, where: str, value: Any) -> list[Any]:
            seen.append((where, value))
            return []

    Record(path, [0]).violations(arguments)
    assert seen == expected


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a]", "[*"])
def test_invalid_paths_are_config_errors(path: str) -> None:
    with pytest.raises(ConfigError, match="invalid argument path"):
        Range(path, max=1)


# ------------------------------------------------------------------- value rules

CURRENCY = AllowedValues("currency", ["EUR", "USD"])
RULE_CASES = [
    # (rule, arguments, allowed?, text in the reason when blocked)
    (CURRENCY, {"currency": "EUR"}, True, ""),
    (CURRENCY, {"currency": "JPY"}, False, "'JPY' is not allowed; allowed values: 'EUR', 'USD'"),
    (CURRENCY, {"currency": "eur"}, False, "'eur' is not allowed"),
    (CURRENCY, {}, True, ""),
    (AllowedValues("currency", ["EUR"], required=True), {}, False, "$.currency: is required"),
    (AllowedValues("qty", [1, 2]), {"qty": True}, False, "True is not allowed"),
    (AllowedValues("qty", [1, 2]), {"qty": "1"}, False, "'1' is not allowed"),
    (AllowedValues("qty", [1, 2]), {"qty": 2.0}, True, ""),
    (AllowedValues("tags", ["a", "b"]), {"tags": ["a", "c"]}, False, "$.tags[1]: 'c'"),
    (Allowlist("account", ["ACC-1001", "ACC-2*"]), {"account": "ACC-1001"}, True, ""),
    (Allowlist("account", ["ACC-1001", "ACC-2*"]), {"account": "ACC-2042"}, True, ""),
    (
        Allowlist("account", ["ACC-1001", "ACC-2*"]),
        {"account": "ACC-9999"},
        False,
        "'ACC-9999' is not permitted",
    ),
    (Allowlist("account", ["ACC-1001"]), {"account": "acc-1001"}, False, "not permitted"),
    (Allowlist("account", ["ACC-1001"], ignore_case=True), {"account": "acc-1001"}, True, ""),
    (Allowlist("account", ["ACC-1001"]), {"account": 1001}, False, "must be a string, got int"),
    (
        Allowlist("to", ["*@acme.com"]),
        {"to": ["a@acme.com", "x@evil.com"]},
        False,
        "$.to[1]: 'x@evil.com'",
    ),
    (Range("amount", 0, 500), {"amount": 120}, True, ""),
    (Range("amount", 0, 500), {"amount": 500}, True, ""),
    (
        Range("amount", 0, 500),
        {"amount": 500.01},
        False,
        "500.01 is outside the allowed range [0, 500]",
    ),
    (Range("amount", 0, 500), {"amount": -1}, False, "-1 is outside"),
    (Range("amount", 0, 500, exclusive=True), {"amount": 500}, False, "(0, 500)"),
    (Range("amount", max=50), {"amount": -1e9}, True, ""),
    (Range("amount", min=1), {"amount": "100"}, False, "must be a number, got str '100'"),
    (Range("amount", min=1), {"amount": True}, False, "must be a number, got bool"),
    (Range("amount", min=1), {"amount": None}, False, "must be a number, got NoneType"),
    (Range("amount", min=1), {"amount": float("nan")}, False, "finite"),
    (Range("amount", max=10), {"amount": float("inf")}, False, "finite"),
    (
        Range("lines[*].qty", 1, 99),
        {"lines": [{"qty": 1}, {"qty": 100}]},
        False,
        "$.lines[1].qty: 100 is outside",
    ),
    (Pattern("invoice_id", r"INV-\d{6}"), {"invoice_id": "INV-000102"}, True, ""),
    (
        Pattern("invoice_id", r"INV-\d{6}", description="an id such as INV-000102"),
        {"invoice_id": "INV-1"},
        False,
        "'INV-1' is not an id such as INV-000102",
    ),
    (Pattern("invoice_id", r"INV-\d{6}"), {"invoice_id": "INV-000102; DROP"}, False, "matching"),
    (Pattern("invoice_id", r"INV-\d{6}"), {"invoice_id": 102}, False, "must be a string"),
]


@pytest.mark.parametrize(("rule", "arguments", "allowed", "reason"), RULE_CASES)
def test_argument_rules(rule: Any, arguments: dict[str, Any], allowed: bool, reason: str) -> None:
    verdict = rule.check("refund", arguments)
    assert verdict.guardrail == rule.name
    if allowed:
        assert verdict.decision == "allow"
        return
    assert verdict.blocked
    assert reason in verdict.reason
    assert verdict.reason.startswith("refund: ")
    assert "Fix the arguments and try again" in verdict.message
    assert verdict.details["violations"]


def test_allowlist_never_reveals_its_entries_to_the_model() -> None:
    verdict = Allowlist("account", ["ACC-SECRET-1"]).check("t", {"account": "ACC-2"})
    assert "ACC-SECRET-1" not in verdict.message + verdict.reason


def test_allowed_values_are_listed_for_the_model() -> None:
    verdict = CURRENCY.check("refund", {"currency": "JPY"})
    assert "allowed values: 'EUR', 'USD'" in verdict.message


def test_rules_can_be_limited_to_tools() -> None:
    rule = Range("amount", max=50, tools=["refund*"])
    assert rule.check("refund_partial", {"amount": 99}).blocked
    assert rule.check("invoice", {"amount": 99}).decision == "allow"


def test_many_violations_are_summarised() -> None:
    verdict = Range("v[*]", max=0).check("t", {"v": list(range(1, 12))})
    assert "and 6 more" in verdict.reason and "... and 6 more" in verdict.message
    assert len(verdict.details["violations"]) == 11


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AllowedValues("a", []), "at least one value"),
        (lambda: Allowlist("a", []), "at least one item"),
        (lambda: Range("a"), "min, max or both"),
        (lambda: Range("a", 5, 1), "above max"),
        (lambda: Pattern("a", "("), "invalid regex"),
    ],
)
def test_invalid_rules_are_config_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


# ---------------------------------------------------------------- path traversal

TRAVERSAL = [
    ("../../etc/passwd", "climbs out"),
    ("reports/../../secrets.txt", "climbs out"),
    ("..\\..\\windows\\system32", "climbs out"),
    ("%2e%2e%2fetc%2fpasswd", "climbs out"),
    ("%252e%252e%252fetc", "climbs out"),
    ("..%2F..%2Fetc", "climbs out"),
    ("\uff0e\uff0e\uff0fetc", "climbs out"),
    ("reports/ .. /x", "climbs out"),
    ("..%c0%afetc", "climbs out"),
    ("report.pdf\x00.txt", "NUL byte"),
    ("report%00.txt", "NUL byte"),
    ("/etc/shadow", "absolute path"),
    ("C:\\Windows\\win.ini", "absolute path"),
    ("~/.ssh/id_rsa", "absolute path"),
    ("\\\\server\\share\\f.txt", "absolute path"),
]
SAFE_PATHS = [
    "reports/2024/q1.csv",
    "invoice..final.pdf",
    "a/b/c...d",
    "./data/file.json",
    "notes/my-file_v2.txt",
    "résumé.pdf",
]


@pytest.mark.parametrize(("value", "problem"), TRAVERSAL)
def test_path_traversal_in_a_path_argument(value: str, problem: str) -> None:
    verdict = NoPathTraversal("path").check("read_file", {"path": value})
    assert verdict.blocked and verdict.guardrail == "path_traversal"
    assert problem in verdict.reason


@pytest.mark.parametrize("value", SAFE_PATHS)
def test_ordinary_relative_paths_pass(value: str) -> None:
    assert NoPathTraversal("path").check("read_file", {"path": value}).decision == "allow"


def test_absolute_paths_can_be_allowed() -> None:
    rule = NoPathTraversal("path", allow_absolute=True)
    assert rule.check("t", {"path": "/srv/data/a.csv"}).decision == "allow"
    assert rule.check("t", {"path": "/srv/data/../../etc/passwd"}).blocked


@pytest.mark.parametrize(
    ("arguments", "blocked"),
    [
        ({"note": "see ../../etc/passwd", "q": "x"}, True),
        ({"note": "x", "nested": {"file": "../../etc/passwd"}}, True),
        ({"files": ["a.txt", "/etc/passwd"]}, True),
        ({"files": ["a.txt", "C:\\Users\\bob\\key.pem"]}, True),
        ({"message": "Please see /help or ~ 5 minutes, also a/b"}, False),
        ({"message": "Download from //cdn.example.com/x"}, False),
        ({"attachment": "\\\\fileserver\\hr\\salaries.xlsx"}, True),
        ({"count": 3, "flag": True}, False),
    ],
)
def test_path_traversal_in_every_string(arguments: dict[str, Any], blocked: bool) -> None:
    verdict = NoPathTraversal().check("anything", arguments)
    assert verdict.blocked is blocked


# ---------------------------------------------------------------- SQL fragments

SQL_ATTACKS = [
    "' OR '1'='1",
    '" or "a"="a',
    "admin'--",
    "x' #",
    "1 OR 1=1",
    "1' or 1=1 -- ",
    "') OR ('x'='x",
    "42; DROP TABLE users",
    "1; DELETE FROM invoices WHERE 1=1",
    "x'; INSERT INTO users (name) VALUES ('evil'); --",
    "1; UPDATE accounts SET balance = 0",
    "1 UNION SELECT username, password FROM users",
    "1 UnIoN/**/SeLeCt null,null",
    "1 UN/**/ION SEL/**/ECT 1",
    "1 AND SLEEP(5)",
    "1'; WAITFOR DELAY '0:0:5'--",
    "'; EXEC xp_cmdshell 'dir'--",
    "1 AND 1=(SELECT COUNT(*) FROM information_schema.tables)",
    "' UNION ALL SELECT LOAD_FILE('/etc/passwd')--",
    "CHAR(115,101,108,101,99,116)",
    "ＵＮＩＯＮ ＳＥＬＥＣＴ 1",
]
SQL_BENIGN = [
    "O'Brien",
    "Rock 'n' roll",
    "It's 5 o'clock; select a plan that fits",
    "Please drop off the parcel at 5; update me when done",
    "Delete from cart requested by the customer",
    "-- signed, Bob",
    "Select plan: premium (or 1 = one)",
    "The union of the two sets",
    "Sleep well!",
    "Notes /* draft */ for Monday",
    "a = b or c",
    "Café's menu; insert coin to continue",
    "Use the form; create account later",
    "I said 'hello' and she said 'hi'",
]


@pytest.mark.parametrize("value", SQL_ATTACKS)
def test_sql_fragments_are_blocked(value: str) -> None:
    verdict = NoSQLFragments().check("search", {"query": value})
    assert verdict.blocked and verdict.guardrail == "sql_injection"
    assert "contains SQL" in verdict.reason
    assert "send plain values only" in verdict.message


@pytest.mark.parametrize("value", SQL_BENIGN)
def test_ordinary_text_is_not_sql(value: str) -> None:
    assert NoSQLFragments().check("search", {"query": value}).decision == "allow"


def test_argument_policy_returns_the_first_block() -> None:
    policy = ArgumentPolicy([Range("amount", max=100), NoSQLFragments(), NoPathTraversal()])
    assert policy.check_arguments("refund", {"amount": 5, "note": "ok"}).decision == "allow"
    both = policy.check_arguments("refund", {"amount": 500, "note": "' OR 1=1 --"})
    assert both.guardrail == "range"
    assert policy.check(call(arguments={"amount": 5, "note": "' OR '1'='1"})).guardrail == (
        "sql_injection"
    )
    assert isinstance(policy, ScopePolicy)


# -------------------------------------------------------------------- permission

PERMISSION = [
    # (agent scopes, tool scopes, side effect, allowed side effects, blocked?, reason part)
    (("invoices:read",), ("invoices:read",), "read", None, False, ""),
    (("invoices:read",), ("invoices:write",), "write", None, True, "lacks scope invoices:write"),
    (
        ("invoices:read",),
        ("invoices:delete",),
        "destructive",
        None,
        True,
        "lacks scope invoices:delete required by destructive tool 'delete_invoice'",
    ),
    (("invoices:*",), ("invoices:delete",), "destructive", None, False, ""),
    (("*",), ("admin:all", "invoices:write"), "write", None, False, ""),
    (("invoices:*",), ("payments:write",), "write", None, True, "lacks scope payments:write"),
    ((), ("a", "b"), "read", None, True, "lacks scope a, b"),
    (("invoices:*",), (), "destructive", {"read"}, True, "may only call read tools"),
    (("invoices:*",), (), "write", {"read", "write"}, False, ""),
    ((), (), "external", {"read", "write"}, True, "is external"),
]


@pytest.mark.parametrize(
    ("agent_scopes", "tool_scopes", "side_effect", "allowed", "blocked", "reason"), PERMISSION
)
def test_permission(
    agent_scopes: tuple[str, ...],
    tool_scopes: tuple[str, ...],
    side_effect: Any,
    allowed: Any,
    blocked: bool,
    reason: str,
) -> None:
    verdict = check_permission(
        agent_scopes, tool_scopes, side_effect, allowed, tool="delete_invoice", agent="reader"
    )
    assert verdict.guardrail == "permission"
    assert verdict.blocked is blocked
    if blocked:
        assert reason in verdict.reason
        assert "Do not retry it" in verdict.message


def test_a_read_only_agent_cannot_write_or_delete() -> None:
    read_only = PermissionPolicy({"read"})
    assert read_only.check(call("get_invoice", side_effect="read")).decision == "allow"
    for name, level in (("update_invoice", "write"), ("delete_invoice", "destructive")):
        verdict = read_only.check(call(name, side_effect=level))
        assert verdict.blocked
        assert f"may only call read tools; '{name}' is {level}" in verdict.reason


@pytest.mark.parametrize(
    ("held", "needed", "covers"),
    [
        ("a:read", "a:read", True),
        ("a:*", "a:read", True),
        ("*", "x", True),
        ("a:*", "ab:read", False),
        ("a:read", "a:write", False),
        ("a", "a:read", False),
    ],
)
def test_scope_wildcards(held: str, needed: str, covers: bool) -> None:
    assert scope_covers(held, needed) is covers


# ---------------------------------------------------------------- scope policies


class AccountAllowlist:
    """The worked example from the ScopePolicy docstring."""

    name = "account_allowlist"

    def __init__(self, accounts: set[str]) -> None:
        self.accounts = frozenset(accounts)

    def check(self, call: ProposedCall) -> Verdict:
        account = call.arguments.get("account_id")
        if account is None or account in self.accounts:
            return Verdict(self.name, "allow")
        return Verdict(
            self.name,
            "block",
            reason=f"account {account!r} is outside the allowlist of {call.agent}",
            message=f"You may not act on account {account!r}.",
        )


def test_a_policy_class_satisfies_the_protocol() -> None:
    policy = AccountAllowlist({"ACC-1001"})
    assert isinstance(policy, ScopePolicy)
    assert check_policies([policy], call(arguments={"account_id": "ACC-1001"})).decision == "allow"
    verdict = check_policies([policy], call(arguments={"account_id": "ACC-6666"}))
    assert verdict.blocked
    assert verdict.reason == "account 'ACC-6666' is outside the allowlist of billing"


@pytest.mark.parametrize(
    ("result", "decision", "reason"),
    [
        (True, "allow", ""),
        (None, "allow", ""),
        (False, "block", "rejected by policy 'fn'"),
        ("amount too high for this tenant", "block", "amount too high for this tenant"),
        (Verdict("custom", "approve", "needs a manager"), "approve", "needs a manager"),
    ],
)
def test_policy_from_callable(result: Any, decision: str, reason: str) -> None:
    def fn(c: ProposedCall) -> Any:
        return result

    verdict = policy_from_callable(fn).check(call())
    assert verdict.decision == decision
    assert verdict.reason == reason
    if decision == "block":
        assert verdict.guardrail == "fn"
        assert "Do not retry it" in verdict.message


def test_a_failing_policy_blocks_the_call() -> None:
    def broken(c: ProposedCall) -> bool:
        raise KeyError("account_id")

    verdict = check_policies([policy_from_callable(broken, name="accounts")], call())
    assert verdict.blocked and verdict.guardrail == "accounts"
    assert verdict.reason == "policy 'accounts' failed: KeyError: 'account_id'"


def test_the_most_severe_policy_verdict_wins() -> None:
    flag = policy_from_callable(lambda c: Verdict("f", "flag", "odd"), name="f")
    gate = policy_from_callable(lambda c: Verdict("g", "approve", "big"), name="g")
    deny = policy_from_callable(lambda c: "no", name="d")
    assert check_policies([flag, gate], call()).guardrail == "g"
    assert check_policies([flag, gate, deny], call()).guardrail == "d"
    assert check_policies([flag], call()).decision == "flag"
    assert check_policies([], call()) == Verdict("scope_policy", "allow")


def test_proposed_call_from_a_tool_is_read_only() -> None:
    @tool(side_effect="destructive", scopes=["invoices:delete"], timeout=5)
    async def delete_invoice(invoice_id: str) -> str:
        """Delete an invoice."""
        return invoice_id

    proposed = ProposedCall.of(
        delete_invoice, {"invoice_id": "INV-1"}, agent="reader", agent_scopes=["invoices:read"]
    )
    assert proposed.tool == "delete_invoice" and proposed.side_effect == "destructive"
    assert proposed.tool_scopes == frozenset({"invoices:delete"})
    with pytest.raises(TypeError):
        proposed.arguments["invoice_id"] = "INV-2"  # type: ignore[index]
    verdict = PermissionPolicy().check(proposed)
    assert verdict.blocked
    assert verdict.reason == (
        "agent 'reader' lacks scope invoices:delete required by destructive tool 'delete_invoice'"
    )


# ---------------------------------------------------------------------- approval

APPROVAL = ApprovalPolicy(
    [
        ApprovalRule(
            "auto",
            tool="refund",
            when=Range("amount", max=49.99),
            reason="small refunds are routine",
        ),
        ApprovalRule(
            "block",
            tool="refund",
            when=Range("amount", min=10_000),
            reason="refunds this large go through finance",
        ),
        ApprovalRule("block", side_effect="destructive", reason="no deletions by agents"),
        ApprovalRule(
            "auto", tool="send_*", when=Allowlist("to", ["*@acme.com"]), name="internal mail"
        ),
        ApprovalRule("gate", tool="get_salary"),
    ]
)
APPROVAL_CASES = [
    # (tool, side effect, arguments, verdict decision, rule index or "default")
    ("refund", "write", {"amount": 20}, "allow", 0),
    ("refund", "write", {"amount": 49.99}, "allow", 0),
    ("refund", "write", {"amount": 50}, "approve", "default"),
    ("refund", "write", {"amount": "20"}, "approve", "default"),
    ("refund", "write", {}, "approve", "default"),
    ("refund", "write", {"amount": 25_000}, "block", 1),
    ("delete_invoice", "destructive", {"invoice_id": "INV-1"}, "block", 2),
    ("send_email", "external", {"to": "ops@acme.com"}, "allow", 3),
    ("send_email", "external", {"to": "x@evil.com"}, "approve", "default"),
    ("send_sms", "external", {"to": ["a@acme.com", "b@acme.com"]}, "allow", 3),
    ("get_invoice", "read", {"invoice_id": "INV-1"}, "allow", "default"),
    ("get_salary", "read", {"employee": "E1"}, "approve", 4),
    ("update_invoice", "write", {"invoice_id": "INV-1"}, "approve", "default"),
]


@pytest.mark.parametrize(("name", "side_effect", "arguments", "decision", "rule"), APPROVAL_CASES)
def test_approval_decisions(
    name: str, side_effect: Any, arguments: dict[str, Any], decision: str, rule: Any
) -> None:
    verdict = APPROVAL.decide(call(name, arguments, side_effect=side_effect))
    assert verdict.guardrail == "approval"
    assert verdict.decision == decision
    assert verdict.details["rule"] == rule
    assert verdict.details["side_effect"] == side_effect
    assert verdict.reason.startswith(f"{name} ({side_effect}): ")


def test_approval_reasons_and_messages() -> None:
    small = APPROVAL.decide(call("refund", {"amount": 20}))
    assert small.reason == (
        "refund (write): auto by auto tool=refund when $.amount in [-inf, 49.99] "
        "(small refunds are routine)"
    )
    big = APPROVAL.decide(call("refund", {"amount": 25_000}))
    assert "refunds this large go through finance" in big.message
    gate = APPROVAL.decide(call("update_invoice", {}))
    assert gate.reason == "update_invoice (write): gate by default for write tools"
    assert "needs a person's approval" in gate.message


def test_explain_lists_every_rule_tried() -> None:
    explanation = APPROVAL.explain(call("refund", {"amount": 75}))
    assert explanation.verdict.decision == "approve"
    assert explanation.steps == (
        "rule 1 (auto tool=refund when $.amount in [-inf, 49.99]): "
        "arguments do not satisfy $.amount in [-inf, 49.99]",
        "rule 2 (block tool=refund when $.amount in [10000, inf]): "
        "arguments do not satisfy $.amount in [10000, inf]",
        "rule 3 (block side_effect=destructive): side effect write is not destructive",
        "rule 4 (internal mail): tool 'refund' is not 'send_*'",
        "rule 5 (gate tool=get_salary): tool 'refund' is not 'get_salary'",
        "no rule matched -> gate: refund (write): gate by default for write tools",
    )
    assert str(explanation).endswith("gate by default for write tools")
    matched = APPROVAL.explain(call("delete_invoice", {}, side_effect="destructive"))
    assert matched.steps[-1].startswith("-> block: ")


def test_callable_conditions_and_their_failures() -> None:
    policy = ApprovalPolicy(
        [
            ApprovalRule(
                "auto", tool="refund", when=lambda a: a["amount"] < 50 and a["currency"] == "EUR"
            )
        ]
    )
    assert policy.decide(call(arguments={"amount": 10, "currency": "EUR"})).decision == "allow"
    assert policy.decide(call(arguments={"amount": 10})).decision == "approve"
    steps = policy.explain(call(arguments={"amount": 10})).steps
    assert steps[0] == (
        "rule 1 (auto tool=refund when <lambda>): condition raised KeyError: 'currency'"
    )


def test_default_decisions_can_be_changed() -> None:
    trusting = ApprovalPolicy(defaults={"write": "auto", "destructive": "block"})
    assert trusting.decide(call(side_effect="write")).decision == "allow"
    assert trusting.decide(call(side_effect="external")).decision == "approve"
    assert trusting.decide(call(side_effect="destructive")).decision == "block"
    assert ApprovalPolicy().decide(call(side_effect="read")).decision == "allow"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ApprovalRule("maybe"), "auto, gate or block"),
        (lambda: ApprovalRule("gate", side_effect="explode"), "unknown side-effect"),
        (lambda: ApprovalPolicy(defaults={"write": "later"}), "invalid"),
    ],
)
def test_invalid_approval_configuration(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()
