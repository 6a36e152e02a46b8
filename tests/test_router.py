from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import corral.router
from corral import Task
from corral.errors import ConfigError, RoutingError, UsageError
from corral.router import Explanation, Route, Router, Rule, RuleCheck

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "routes.toml"


def task(
    text: str = "x", kind: str | None = None, tags: tuple[str, ...] = (), **meta: object
) -> Task:
    return Task(text=text, kind=kind, tags=frozenset(tags), metadata=meta)


def is_gold(t: Task) -> bool:
    return t.metadata.get("tier") == "gold"


def boom(t: Task) -> bool:
    raise RuntimeError("tier service down")


# -- each condition ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "t", "matched"),
    [
        (Rule("k", agent="a", kind="billing"), task(kind="billing"), True),
        (Rule("k", agent="a", kind="billing"), task(kind="support"), False),
        (Rule("k", agent="a", kind="billing"), task(kind=None), False),
        (Rule("k", agent="a", kind="billing"), task(kind="Billing"), False),  # exact
        (Rule("k", agent="a", kind=["billing", "finance"]), task(kind="finance"), True),
        (Rule("k", agent="a", kind={"billing", "finance"}), task(kind="legal"), False),
        (Rule("t", agent="a", tags=["vip", "eu"]), task(tags=("vip", "eu", "new")), True),
        (Rule("t", agent="a", tags=["vip", "eu"]), task(tags=("vip",)), False),
        (Rule("t", agent="a", tags="vip"), task(tags=("vip",)), True),  # one tag, not 3 letters
        (Rule("t", agent="a", tags="vip"), task(tags=("v", "i", "p")), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("Check the INVOICE please"), True),
        (Rule("w", agent="a", keywords=["invoice", "refund"]), task("want a Refund."), True),
        (Rule("w", agent="a", keywords=["invoice"]), task("reinvoiced twice"), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("invoiced"), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("invoice_2024"), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("invoice2"), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("(invoice)"), True),
        (Rule("w", agent="a", keywords=["invoice"]), task("INV: invoice-123"), True),
        (Rule("w", agent="a", keywords=["invoice"]), task("no match here"), False),
        (Rule("w", agent="a", keywords="invoice"), task("one invoice"), True),
        (Rule("w", agent="a", keywords="invoice"), task("i n v o i c e"), False),  # not chars
        (Rule("w", agent="a", keywords=["credit note"]), task("issue a Credit Note now"), True),
        (Rule("w", agent="a", keywords=["credit note"]), task("a credit\n  note"), True),
        (Rule("w", agent="a", keywords=["credit note"]), task("a creditnote"), False),
        (Rule("w", agent="a", keywords=["credit note"]), task("credit notes"), False),
        (Rule("w", agent="a", keywords=["credit note"]), task("credit, note"), False),
        (Rule("w", agent="a", keywords=["e-mail"]), task("my E-Mail bounced"), True),
        (Rule("w", agent="a", keywords=["c++"]), task("a C++ question"), True),
        (Rule("w", agent="a", keywords=["straße"]), task("HAUPTSTRASSE"), False),
        (Rule("w", agent="a", keywords=["straße"]), task("STRASSE 5"), True),  # casefold
        (Rule("w", agent="a", keywords=["café"]), task("CAFÉ open"), True),
        (Rule("r", agent="a", regex=r"INV-\d{6}"), task("about INV-000102"), True),
        (Rule("r", agent="a", regex=r"INV-\d{6}"), task("about INV-12"), False),
        (Rule("r", agent="a", regex=r"INV-\d{6}"), task("about inv-000102"), False),
        (Rule("r", agent="a", regex=r"(?i)INV-\d{6}"), task("about inv-000102"), True),
        (Rule("r", agent="a", regex=re.compile(r"^urgent", re.I)), task("URGENT: help"), True),
        (Rule("p", agent="a", predicate=is_gold), task(tier="gold"), True),
        (Rule("p", agent="a", predicate=is_gold), task(tier="silver"), False),
        (Rule("p", agent="a", predicate=boom), task(), False),
        (Rule("p", agent="a", predicate=lambda t: None), task(), False),  # type: ignore[arg-type,return-value]
        (Rule("p", agent="a", predicate=lambda t: 1), task(), False),  # type: ignore[arg-type,return-value]
        (Rule.always("any", agent="a"), task("anything at all"), True),
    ],
)
def test_each_condition_matches_or_not(rule: Rule, t: Task, matched: bool) -> None:
    assert rule.check(t).matched is matched
    # Routing (the fast path) decides exactly as the explanation does.
    router = Router([rule], default=None if rule.catch_all else "fallback")
    assert (router.route(t).rule == rule.name) is matched
    assert router.explain(t).route == router.route(t)


def test_conditions_are_anded_and_every_reason_is_given() -> None:
    rule = Rule(
        "all",
        agent="a",
        kind="billing",
        tags=["vip"],
        keywords=["refund"],
        regex=r"ORD-\d+",
        predicate=is_gold,
    )
    good = task("refund ORD-7", kind="billing", tags=("vip",), tier="gold")
    check = rule.check(good)
    assert check.matched and check.failed == ()
    assert check.passed == (
        "kind == 'billing'",
        "has tags 'vip'",
        "keyword 'refund'",
        "regex /ORD-\\d+/ found 'ORD-7'",
        "predicate is_gold",
    )
    assert check.reason == " and ".join(check.passed)
    # Break each condition in turn: the rule stops matching and says exactly which failed.
    variants = {
        "kind 'support' is not 'billing'": task(
            "refund ORD-7", kind="support", tags=("vip",), tier="gold"
        ),
        "missing tags 'vip'": task("refund ORD-7", kind="billing", tier="gold"),
        "none of the keywords 'refund'": task(
            "return ORD-7", kind="billing", tags=("vip",), tier="gold"
        ),
        "regex /ORD-\\d+/ not found": task("refund", kind="billing", tags=("vip",), tier="gold"),
        "predicate is_gold is false": task("refund ORD-7", kind="billing", tags=("vip",)),
    }
    for failure, t in variants.items():
        check = rule.check(t)
        assert not check.matched
        assert check.failed == (failure,)
        assert len(check.passed) == 4
        assert Router([rule], default="d").route(t).rule == "(default)"


def test_explain_evaluates_every_condition_of_a_tried_rule() -> None:
    check = Rule("r", agent="a", kind=["x", "y"], tags=["vip", "eu"], keywords=["a", "b"]).check(
        task("zzz", kind="z", tags=("eu",))
    )
    assert check.failed == (
        "kind 'z' is not one of 'x', 'y'",
        "missing tags 'vip'",
        "none of the keywords 'a', 'b'",
    )
    assert check.reason == "; ".join(check.failed)


def test_keyword_reason_names_the_keyword_as_written() -> None:
    rule = Rule("w", agent="a", keywords=["Credit Note", "refund"])
    assert rule.check(task("a CREDIT   note please")).passed == ("keyword 'Credit Note'",)
    assert Router([rule]).route(task("a refund")).reason == "keyword 'refund'"


def test_a_keyword_repeated_inside_words_before_a_whole_word_match() -> None:
    rule = Rule("w", agent="a", keywords=["in"])
    assert rule.check(task("again, begin within: in")).matched
    assert not rule.check(task("again, begin within")).matched


# -- predicates ---------------------------------------------------------------------------------


def test_a_raising_predicate_is_a_non_match_with_the_exception_as_reason() -> None:
    router = Router(
        [Rule("gold", agent="concierge", predicate=boom), Rule("rest", agent="triage", kind="q")]
    )
    route = router.route(task(kind="q"))  # routing goes on to the next rule
    assert route == Route("triage", "rest", "kind == 'q'")
    explanation = router.explain(task(kind="q"))
    failed = explanation.checks[0]
    assert not failed.matched
    assert isinstance(failed.error, RuntimeError)
    assert failed.failed == ("predicate boom raised RuntimeError: tier service down",)
    assert "predicate boom raised RuntimeError: tier service down" in str(explanation)


def test_a_predicate_must_return_a_bool() -> None:
    rule = Rule("p", agent="a", predicate=lambda t: "yes")  # type: ignore[arg-type,return-value]
    assert rule.check(task()).failed == ("predicate (lambda) returned 'yes', not True or False",)


def test_routing_does_not_run_a_predicate_when_a_cheaper_condition_failed() -> None:
    calls: list[str] = []

    def counted(t: Task) -> bool:
        calls.append(t.text)
        return True

    router = Router([Rule("p", agent="a", kind="billing", predicate=counted)], default="d")
    router.route(task("one", kind="support"))
    assert calls == []
    assert (
        router.route(task("two", kind="billing")).reason
        == "kind == 'billing' and predicate counted"
    )
    assert calls == ["two"]  # once: the route's reason does not call it again


def test_base_exceptions_are_not_swallowed() -> None:
    def interrupted(t: Task) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Router([Rule("p", agent="a", predicate=interrupted)]).route(task())


# -- the router ---------------------------------------------------------------------------------


def test_first_match_wins_and_the_route_says_why() -> None:
    router = Router(
        [
            Rule("refunds", agent="billing", kind="billing", keywords=["invoice"]),
            Rule("billing", agent="billing-general", kind="billing"),
            Rule("anything", agent="triage", keywords=["invoice"]),
        ]
    )
    assert router.route(task("an invoice for ORD-1", kind="billing")) == Route(
        "billing", "refunds", "kind == 'billing' and keyword 'invoice'"
    )
    assert router.route(task("question", kind="billing")) == Route(
        "billing-general", "billing", "kind == 'billing'"
    )
    assert router.route(task("an invoice")).agent == "triage"


def test_default_agent_catches_the_rest() -> None:
    router = Router([Rule("b", agent="billing", kind="billing")], default="triage")
    assert router.route(task("hello")) == Route(
        "triage", "(default)", "no rule matched; default agent"
    )
    explanation = router.explain(task("hello"))
    assert explanation.rule is None
    assert explanation.route == router.route(task("hello"))
    assert str(explanation).endswith("Result: no rule matched; default agent 'triage'")


def test_unroutable_task_raises_routing_error_carrying_the_explanation() -> None:
    router = Router(
        [Rule("b", agent="billing", kind="billing"), Rule("s", agent="support", keywords=["login"])]
    )
    t = task("what is the weather")
    with pytest.raises(RoutingError) as info:
        router.route(t)
    assert isinstance(info.value, UsageError)
    explanation = info.value.explanation
    assert isinstance(explanation, Explanation)
    assert explanation == router.explain(t)
    assert explanation.task is t and explanation.route is None and explanation.rule is None
    assert [c.rule for c in explanation.checks] == ["b", "s"]
    assert not any(c.matched for c in explanation.checks)
    message = str(info.value)
    assert message.startswith("no routing rule matched this task and there is no default agent\n")
    assert str(explanation) in message
    assert "kind None is not 'billing'" in message
    assert "none of the keywords 'login'" in message


def test_explanation_text_a_person_can_follow() -> None:
    router = Router(
        [
            Rule("b", agent="billing", kind="billing"),
            Rule("s", agent="support", keywords=["login", "password"], tags=["web"]),
            Rule("never-tried", agent="x", kind="x"),
        ]
    )
    explanation = router.explain(task("Login broken", tags=("web",)))
    assert explanation.rule == "s"
    assert [c.rule for c in explanation.checks] == ["b", "s"]  # stops at the match
    assert all(isinstance(c, RuleCheck) for c in explanation.checks)
    assert str(explanation).splitlines() == [
        "Routing task 'Login broken' (kind: None; tags: 'web')",
        "  rule 1 'b' -> billing: no match",
        "      [fail] kind None is not 'billing'",
        "  rule 2 's' -> support: MATCHED",
        "      [pass] has tags 'web'",
        "      [pass] keyword 'login'",
        "Result: agent 'support' by rule 's'",
    ]


def test_explanation_quotes_a_long_text_shortened_and_handles_no_rules() -> None:
    text = str(Router([]).explain(task("word " * 100)))
    assert len(text.splitlines()[0]) < 130 and "wo...'" in text
    assert "(the router has no rules)" in text
    assert "Result: no rule matched and the router has no default agent" in text


alphabet = ["invoice", "refund", "login", "Login", "credit", "note", "INV-000123", "x", ",", "\n"]


@given(
    words=st.lists(st.sampled_from(alphabet), max_size=8),
    kind=st.sampled_from([None, "billing", "support"]),
    tags=st.frozensets(st.sampled_from(["vip", "eu"])),
)
def test_route_and_explain_always_agree(
    words: list[str], kind: str | None, tags: frozenset[str]
) -> None:
    router = Router(
        [
            Rule("a", agent="billing", kind="billing", tags=["vip"]),
            Rule("b", agent="billing", keywords=["credit note", "refund"], regex=r"INV-\d+"),
            Rule("c", agent="support", keywords=["login"], predicate=lambda t: "eu" in t.tags),
            Rule("d", agent="support", kind="support"),
        ]
    )
    t = Task(text=" ".join(words) or "empty", kind=kind, tags=tags)
    explanation = router.explain(t)
    try:
        route = router.route(t)
    except RoutingError as exc:
        assert explanation.route is None and exc.explanation == explanation
    else:
        assert explanation.route == route


def test_routing_takes_microseconds() -> None:
    router = Router.from_toml(EXAMPLE)
    tasks = [
        task("I cannot login, how do I reset my password?"),
        task("x", kind="billing"),
        task("The quick brown fox jumps over the lazy dog. " * 100 + "refund"),
    ]
    started = time.perf_counter()
    for _ in range(1000):
        for t in tasks:
            router.route(t)
    per_route = (time.perf_counter() - started) / 3000
    assert per_route < 200e-6  # typically 1-10 µs; generous so a busy machine does not fail it


# -- rules and routers that are refused ---------------------------------------------------------


def test_a_rule_without_conditions_is_refused_unless_it_is_a_catch_all() -> None:
    with pytest.raises(ConfigError, match=r"rule 'empty' has no condition.*Rule\.always"):
        Rule("empty", agent="a")
    catch_all = Rule.always("rest", agent="triage")
    assert catch_all.catch_all
    assert Router([catch_all]).route(task()) == Route(
        "triage", "rest", "catch-all: matches every task"
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Rule("bad", agent="a", regex="(["), "rule 'bad': invalid regex '\\(\\['"),
        (lambda: Rule("bad", agent="a", regex=""), "rule 'bad': regex is empty"),
        (lambda: Rule("bad", agent="a", regex=re.compile(b"x")), "not bytes"),  # type: ignore[arg-type]
        (lambda: Rule("", agent="a", kind="k"), "needs a non-empty name"),
        (lambda: Rule("bad", agent=" ", kind="k"), "rule 'bad': agent must be"),
        (lambda: Rule("bad", agent="a", kind=[]), "rule 'bad': kind is an empty collection"),
        (lambda: Rule("bad", agent="a", kind=""), "rule 'bad': kind contains an empty string"),
        (lambda: Rule("bad", agent="a", keywords=["ok", " "]), "keywords contains an empty"),
        (lambda: Rule("bad", agent="a", tags=[1]), "tags must be strings"),  # type: ignore[list-item]
        (lambda: Rule("bad", agent="a", kind=3), "kind must be a string or"),  # type: ignore[arg-type]
        (lambda: Rule("bad", agent="a", predicate="x"), "must be callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_rule_arguments(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_rule_names_are_unique_in_a_router() -> None:
    with pytest.raises(ConfigError, match="two routing rules are named 'x'"):
        Router([Rule("x", agent="a", kind="k"), Rule("x", agent="b", kind="j")])
    router = Router([Rule("x", agent="a", kind="k")])
    with pytest.raises(ConfigError, match="two routing rules are named 'x'"):
        router.add(Rule("x", agent="b", kind="j"))
    assert len(router) == 1


def test_nothing_may_follow_a_catch_all() -> None:
    with pytest.raises(ConfigError, match="rule 'late' comes after the catch-all rule 'rest'"):
        Router([Rule.always("rest", agent="a"), Rule("late", agent="b", kind="k")])
    with pytest.raises(ConfigError, match="default agent 'triage' would never be used"):
        Router([Rule.always("rest", agent="a")], default="triage")
    with pytest.raises(ConfigError, match="default agent must be a non-empty name"):
        Router([], default="")


def test_rules_are_immutable_values() -> None:
    a = Rule("w", agent="a", kind=["x", "y"], keywords=("refund",), tags={"vip"})
    b = Rule("w", agent="a", kind=("x", "y"), keywords="refund", tags=["vip"])
    assert a == b and hash(a) == hash(b)
    assert a.kind == ("x", "y") and a.keywords == ("refund",) and a.tags == frozenset({"vip"})
    assert a != Rule("w", agent="b", kind=["x", "y"], keywords=("refund",), tags={"vip"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.agent = "other"  # type: ignore[misc]
    assert "refund" in repr(a) and "_keyword" not in repr(a)


def test_router_collection_api() -> None:
    rules = [Rule("a", agent="billing", kind="a"), Rule("b", agent="support", kind="b")]
    router = Router(rules[:1], default="triage")
    router.add(rules[1])
    assert len(router) == 2 and list(router) == rules and router.rules == tuple(rules)
    assert router.default == "triage"
    assert router.agents == {"billing", "support", "triage"}
    assert repr(router) == "Router(['a', 'b'], default='triage')"
    assert router.route(task(kind="b")).agent == "support"
    with pytest.raises(ConfigError, match="takes Rule objects, not dict"):
        router.add({"name": "c"})  # type: ignore[arg-type]


# -- validate -----------------------------------------------------------------------------------


def test_validate_against_known_agents() -> None:
    router = Router(
        [
            Rule("b", agent="billing", kind="b"),
            Rule("g", agent="ghost", kind="g"),
            Rule("s", agent="suport", kind="s"),
        ],
        default="nobody",
    )
    assert router.agents == frozenset({"billing", "ghost", "suport", "nobody"})
    with pytest.raises(ConfigError) as info:
        router.validate(["billing", "support"])
    message = str(info.value)
    assert "rule 'g' -> 'ghost'; rule 's' -> 'suport' (did you mean 'support'?)" in message
    assert "default -> 'nobody'" in message
    assert "rule 'b'" not in message
    assert message.endswith("Known agents: 'billing', 'support'")
    Router([Rule("b", agent="billing", kind="b")], default="support").validate(
        {"billing": object(), "support": object()}  # a mapping's keys work
    )


# -- TOML ---------------------------------------------------------------------------------------


def test_toml_rules_load_with_every_key() -> None:
    router = Router.from_toml(
        """
        [router]
        default = "triage"

        [[rule]]
        name = "gold"
        agent = "concierge"
        tags = ["vip"]
        predicate = "is_gold"

        [[rule]]
        name = "billing"
        agent = "billing"
        kind = ["billing", "finance"]
        keywords = ["invoice", "credit note"]

        [[rule]]
        name = "orders"
        agent = "orders"
        kind = "orders"
        regex = 'ORD-\\d+'
        """,
        predicates={"is_gold": is_gold},
    )
    assert [r.name for r in router] == ["gold", "billing", "orders"]
    assert router.default == "triage"
    assert router.route(task("x", tags=("vip",), tier="gold")) == Route(
        "concierge", "gold", "has tags 'vip' and predicate 'is_gold'"
    )
    assert router.route(task("an invoice", kind="finance")).rule == "billing"
    assert router.route(task("ORD-12", kind="orders")).rule == "orders"
    assert router.route(task("ORDER", kind="orders")).rule == "(default)"
    assert router.route(task("other")).agent == "triage"
    failing = router.explain(task("x", tags=("vip",)))
    assert failing.checks[0].failed == ("predicate 'is_gold' is false",)


def test_toml_catch_all() -> None:
    router = Router.from_toml(
        "[[rule]]\nname='b'\nagent='billing'\nkind='billing'\n"
        "[[rule]]\nname='rest'\nagent='triage'\nalways=true\n"
    )
    assert router.route(task("hi")) == Route("triage", "rest", "catch-all: matches every task")


def test_toml_with_only_a_default() -> None:
    assert Router.from_toml('[router]\ndefault = "triage"\n').route(task()).agent == "triage"


def test_toml_from_a_file_given_as_path_or_string(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]]\nname = 'a'\nagent = 'b'\nkind = 'k'\n", encoding="utf-8")
    for source in (path, str(path)):
        assert Router.from_toml(source).route(task(kind="k")).agent == "b"
    other = tmp_path / "rules.conf"  # any existing file works as a string too
    other.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(Router.from_toml(str(other))) == 1


def test_the_shipped_example_routes_load_and_match_the_demo() -> None:
    from corral.demo import demo_router

    router = Router.from_toml(EXAMPLE)
    assert router.rules == demo_router().rules  # rules are values: same file, same code
    assert router.default is None
    assert router.agents == {"billing", "support"}
    router.validate(["billing", "support"])
    assert router.route(task("x", kind="billing")) == Route(
        "billing", "billing-kind", "kind == 'billing'"
    )
    assert router.route(task("Please check invoices from Acme")).rule == "billing-words"
    assert router.route(task("There is a discrepancy in March")).agent == "billing"
    assert router.route(task("I cannot login, reset my password?")) == Route(
        "support", "support-words", "keyword 'password'"
    )
    assert router.route(task("hi", kind="support")).rule == "support-kind"
    with pytest.raises(RoutingError, match="no default agent"):
        router.route(task("what is the weather like"))


def rule_toml(*lines: str) -> str:
    return "[[rule]]\n" + "\n".join(lines) + "\n"


OK = ("name = 'a'", "agent = 'b'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            rule_toml(*OK, "kind = 'k'", "colour = 'red'"),
            "<TOML text>, rule #1 ('a'): unknown key 'colour'; allowed keys: name, agent,",
        ),
        (
            rule_toml(*OK, "keyword = ['x']"),
            "rule #1 ('a'): unknown key 'keyword' (did you mean 'keywords'?)",
        ),
        (rule_toml("name = 'a'", "kind = 'k'"), "rule #1 ('a'): missing required key 'agent'"),
        (rule_toml("agent = 'b'", "kind = 'k'"), "rule #1: missing required key 'name'"),
        (rule_toml(*OK, "tags = 'vip'"), "tags must be an array of strings, got a string 'vip'"),
        (rule_toml(*OK, "tags = ['vip', 3]"), "tags must be an array of strings, got an array "),
        (
            rule_toml(*OK, "kind = 3"),
            "kind must be a string or an array of strings, got an integer",
        ),
        (rule_toml(*OK, "kind = []"), "rule #1 ('a'): rule 'a': kind is an empty collection"),
        (
            rule_toml("name = 5", "agent = 'b'", "kind = 'k'"),
            "name must be a string, got an integer",
        ),
        (rule_toml(*OK, "kind = 'k'", "always = 'yes'"), "always must be true or false"),
        (rule_toml(*OK, "kind = 'k'", "always = true"), "cannot be combined with kind"),
        (rule_toml(*OK, "predicate = 'nope'"), "unknown predicate 'nope'; known predicates: "),
        (rule_toml(*OK, "predicate = 'is_gol'"), "(did you mean 'is_gold'?)"),
        (rule_toml(*OK), "rule #1 ('a'): rule 'a' has no condition"),
        (rule_toml(*OK, "regex = '(['"), "rule #1 ('a'): rule 'a': invalid regex"),
        (rule_toml(*OK, "keywords = ['']"), "keywords contains an empty string"),
        (rule_toml("name = ''", "agent = 'b'", "kind = 'k'"), "needs a non-empty name"),
        (
            rule_toml(*OK, "kind = 'k'") + rule_toml("name = 'a'", "agent = 'c'", "kind = 'j'"),
            "rule #2 ('a'): the name is already used by rule #1",
        ),
        (
            rule_toml("name = 'z'", "agent = 'b'", "always = true") + rule_toml(*OK, "kind = 'k'"),
            "<TOML text>: rule 'a' comes after the catch-all rule 'z'",
        ),
        ("[routerr]\ndefault = 'x'", "unknown top-level key 'routerr' (did you mean 'router'?)"),
        ("[router]\ndefualt = 'x'", "[router]: unknown key 'defualt' (did you mean 'default'?)"),
        (
            "[router]\ndefault = 1",
            "[router]: default must be a string (an agent name), got an integer",
        ),
        ("[router]\ndefault = ''", "<TOML text>: the default agent must be a non-empty name"),
        ("router = 'x'", "[router] must be a table, got a string"),
        ("[rule]\nname = 'a'", "write each rule as [[rule]] (an array of tables), not [rule]"),
        ("rule = [1]", "rule #1: must be a table, got an integer"),
        ("", "no [[rule]] and no [router] default, so it routes nothing"),
        ("[[rule]\nname=", "<TOML text> is not valid TOML"),
    ],
)
def test_toml_errors_name_the_rule(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Router.from_toml(text, predicates={"is_gold": is_gold})


def test_toml_predicate_lookup_needs_predicates() -> None:
    with pytest.raises(ConfigError, match="unknown predicate 'is_gold'; known predicates: none"):
        Router.from_toml(rule_toml(*OK, "predicate = 'is_gold'"))
    with pytest.raises(ConfigError, match="predicate 'is_gold' is not callable"):
        Router.from_toml(rule_toml(*OK, "predicate = 'is_gold'"), predicates={"is_gold": 1})  # type: ignore[dict-item]


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(rule_toml(*OK, "kind = 'k'", "tag = ['x']"), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}, rule #1 ('a'): unknown key 'tag'")):
        Router.from_toml(path)
    path.write_text("[[rule]]\nname = 'a'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}, rule #1 ('a'): missing")):
        Router.from_toml(str(path))
    path.write_text("not = = toml", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path} is not valid TOML")):
        Router.from_toml(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Router.from_toml(path)
    missing = tmp_path / "missing.toml"
    for source in (missing, str(missing)):
        with pytest.raises(
            ConfigError, match=re.escape(f"cannot read routing rules from {missing}")
        ):
            Router.from_toml(source)
    with pytest.raises(ConfigError, match="cannot read routing rules"):
        Router.from_toml(tmp_path)  # a directory
    with pytest.raises(ConfigError, match="if 'rules.yaml' is meant as a file name: no such file"):
        Router.from_toml("rules.yaml")


# -- public surface -----------------------------------------------------------------------------


def test_public_names() -> None:
    assert corral.router.__all__ == ["Explanation", "Route", "Router", "Rule", "RuleCheck"]
    assert corral.Rule is Rule and corral.Router is Router and corral.Route is Route
