"""Plain JSON data from any value: what providers' SDKs and the result filter accept."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["plain_json"]


def plain_json(value: Any) -> Any:
    """Turn any value into plain JSON data (dict with str keys, list, str, number...).

    Mappings and sequences are deep-copied; pydantic models and dataclasses are dumped;
    sets are sorted; bytes are decoded; a non-finite float and anything else become text.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, BaseModel):
        return plain_json(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_json(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain_json(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
