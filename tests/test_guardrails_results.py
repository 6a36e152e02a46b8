"""Result filtering: JSON-aware truncation to a token cap, redaction, exact notes."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from corral._pii import PIIDetector
from corral.errors import ConfigError
from corral.guardrails._results import FilteredResult, filter_result
from corral.models._tokens import estimate_tokens

AWS = "AKIAIOSFODNN7EXAMPLE"
ITEMS_MARKER = re.compile(r"^… ([\d,]+) more items?$")
CHARS_MARKER = re.compile(r"^(.*)… ([\d,]+) more characters?$", re.DOTALL)


def number(text: str) -> int:
    return int(text.replace(",", ""))


# ------------------------------------------------------------------- plain text


def test_short_text_is_unchanged() -> None:
    r = filter_result("All invoices are paid.")
    assert r == FilteredResult("All invoices are paid.", False, 22, 0, (), False, {})
    assert r.verdicts() == []


def test_long_text_is_cut_with_an_exact_note() -> None:
    r = filter_result("a" * 10_000, max_tokens=100)
    assert r.content == "a" * 364 + "\n… [9,636 more characters truncated]"
    assert len(r.content) == 400 and estimate_tokens(r.content) == 100
    assert r.truncated and r.original_chars == 10_000
    assert r.notes == ("cut 9,636 characters of 10,000",)
    assert not r.json


def test_text_is_cut_at_a_line_break_when_one_is_near() -> None:
    text = "".join(f"line {i:03d}\n" for i in range(200))
    r = filter_result(text, max_tokens=100)
    assert r.content == text[:359] + "\n… [1,441 more characters truncated]"
    assert r.content.split("\n")[-2] == "line 039"


def test_text_is_cut_at_a_space_when_no_line_break_is_near() -> None:
    text = " ".join(["word"] * 500)
    r = filter_result(text, max_tokens=50)
    kept = r.content.split("\n… [")[0]
    assert kept.endswith("word") and not kept.endswith(" ")
    assert estimate_tokens(r.content) <= 50


def test_text_is_redacted_before_it_is_cut() -> None:
    text = f"key {AWS} mail bob@example.com " + "filler " * 2_000
    r = filter_result(text, max_tokens=60)
    assert r.content.startswith("key [REDACTED:API_KEY] mail [REDACTED:EMAIL] filler")
    assert r.redactions == 2 and r.redacted == {"api_key": 1, "email": 1}
    assert r.notes[0] == "redacted 2 values (1 api_key, 1 email)"
    assert r.notes[1].startswith("cut ")
    # the note counts characters of the original text
    kept = r.content.split("\n… [")[0]
    cut = number(re.search(r"\[([\d,]+) more", r.content).group(1))  # type: ignore[union-attr]
    assert cut == len(text) - (
        len(kept)
        - len("[REDACTED:API_KEY]")
        + len(AWS)
        - len("[REDACTED:EMAIL]")
        + len("bob@example.com")
    )


@pytest.mark.parametrize("offset", range(330, 400, 7))
def test_a_secret_at_the_cut_is_neither_leaked_nor_half_shown(offset: int) -> None:
    text = "z" * offset + " " + AWS + " tail" * 100
    r = filter_result(text, max_tokens=100)
    assert "AKIA" not in r.content
    kept = r.content.split("\n… [")[0]
    assert "[REDACTED" not in kept or kept.count("[REDACTED:API_KEY]") == 1
    assert estimate_tokens(r.content) <= 100


def test_tiny_caps_still_fit() -> None:
    r = filter_result("abcdefghijklmnop", max_tokens=1)
    assert r.content == "abcd" and r.truncated


def test_redaction_can_be_switched_off() -> None:
    r = filter_result(f"key {AWS}", redact=False)
    assert r.content == f"key {AWS}" and r.redactions == 0


# ------------------------------------------------------------------------- JSON


def test_small_json_is_compacted_not_truncated() -> None:
    r = filter_result({"invoice": "INV-1", "total": 12.5, "lines": [1, 2]})
    assert r.content == '{"invoice":"INV-1","total":12.5,"lines":[1,2]}'
    assert r.json and not r.truncated and r.notes == ()


def test_a_json_string_is_handled_as_json() -> None:
    r = filter_result('  {"a": [1, 2, 3],\n "b": "x"}  ')
    assert r.content == '{"a":[1,2,3],"b":"x"}'
    assert r.json and r.original_chars == 31


def test_text_that_only_looks_like_json_stays_text() -> None:
    r = filter_result("{not json at all")
    assert r.content == "{not json at all" and not r.json


def test_long_array_keeps_its_first_items_and_says_how_many_were_cut() -> None:
    r = filter_result({"ids": list(range(1000)), "status": "ok"}, max_tokens=50)
    data = json.loads(r.content)
    assert data["status"] == "ok"
    *kept, marker = data["ids"]
    assert kept == list(range(len(kept))) and kept
    m = ITEMS_MARKER.match(marker)
    assert m and number(m.group(1)) == 1000 - len(kept)
    assert r.notes == (f"trimmed 1 array: {1000 - len(kept):,} items cut",)
    assert r.truncated and estimate_tokens(r.content) <= 50


def test_long_string_is_shortened_with_the_count_of_cut_characters() -> None:
    r = filter_result({"body": "x" * 5000, "id": 7}, max_tokens=100)
    data = json.loads(r.content)
    m = CHARS_MARKER.match(data["body"])
    assert m and set(m.group(1)) == {"x"}
    assert number(m.group(2)) == 5000 - len(m.group(1))
    assert data["id"] == 7
    assert r.notes == (f"shortened 1 string: {number(m.group(2)):,} characters cut",)


def test_exact_markers_for_a_known_shape() -> None:
    r = filter_result({"rows": [{"n": i} for i in range(50)], "note": "y" * 300}, max_tokens=40)
    assert r.content == (
        '{"rows":[{"n":0},{"n":1},{"n":2},"… 47 more items"],'
        '"note":"' + "y" * 64 + '… 236 more characters"}'
    )
    assert r.notes == (
        "trimmed 1 array: 47 items cut",
        "shortened 1 string: 236 characters cut",
    )


def test_objects_with_many_keys_keep_their_first_keys() -> None:
    r = filter_result({f"field_{i:03d}": i for i in range(300)}, max_tokens=60)
    data = json.loads(r.content)
    keys = list(data)
    assert keys[-1] == "…"
    assert keys[:-1] == [f"field_{i:03d}" for i in range(len(keys) - 1)]
    assert data["…"] == f"{300 - (len(keys) - 1)} more keys"
    assert r.notes == (f"trimmed 1 object: {300 - (len(keys) - 1)} keys cut",)


def test_deep_nesting_collapses_with_a_count() -> None:
    deep: Any = [1, 2, 3]
    for _ in range(40):
        deep = {"child": deep, "pad": "p" * 30}
    r = filter_result(deep, max_tokens=60)
    assert estimate_tokens(r.content) <= 60
    assert re.search(r'"(?:\{… 2 keys\}|\[… 3 items\])"', r.content)
    assert any(n.startswith("collapsed 1 value nested deeper than") for n in r.notes)


def test_nested_arrays_in_objects_in_arrays() -> None:
    value = [{"id": i, "tags": [f"t{j}" for j in range(40)], "desc": "d" * 200} for i in range(60)]
    r = filter_result(value, max_tokens=200)
    data = json.loads(r.content)
    assert ITEMS_MARKER.match(data[-1])
    for row in data[:-1]:
        assert ITEMS_MARKER.match(row["tags"][-1])
        assert CHARS_MARKER.match(row["desc"])
    arrays_cut = 1 + sum(1 for row in data[:-1] if ITEMS_MARKER.match(row["tags"][-1]))
    assert r.notes[0].startswith(f"trimmed {arrays_cut} arrays: ")
    assert r.notes[1].startswith(f"shortened {len(data) - 1} strings: ")


def test_huge_key_names_are_shortened_and_noted() -> None:
    r = filter_result({"k" * 5000: 1}, max_tokens=20)
    data = json.loads(r.content)
    (key,) = data
    assert key.endswith("…") and set(key[:-1]) == {"k"}
    assert r.notes == (f"shortened 1 key name: {5000 - (len(key) - 1):,} characters cut",)


def test_structures_no_level_can_fit_become_one_json_string() -> None:
    r = filter_result({"k" * 5000: 1}, max_tokens=1)
    assert r.content == '""'
    assert json.loads(r.content) == ""
    r = filter_result([[[[[[[1]]]]]]] * 3, max_tokens=3)
    assert estimate_tokens(r.content) <= 3 and json.loads(r.content) is not None


class Invoice(BaseModel):
    id: str
    lines: list[int]


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Opaque:
    def __str__(self) -> str:
        return "<opaque thing>"


VALUES = [
    (Invoice(id="INV-1", lines=[1, 2]), '{"id":"INV-1","lines":[1,2]}'),
    (Point(1.0, 2.5), '{"x":1.0,"y":2.5}'),
    ({"tags": {"b", "a"}}, '{"tags":["a","b"]}'),
    ({"ratio": float("nan"), "inf": float("inf")}, '{"ratio":"nan","inf":"inf"}'),
    ({1: "one", None: "none"}, '{"1":"one","null":"none"}'),
    ((1, 2, 3), "[1,2,3]"),
    (42, "42"),
    (None, "null"),
    (True, "true"),
    ({"thing": Opaque()}, '{"thing":"<opaque thing>"}'),
    (b'{"a": 1}', '{"a":1}'),
    (b"plain bytes \xff", "plain bytes \ufffd"),
    ({"text": "naïve café — 日本"}, '{"text":"naïve café — 日本"}'),
]


@pytest.mark.parametrize(("value", "expected"), VALUES)
def test_any_value_is_rendered(value: Any, expected: str) -> None:
    assert filter_result(value).content == expected


# -------------------------------------------------------------------- redaction


def test_json_values_keys_and_secret_fields_are_redacted() -> None:
    value = {
        "customer": {"email": "jane@example.com", "phone": "+44 20 7946 0958"},
        "password": "hunter22",
        "api_key": "k3y-9f8e7d6c5b4a",
        "token_type": "bearer",
        "notes": f"rotate {AWS} soon",
        "card": 4111111111111111,
        "bob@example.com": "owner",
        "max_tokens": 800,
    }
    r = filter_result(value)
    assert json.loads(r.content) == {
        "customer": {"email": "[REDACTED:EMAIL]", "phone": "[REDACTED:PHONE]"},
        "password": "[REDACTED:SECRET]",
        "api_key": "[REDACTED:SECRET]",
        "token_type": "bearer",
        "notes": "rotate [REDACTED:API_KEY] soon",
        "card": "[REDACTED:CARD]",
        "[REDACTED:EMAIL]": "owner",
        "max_tokens": 800,
    }
    assert r.redactions == 7
    assert r.redacted == {"email": 2, "phone": 1, "secret": 2, "api_key": 1, "card": 1}
    assert r.notes == ("redacted 7 values (2 email, 1 phone, 2 secret, 1 api_key, 1 card)",)
    (verdict,) = r.verdicts()
    assert verdict.guardrail == "result_redaction" and verdict.decision == "redact"
    assert "hunter22" not in json.dumps(verdict.details) + verdict.reason


def test_redaction_and_truncation_together_give_two_verdicts() -> None:
    rows = [{"id": i, "email": f"user{i}@example.com"} for i in range(500)]
    r = filter_result(rows, max_tokens=100)
    data = json.loads(r.content)
    assert all(row["email"] == "[REDACTED:EMAIL]" for row in data[:-1])
    assert r.redacted == {"email": len(data) - 1}
    assert [v.decision for v in r.verdicts()] == ["redact", "truncate"]
    assert r.verdicts()[1].details["original_chars"] == r.original_chars


def test_colliding_redacted_keys_are_kept_apart() -> None:
    r = filter_result({"a@example.com": 1, "b@example.com": 2})
    assert json.loads(r.content) == {"[REDACTED:EMAIL]": 1, "[REDACTED:EMAIL]'": 2}


def test_redaction_that_shrinks_a_result_avoids_truncation() -> None:
    body = ("A" * 64 + "\n") * 60
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----"
    r = filter_result({"key": pem, "id": 1}, max_tokens=100)
    assert json.loads(r.content) == {"key": "[REDACTED:PRIVATE_KEY]", "id": 1}
    assert not r.truncated


def test_a_custom_detector_limits_what_is_redacted() -> None:
    r = filter_result({"email": "jane@example.com", "k": AWS}, detector=PIIDetector(["api_key"]))
    assert json.loads(r.content) == {"email": "jane@example.com", "k": "[REDACTED:API_KEY]"}


def test_filtering_is_deterministic() -> None:
    value = {"rows": [{"i": i, "s": "s" * (i * 7 % 300)} for i in range(200)]}
    first = filter_result(value, max_tokens=300)
    assert all(filter_result(value, max_tokens=300) == first for _ in range(3))


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        filter_result("x", max_tokens=0)


# --------------------------------------------------------------------- property

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=40)
        | st.dictionaries(st.text(max_size=40), children, max_size=25)
    ),
    max_leaves=400,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, max_tokens=st.integers(min_value=1, max_value=400))
def test_output_never_exceeds_the_cap_and_json_stays_json(value: Any, max_tokens: int) -> None:
    r = filter_result(value, max_tokens=max_tokens)
    assert estimate_tokens(r.content) <= max_tokens
    if not isinstance(value, str):  # a str is text unless it holds a JSON object or array
        assert r.json
        json.loads(r.content)
    as_text = json.dumps(value)
    if as_text.lstrip()[:1] in ("{", "["):
        r2 = filter_result(as_text, max_tokens=max_tokens)
        assert estimate_tokens(r2.content) <= max_tokens
        assert r2.json
        json.loads(r2.content)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3000), max_tokens=st.integers(min_value=1, max_value=300))
def test_text_output_never_exceeds_the_cap(text: str, max_tokens: int) -> None:
    r = filter_result(text, max_tokens=max_tokens)
    assert estimate_tokens(r.content) <= max_tokens
    if not r.truncated and r.redactions == 0:
        assert r.content == text or r.json
