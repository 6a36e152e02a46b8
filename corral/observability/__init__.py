"""Observability: the reasoning trail of every run (metrics and exporters build on it).

Public: `TrailWriter` (prints a live trail with rich), `TrailRow`, `trail_row`.
"""

from ._trail import TrailRow as TrailRow
from ._trail import TrailWriter as TrailWriter
from ._trail import trail_row as trail_row

__all__ = ["TrailRow", "TrailWriter", "trail_row"]
