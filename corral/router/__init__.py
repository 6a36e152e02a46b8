"""Deterministic routing: rules in code or TOML send each task to a sub-agent; never a model.

Public:

* `Rule`: conditions on a task (kind, tags, keywords, regex, predicate), ANDed; or a
  catch-all from `Rule.always`.
* `Router`: rules tried in order, first match wins, optional default agent;
  `route(task)` gives a `Route`, `explain(task)` an `Explanation` made of one `RuleCheck`
  per rule tried; `Router.from_toml(...)` loads rules from TOML.
* `Route`, `Explanation`, `RuleCheck`: the results, immutable values.

An unroutable task raises `corral.errors.RoutingError` carrying the `Explanation`; a bad
rule or TOML file raises `corral.errors.ConfigError`. Everything else here is private.
"""

from ._router import Explanation as Explanation
from ._router import Route as Route
from ._router import Router as Router
from ._rules import Rule as Rule
from ._rules import RuleCheck as RuleCheck

__all__ = ["Explanation", "Route", "Router", "Rule", "RuleCheck"]
