"""Observability: the reasoning trail of every run, metrics, traces and JSON logs.

Public:

* the live trail: `TrailWriter` (prints each run's trail with rich), `TrailRow`, `trail_row`;
* the trail of a run after the fact, as a tree: `render_trace`, `trace_tree` (``_tree``);
* Prometheus metrics: `Metrics`, an event subscriber with gauges read at scrape
  (``_metrics``; needs the ``server`` extra, prometheus-client);
* OpenTelemetry spans with the GenAI conventions: `OtelSpans` (``_otel``; needs the
  ``otel`` extra, opentelemetry-api);
* JSON logs: `configure_json_logs`, `json_formatter`, and `add_log_context`, a structlog
  processor adding the run a record is about (bound by the agent loop, ``corral._log``)
  to a program's own logs (``_logs``).

Importing this package imports neither prometheus-client nor OpenTelemetry: each is
imported when a `Metrics` or an `OtelSpans` is built, which raises `ConfigError` naming
the extra to install when it is missing.
"""

from ._logs import add_log_context as add_log_context
from ._logs import configure_json_logs as configure_json_logs
from ._logs import json_formatter as json_formatter
from ._metrics import Metrics as Metrics
from ._otel import OtelSpans as OtelSpans
from ._trail import TrailRow as TrailRow
from ._trail import TrailWriter as TrailWriter
from ._trail import trail_row as trail_row
from ._tree import render_trace as render_trace
from ._tree import trace_tree as trace_tree

__all__ = [
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
]
