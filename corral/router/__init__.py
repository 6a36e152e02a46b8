"""Router: deterministic rules that send each task to a sub-agent. Never a model.

Public: `Rule`, `Router`, `Route`, `Explanation`, `RuleCheck`.
"""

from ._rules import Explanation as Explanation
from ._rules import Route as Route
from ._rules import Router as Router
from ._rules import Rule as Rule
from ._rules import RuleCheck as RuleCheck

__all__ = ["Explanation", "Route", "Router", "Rule", "RuleCheck"]
