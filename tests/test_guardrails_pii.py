"""Personal data and secrets: detection with checksums, redaction, masked previews."""

from __future__ import annotations

import json
import time

import pytest

from corral._pii import (
    ALL_KINDS,
    PERSONAL_KINDS,
    SECRET_KINDS,
    PIIDetector,
    iban_valid,
    is_secret_name,
    luhn_valid,
    ssn_valid,
)
from corral.errors import ConfigError

DETECTOR = PIIDetector()

ANTHROPIC = "sk-ant-api03-" + "Zq8xW2vN5mK1pL7rT4yU9iO3aS6dF0gH" + "-_AbCdEf"
OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
OPENAI_LEGACY = "sk-" + "T3BlbkFJ" + "x" * 24
STRIPE = "sk_live_" + "51HxYzAbCdEfGhIjKlMnOpQr"
AWS = "AKIAIOSFODNN7EXAMPLE"
AWS_SESSION = "ASIAY34FZKBOKMUTVV7A"
GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuv"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
GITLAB = "glpat-" + "xYz123AbC456dEf789gH"
NPM = "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz12345678"
SENDGRID = "SG." + "aBcDeFgHiJkLmNoPqRsTuV" + "." + "wXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


def kinds_in(text: str) -> list[str]:
    return [f.kind for f in DETECTOR.find(text)]


# -------------------------------------------------------------------- validators

LUHN = [
    ("4111111111111111", True),
    ("4111 1111 1111 1111", True),
    ("4111-1111-1111-1111", True),
    ("378282246310005", True),
    ("6011111111111117", True),
    ("79927398713", True),
    ("4111111111111112", False),
    ("1234567812345678", False),
    ("4111a11111111111", False),
    ("", False),
]


@pytest.mark.parametrize(("number", "valid"), LUHN)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


IBANS = [
    ("DE89370400440532013000", True),
    ("DE89 3704 0044 0532 0130 00", True),
    ("GB29NWBK60161331926819", True),
    ("FR1420041010050500013M02606", True),
    ("NL91ABNA0417164300", True),
    ("CH9300762011623852957", True),
    ("NO9386011117947", True),
    ("BE68539007547034", True),
    ("MT84MALT011000012345MTLCAST001S", True),
    ("DE89370400440532013001", False),  # checksum
    ("DE8937040044053201300", False),  # length
    ("XX89370400440532013000", False),  # country
    ("de89370400440532013000", False),  # lower case
    ("GB29NWBK6016133192681!", False),
]


@pytest.mark.parametrize(("iban", "valid"), IBANS)
def test_iban_checksum_and_length(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


SSNS = [
    ("123-45-6789", True),
    ("536 22 1234", True),
    ("536221234", True),
    ("000-12-3456", False),
    ("666-12-3456", False),
    ("900-12-3456", False),
    ("999-12-3456", False),
    ("123-00-4567", False),
    ("123-45-0000", False),
    ("078-05-1120", False),
    ("219-09-9999", False),
    ("123-45-678", False),
]


@pytest.mark.parametrize(("ssn", "valid"), SSNS)
def test_ssn_ranges(ssn: str, valid: bool) -> None:
    assert ssn_valid(ssn) is valid


SECRET_NAMES = [
    ("password", True),
    ("DB_PASSWORD", True),
    ("passwd", True),
    ("api_key", True),
    ("X-Api-Key", True),
    ("apiKey", True),
    ("client_secret", True),
    ("clientSecret", True),
    ("AWS_SECRET_ACCESS_KEY", True),
    ("access_token", True),
    ("refreshToken", True),
    ("Authorization", True),
    ("token", True),
    ("credentials", True),
    ("max_tokens", False),
    ("token_count", False),
    ("token_type", False),
    ("next_page_token", False),
    ("page_token", False),
    ("password_hint", False),
    ("passport_number", False),
    ("keyword", False),
    ("key", False),
    ("monkey", False),
]


@pytest.mark.parametrize(("name", "secret"), SECRET_NAMES)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


# --------------------------------------------------------------------- detection

FOUND = [
    # (text, kind, exact value found)
    ("Contact jane.doe+billing@example.co.uk today.", "email", "jane.doe+billing@example.co.uk"),
    ("mail: SUPPORT@Acme-Corp.com.", "email", "SUPPORT@Acme-Corp.com"),
    ('{"email":"bob@example.org"}', "email", "bob@example.org"),
    ("Call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
    ("or +1-202-555-0143.", "phone", "+1-202-555-0143"),
    ("office (212) 555-0143 ext", "phone", "(212) 555-0143"),
    ("cell 212.555.0143", "phone", "212.555.0143"),
    ("Tel.: +49 30 1234567", "phone", "+49 30 1234567"),
    ("+33 1 23 45 67 89 (Paris)", "phone", "+33 1 23 45 67 89"),
    ("phone: 06 12 34 56 78", "phone", "06 12 34 56 78"),
    ("Mobile #0612345678", "phone", "0612345678"),
    ("card 4111 1111 1111 1111 exp 12/25", "card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "card", "4111-1111-1111-1111"),
    ("visa 4012888888881881.", "card", "4012888888881881"),
    ("visa13 4222222222222", "card", "4222222222222"),
    ("mc 5555555555554444", "card", "5555555555554444"),
    ("mc2 2223003122003222", "card", "2223003122003222"),
    ("amex 3782 822463 10005", "card", "3782 822463 10005"),
    ("discover 6011000990139424", "card", "6011000990139424"),
    ("jcb 3566002020360505", "card", "3566002020360505"),
    ("diners 30569309025904", "card", "30569309025904"),
    ('{"pan": "5105105105105100"}', "card", "5105105105105100"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "iban", "DE89 3704 0044 0532 0130 00"),
    ("iban:GB29NWBK60161331926819", "iban", "GB29NWBK60161331926819"),
    ("FR1420041010050500013M02606 is the account", "iban", "FR1420041010050500013M02606"),
    ("SSN 123-45-6789 on file", "ssn", "123-45-6789"),
    ("ssn: 536221234", "ssn", "536221234"),
    (f"key {ANTHROPIC}.", "api_key", ANTHROPIC),
    (f"OPENAI_API_KEY={OPENAI}", "api_key", OPENAI),
    (f"legacy {OPENAI_LEGACY}", "api_key", OPENAI_LEGACY),
    (f"stripe {STRIPE}", "api_key", STRIPE),
    (f"id {AWS} here", "api_key", AWS),
    (f"session {AWS_SESSION}", "api_key", AWS_SESSION),
    (f"gh {GITHUB}", "api_key", GITHUB),
    (f"pat {GITHUB_PAT}", "api_key", GITHUB_PAT),
    (f"slack {SLACK}", "api_key", SLACK),
    (f"maps {GOOGLE}", "api_key", GOOGLE),
    (f"gitlab {GITLAB}", "api_key", GITLAB),
    (f"npm {NPM}", "api_key", NPM),
    (f"hf {HF}", "api_key", HF),
    (f"sendgrid {SENDGRID}", "api_key", SENDGRID),
    (f"token {JWT}", "jwt", JWT),
    (f"Authorization: Bearer {JWT}", "jwt", JWT),
    ("Authorization: Bearer abcdefghij0123456789XYZ", "bearer_token", "abcdefghij0123456789XYZ"),
    (f"key:\n{PEM}\nend", "private_key", PEM),
    (
        '{"key": "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\nAAAA"}',
        "private_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\nAAAA",
    ),
    ("password=hunter22 and more", "secret", "hunter22"),
    ('{"password": "correct-horse"}', "secret", "correct-horse"),
    ("DB_PASSWORD: s3cr3t!", "secret", "s3cr3t!"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "secret",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("client_secret: 9f8e7d6c5b4a3f2e1d0c", "secret", "9f8e7d6c5b4a3f2e1d0c"),
    ("https://api.example.com/v1?access_token=abc123def456ghi&x=1", "secret", "abc123def456ghi"),
    ("X-Api-Key: q8W2e4R6t8Y0", "secret", "q8W2e4R6t8Y0"),
    ("postgres://admin:s3cr3tpw@db.internal:5432/app", "secret", "s3cr3tpw"),
]


@pytest.mark.parametrize(("text", "kind", "value"), FOUND)
def test_each_kind_is_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    findings = DETECTOR.find(text)
    matching = [f for f in findings if f.kind == kind]
    assert matching, findings
    start, end = matching[0].span
    assert text[start:end] == value
    redacted, _ = DETECTOR.redact(text)
    assert value not in redacted
    assert f"[REDACTED:{kind.upper()}]" in redacted


NOT_FOUND = [
    "icon@2x.png and user@localhost and @mention",
    "version 1.2.3.4 at 192.168.100.200",
    "date 2024-07-01, time 12:30:45, order 12345678",
    "total 1,234,567.89 EUR; qty 3 4 5",
    "card 4111 1111 1111 1112 (bad checksum)",
    "number 1234 5678 9012 3456 (no issuer)",
    "groups 41 11 11 11 11 11 11 11 (wrong grouping)",
    "long 41111111111111111111111 (too many digits)",
    "IBAN DE89 3704 0044 0532 0130 01 (bad checksum)",
    "ref XX89370400440532013000",
    "ssn 000-12-3456 or 666-12-3456 or 900-11-2222 or 123-00-4567",
    "phone-ish 555-0143 and 12-34-56",
    "ISBN 978-3-16-148410-0",
    "sk-learn is a library; sk-short",
    "AKIAIOSFODNN7EXAMPLEXYZ is too long to be an AWS key id",
    "ghp_tooShort and xoxb-1",
    "eyJhbGciOiJIUzI1NiJ9 alone is not a JWT",
    "Bearer token",
    '{"token_type": "bearer", "max_tokens": 800, "next_page_token": "Q2hBU1pX9dk2"}',
    "password = os.environ['DB_PASSWORD']",
    "api_key = settings.OPENAI_API_KEY",
    'password: "********"',
    "PASSWORD=<your-password>",
    "token: ${GITHUB_TOKEN}",
    "secret: null",
    "def login(password: str) -> bool:",
    "Your password must be at least 12 characters.",
    "https://example.com:8080/path@section",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_lookalikes_and_placeholders_are_not_reported(text: str) -> None:
    assert DETECTOR.find(text) == []


def test_redaction_replaces_every_kind_in_place() -> None:
    text = (
        f"Hi, I'm jane@example.com (+44 20 7946 0958). Card 4111 1111 1111 1111, "
        f"IBAN DE89370400440532013000, SSN 123-45-6789, key {AWS}, password=hunter22."
    )
    redacted, findings = DETECTOR.redact(text)
    assert redacted == (
        "Hi, I'm [REDACTED:EMAIL] ([REDACTED:PHONE]). Card [REDACTED:CARD], "
        "IBAN [REDACTED:IBAN], SSN [REDACTED:SSN], key [REDACTED:API_KEY], "
        "password=[REDACTED:SECRET]."
    )
    assert [f.kind for f in findings] == [
        "email",
        "phone",
        "card",
        "iban",
        "ssn",
        "api_key",
        "secret",
    ]


PREVIEWS = [
    ("jane.doe@example.com", "j***@example.com"),
    ("4111 1111 1111 1111", "visa ****1111"),
    ("+44 20 7946 0958", "+** ** **** **58"),
    ("DE89370400440532013000", "DE**…00"),
    ("123-45-6789", "***-**-6789"),
    (AWS, "AKIA…(20 chars)"),
    (ANTHROPIC, f"sk-ant-…({len(ANTHROPIC)} chars)"),
    (JWT, f"eyJ…({len(JWT)} chars)"),
]


@pytest.mark.parametrize(("value", "preview"), PREVIEWS)
def test_previews_are_masked(value: str, preview: str) -> None:
    (finding,) = DETECTOR.find(f"value {value} end")
    assert finding.preview == preview


SECRET_VALUES = [ANTHROPIC, OPENAI, STRIPE, AWS, GITHUB, SLACK, GOOGLE, JWT, "hunter22xyz"]


@pytest.mark.parametrize("secret", SECRET_VALUES)
def test_secrets_never_appear_in_findings_or_verdicts(secret: str) -> None:
    text = f"config: password={secret}\nAuthorization: Bearer {secret}\n{secret}"
    findings = DETECTOR.find(text)
    assert findings
    assert secret not in repr(findings)
    assert secret not in json.dumps([f.as_dict() for f in findings])
    for action in ("redact", "flag", "block"):
        verdict, _ = DETECTOR.check(text, action=action)
        assert secret not in verdict.reason
        assert secret not in verdict.message
        assert secret not in json.dumps(verdict.details)


def test_overlaps_keep_the_most_specific_kind() -> None:
    text = f"Authorization: Bearer {JWT}"
    assert kinds_in(text) == ["jwt"]
    assert kinds_in(f"password={AWS}") == ["api_key"]
    # the longer finding wins: redacting the email also hides the digits inside it
    assert kinds_in("email me: 4111111111111111@cards.example.com") == ["email"]
    assert kinds_in("postgres://admin:s3cr3tpw@db.internal/app") == ["secret"]


def test_kinds_can_be_restricted_per_detector_and_per_call() -> None:
    text = f"jane@example.com {AWS} 4111 1111 1111 1111"
    secrets_only = PIIDetector(SECRET_KINDS)  # card numbers are secrets (issue 12, item 6)
    assert [f.kind for f in secrets_only.find(text)] == ["api_key", "card"]
    assert [f.kind for f in DETECTOR.find(text, kinds=["email", "card"])] == ["email", "card"]
    redacted, _ = DETECTOR.redact(text, kinds=["email"])
    assert redacted == f"[REDACTED:EMAIL] {AWS} 4111 1111 1111 1111"


def test_allowlisted_values_are_kept() -> None:
    detector = PIIDetector(allow=["Support@Acme.com"])
    redacted, findings = detector.redact("write to support@acme.com or bob@acme.com")
    assert redacted == "write to support@acme.com or [REDACTED:EMAIL]"
    assert len(findings) == 1


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown PII kind"):
        PIIDetector(["email", "passport"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="action"):
        DETECTOR.check("x", action="drop")  # type: ignore[arg-type]


def test_check_actions() -> None:
    text = "reach me at jane@example.com"
    allow, same = DETECTOR.check("nothing personal here")
    assert allow.decision == "allow" and same == "nothing personal here"
    redact, after = DETECTOR.check(text)
    assert redact.decision == "redact" and after == "reach me at [REDACTED:EMAIL]"
    assert redact.reason == "redacted 1 email"
    assert redact.details["counts"] == {"email": 1}
    flag, after = DETECTOR.check(text, action="flag")
    assert flag.decision == "flag" and after == text
    block, _ = DETECTOR.check(text, action="block")
    assert block.blocked and "withheld" in block.message


def test_all_kinds_listed() -> None:
    assert set(ALL_KINDS) == {
        "email",
        "phone",
        "card",
        "iban",
        "ssn",
        "api_key",
        "jwt",
        "bearer_token",
        "private_key",
        "secret",
    }


def test_non_ascii_text_keeps_offsets() -> None:
    text = "Grüße von José — jose@exämple.de? nein: josé@example.com und 4111 1111 1111 1111 ✓"
    findings = DETECTOR.find(text)
    spans = {f.kind: text[f.span[0] : f.span[1]] for f in findings}
    assert spans["card"] == "4111 1111 1111 1111"
    redacted, _ = DETECTOR.redact(text)
    assert redacted.endswith("[REDACTED:CARD] ✓")


@pytest.mark.parametrize(
    "text",
    [
        "@" * 100_000,
        "1" * 100_000,
        "1 " * 50_000,
        "a" * 100_000,
        "sk-" * 30_000,
        "eyJ" * 30_000,
        "AKIA" * 25_000,
        "password" * 12_000,
        "-----BEGIN RSA PRIVATE KEY-----!" * 3_000,
        "DE89" * 25_000,
    ],
)
def test_pathological_inputs_stay_fast(text: str) -> None:
    started = time.perf_counter()
    DETECTOR.redact(text)
    assert time.perf_counter() - started < 3.0


def test_secret_and_personal_kinds_split_the_kinds() -> None:
    assert SECRET_KINDS == {"api_key", "jwt", "bearer_token", "private_key", "secret", "card"}
    assert PERSONAL_KINDS == {"email", "phone", "iban", "ssn"}
    assert SECRET_KINDS | PERSONAL_KINDS == set(ALL_KINDS)
    assert not SECRET_KINDS & PERSONAL_KINDS
