"""Guardrails: pure, fast checks with structured verdicts, enforced by the runtime.

* Tool calls: one ordered `CheckChain` of `CallCheck`s before every call (`_chain`):
  registered name, decodable arguments, strict schema (`_toolcall`); scopes and
  side-effect levels (`check_permission`, in `_permission`); argument rules
  (`ArgumentPolicy` and its rules in `_arguments`, the rules against hostile strings in
  `_hostile`, argument paths in `_argpath`) and user scope policies (`ScopePolicy`,
  judging a `ProposedCall`, in `_scope`); your own checks; and the `ApprovalPolicy` that
  opens human gates (`_approval`), after `ProvenanceCheck` (`_provenance`): a
  side-effecting call whose argument values came only from untrusted tool output waits
  for a person, whatever the approval rules say.
* Input: `InputScreen` (`_screen`) screens a task before its first step and every tool
  result before it reaches the model (size, prompt injection, PII and secrets, user
  `InputPolicy`s). Prompt injection is `InjectionDetector` and `InjectionGuard`
  (`_detector`): the pattern set (`_patterns`) matched against normalised text
  (`_normalize`), Unicode heuristics (`_unicode`) and decoded payloads (`_decoding`),
  reported as findings (`_findings`).
* Results: `filter_result` cuts tool results to a token cap, JSON-aware, and redacts secrets.
* Errors: `redact_secrets` cuts credentials out of any text (tool exceptions, provider
  error bodies) with the same rules, before it reaches the journal, the model or a log.

PII and secret detection (`PIIDetector`, `redact_secrets`) and `Verdict` live below this
package, in ``corral._pii`` and ``corral._verdict``, because the model adapters redact
provider error bodies with them too; they are re-exported here. Every check returns a
`Verdict`; the runtime journals each one that is not a plain allow.
"""

from .._pii import ALL_KINDS as ALL_KINDS
from .._pii import PERSONAL_KINDS as PERSONAL_KINDS
from .._pii import SECRET_KINDS as SECRET_KINDS
from .._pii import PIIDetector as PIIDetector
from .._pii import PIIFinding as PIIFinding
from .._pii import PIIKind as PIIKind
from .._pii import iban_valid as iban_valid
from .._pii import luhn_valid as luhn_valid
from .._pii import redact_secrets as redact_secrets
from .._pii import ssn_valid as ssn_valid
from .._verdict import ALLOW as ALLOW
from .._verdict import Decision as Decision
from .._verdict import Verdict as Verdict
from ._approval import DEFAULT_APPROVAL as DEFAULT_APPROVAL
from ._approval import ApprovalDecision as ApprovalDecision
from ._approval import ApprovalPolicy as ApprovalPolicy
from ._approval import ApprovalRule as ApprovalRule
from ._arguments import AllowedValues as AllowedValues
from ._arguments import Allowlist as Allowlist
from ._arguments import ArgumentPolicy as ArgumentPolicy
from ._arguments import ArgumentRule as ArgumentRule
from ._arguments import Pattern as Pattern
from ._arguments import Range as Range
from ._chain import ApprovalCheck as ApprovalCheck
from ._chain import ArgumentsParsedCheck as ArgumentsParsedCheck
from ._chain import CallCheck as CallCheck
from ._chain import CallContext as CallContext
from ._chain import ChainVerdict as ChainVerdict
from ._chain import CheckChain as CheckChain
from ._chain import PermissionCheck as PermissionCheck
from ._chain import PolicyCheck as PolicyCheck
from ._chain import RegisteredCheck as RegisteredCheck
from ._chain import SchemaCheck as SchemaCheck
from ._detector import InjectionAction as InjectionAction
from ._detector import InjectionDetector as InjectionDetector
from ._detector import InjectionGuard as InjectionGuard
from ._findings import STRIP_MARKER as STRIP_MARKER
from ._findings import InjectionFinding as InjectionFinding
from ._findings import InjectionReport as InjectionReport
from ._hostile import NoPathTraversal as NoPathTraversal
from ._hostile import NoSQLFragments as NoSQLFragments
from ._normalize import normalize_text as normalize_text
from ._patterns import InjectionCategory as InjectionCategory
from ._patterns import InjectionPattern as InjectionPattern
from ._patterns import default_patterns as default_patterns
from ._patterns import load_patterns as load_patterns
from ._permission import PermissionPolicy as PermissionPolicy
from ._permission import check_permission as check_permission
from ._permission import scope_covers as scope_covers
from ._provenance import ArgumentOrigin as ArgumentOrigin
from ._provenance import Origin as Origin
from ._provenance import ProvenanceCheck as ProvenanceCheck
from ._provenance import ProvenancePolicy as ProvenancePolicy
from ._provenance import SourceKind as SourceKind
from ._provenance import SourceRule as SourceRule
from ._provenance import Sources as Sources
from ._provenance import trace_arguments as trace_arguments
from ._results import FilteredResult as FilteredResult
from ._results import filter_result as filter_result
from ._scope import ProposedCall as ProposedCall
from ._scope import ScopePolicy as ScopePolicy
from ._scope import check_policies as check_policies
from ._scope import policy_from_callable as policy_from_callable
from ._screen import InputPolicy as InputPolicy
from ._screen import InputScreen as InputScreen
from ._screen import ResultScreen as ResultScreen
from ._screen import ScreenResult as ScreenResult
from ._screen import input_policy_from_callable as input_policy_from_callable
from ._toolcall import check_arguments_parsed as check_arguments_parsed
from ._toolcall import check_registered as check_registered
from ._toolcall import check_schema as check_schema

__all__ = [
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
]
