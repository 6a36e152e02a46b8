from __future__ import annotations

from pathlib import Path

import pytest

from corral import Route, Router, Rule, Task
from corral.errors import ConfigError, RoutingError

ROOT = Path(__file__).resolve().parents[1]


def task(text: str, kind: str | None = None, tags: tuple[str, ...] = (), **metadata: object) -> Task:
    return Task(text=text, kind=kind, tags=frozenset(tags), metadata=metadata)


@pytest.mark.parametrize(
    ("rule", "t", "matched"),
    [
        (Rule("k", agent="a", kind="billing"), task("x", kind="billing"), True),
        (Rule("k", agent="a", kind="billing"), task("x", kind="support"), False),
        (Rule("k", agent="a", kind=["billing", "finance"]), task("x", kind="finance"), True),
        (Rule("t", agent="a", tags=["vip", "eu"]), task("x", tags=("vip", "eu", "new")), True),
        (Rule("t", agent="a", tags=["vip", "eu"]), task("x", tags=("vip",)), False),
        (Rule("w", agent="a", keywords=["invoice"]), task("Check the INVOICE please"), True),
        (Rule("w", agent="a", keywords=["invoice"]), task("reinvoiced twice"), False),  # whole words
        (Rule("w", agent="a", keywords=["credit note"]), task("issue a Credit Note now"), True),
        (Rule("r", agent="a", regex=r"INV-\d{6}"), task("about INV-000102"), True),
        (Rule("r", agent="a", regex=r"INV-\d{6}"), task("about INV-12"), False),
        (Rule("p", agent="a", predicate=lambda t: t.metadata.get("tier") == "gold"), task("x", tier="gold"), True),
        (Rule("p", agent="a", predicate=lambda t: 1 / 0 > 0), task("x"), False),  # raising = no match
        (Rule("and", agent="a", kind="billing", keywords=["refund"]), task("refund", kind="support"), False),
        (Rule("and", agent="a", kind="billing", keywords=["refund"]), task("a refund", kind="billing"), True),
        (Rule.always("any", agent="a"), task("anything"), True),
    ],
)
def test_each_condition(rule: Rule, t: Task, matched: bool) -> None:
    assert rule.check(t).matched is matched


def test_first_match_wins_and_the_route_says_why() -> None:
    router = Router(
        [
            Rule("refunds", agent="billing", kind="billing", keywords=["refund"]),
            Rule("billing", agent="billing-general", kind="billing"),
        ]
    )
    assert router.route(task("a refund for ORD-1", kind="billing")) == Route(
        "billing", "refunds", "kind == 'billing' and keyword 'refund'"
    )
    assert router.route(task("question", kind="billing")).agent == "billing-general"


def test_unroutable_task_raises_with_every_rule_tried_and_why() -> None:
    router = Router([Rule("b", agent="billing", kind="billing"), Rule("s", agent="support", keywords=["login"])])
    with pytest.raises(RoutingError) as info:
        router.route(task("what is the weather"))
    explanation = info.value.explanation
    assert [c.rule for c in explanation.checks] == ["b", "s"]
    assert not any(c.matched for c in explanation.checks)
    text = str(info.value)
    assert "kind None is not 'billing'" in text
    assert "none of the keywords ['login']" in text
    assert "no rule matched" in text


def test_explain_names_the_matching_rule() -> None:
    router = Router([Rule("b", agent="billing", kind="billing"), Rule("s", agent="support", keywords=["login"])])
    text = str(router.explain(task("login broken")))
    assert "✗ rule 'b'" in text and "✓ rule 's'" in text and "=> agent 'support'" in text


def test_default_agent_catches_the_rest() -> None:
    router = Router([Rule("b", agent="billing", kind="billing")], default="triage")
    route = router.route(task("hello"))
    assert route == Route("triage", "(default)", "no rule matched; default agent")


def test_rule_definition_errors() -> None:
    with pytest.raises(ConfigError, match="has no condition"):
        Rule("empty", agent="a")
    with pytest.raises(ConfigError, match="invalid regex"):
        Rule("bad", agent="a", regex="([")
    with pytest.raises(ConfigError, match="two routing rules are named 'x'"):
        Router([Rule("x", agent="a", kind="k"), Rule("x", agent="b", kind="k")])


def test_validate_against_known_agents() -> None:
    router = Router([Rule("b", agent="billing", kind="b"), Rule("g", agent="ghost", kind="g")], default="nobody")
    assert router.agents == {"billing", "ghost", "nobody"}
    with pytest.raises(ConfigError, match="rule 'g' -> 'ghost', default -> 'nobody'"):
        router.validate(["billing"])


def test_toml_rules_load_with_predicates() -> None:
    router = Router.from_toml(
        """
        [router]
        default = "triage"

        [[rule]]
        name = "gold"
        agent = "concierge"
        predicate = "is_gold"

        [[rule]]
        name = "billing"
        agent = "billing"
        kind = ["billing", "finance"]
        keywords = ["invoice"]
        """,
        predicates={"is_gold": lambda t: t.metadata.get("tier") == "gold"},
    )
    assert router.route(task("x", tier="gold")).agent == "concierge"
    assert router.route(task("an invoice", kind="finance")).rule == "billing"
    assert router.route(task("other")).agent == "triage"


def test_the_shipped_example_routes_load() -> None:
    router = Router.from_toml(ROOT / "examples" / "routes.toml")
    assert router.route(task("reset my password")).agent == "support"
    assert router.route(task("x", kind="billing")).rule == "billing-kind"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]]\nname = 'a'\nagent = 'b'\nkind = 'k'\ncolour = 'red'", "rule #1 ('a'): colour: Extra inputs are not permitted"),
        ("[[rule]]\nname = 'a'\nkind = 'k'", "rule #1 ('a'): agent: Field required"),
        ("[[rule]]\nname = 'a'\nagent = 'b'\ntags = 'vip'", "tags: Input should be a valid list"),
        ("[[rule]]\nname = 'a'\nagent = 'b'\npredicate = 'nope'", "unknown predicate 'nope'"),
        ("[[rule]]\nname = 'a'\nagent = 'b'", "has no condition"),
        ("[[rule]]\nname = 'a'\nagent = 'b'\nregex = '(['", "invalid regex"),
        ("[routerr]\ndefault = 'x'", "routerr: Extra inputs are not permitted"),
        ("[[rule]\nname=", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_rule(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Router.from_toml(text + "\n")


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text("[[rule]]\nname = 'a'\nagent = 'b'\n")
    with pytest.raises(ConfigError, match=f"{path}, rule #1"):
        Router.from_toml(path)
    with pytest.raises(ConfigError, match="cannot read routing rules"):
        Router.from_toml(tmp_path / "missing.toml")
