"""The event codec every backend shares: events to JSON text and back.

A stored event is a copy of the appended one with its ``seq`` (`with_seq`), and its text
is its ``model_dump_json()`` (`encode`: the `EventAdapter` format, dumped by the model's
own serializer, twice as fast). Decoding validates with `EventAdapter` and checks
that the row is where it claims to be; a bad row is a `CorralError` naming the journal,
the run and the seq, never a bare `ValidationError`. `LazyEvents` decodes a run's rows one
by one on first access, so a result's trail costs nothing until someone reads it.

Application data stored beside the events (delivered payloads, breaker states) goes
through `to_json` / `from_json`, so every backend stores and returns the same JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar, overload

import pydantic_core
from pydantic import BaseModel, ValidationError

from ..errors import CorralError, UsageError
from ..events import Event, EventAdapter

__all__ = ["LazyEvents", "decode", "decode_as", "encode", "from_json", "to_json", "with_seq"]

_M = TypeVar("_M", bound=BaseModel)
_E = TypeVar("_E", bound=BaseModel)


def with_seq(event: _E, seq: int) -> _E:
    """Return the event as stored: ``event.model_copy(update={"seq": seq})``, built directly.

    The same shallow copy `BaseModel.model_copy` makes (the field values, the fields set
    with ``seq``, no extra or private attributes: events forbid both), without its
    generic path, which costs as much as dumping the event to JSON. Appending is the hot
    path: every event goes through here once.

    Stored events with the same fields set share one set of their names: a journal held
    in memory keeps every event, and a set per event is that many more objects for the
    garbage collector to walk. Sharing is safe because events are frozen (pydantic adds
    to the set only on assignment) and `BaseModel.model_copy` copies the set first.
    """
    copy = _new(type(event))
    values = event.__dict__.copy()
    values["seq"] = seq
    _set(copy, "__dict__", values)
    _set(copy, "__pydantic_fields_set__", _fields_set(event.__pydantic_fields_set__))
    _set(copy, "__pydantic_extra__", None)
    _set(copy, "__pydantic_private__", None)
    return copy


def _fields_set(fields: set[str]) -> set[str]:
    """The shared set of `fields` plus ``seq``, made once per distinct set of names."""
    key = frozenset(fields)
    shared = _FIELDS_SETS.get(key)
    if shared is None:
        if len(_FIELDS_SETS) >= _MAX_FIELDS_SETS:  # bounded, whatever events are appended
            return set(key | _SEQ)
        shared = _FIELDS_SETS[key] = set(key | _SEQ)
    return shared


_new = object.__new__
_set = object.__setattr__  # as pydantic itself sets them, even on frozen models
_SEQ = frozenset({"seq"})
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_MAX_FIELDS_SETS = 1024


def encode(event: Event) -> str:
    """Return the stored form of `event`: its JSON text (``event.model_dump_json()``)."""
    return event.__pydantic_serializer__.to_json(event).decode()


def decode(where: str, run_id: str, seq: int, payload: str) -> Event:
    """Validate one stored event, read as event `seq` of run `run_id`.

    Args:
        where: the journal, as messages name it (a file, a URL without its password).
        run_id: the run the row belongs to.
        seq: the row's sequence number.
        payload: the stored JSON text.

    Raises:
        CorralError: the row is not a valid event, or is another run's or seq's.
    """
    try:
        event: Event = EventAdapter.validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else None
        place = ".".join(str(part) for part in first["loc"]) if first else ""
        reason = first["msg"] if first else str(exc)
        raise CorralError(
            f"journal {where}: event {seq} of run {run_id!r} is not a valid event "
            f"({place or 'payload'}: {reason})"
        ) from exc
    if event.run_id != run_id or event.seq != seq:
        raise CorralError(
            f"journal {where}: event {seq} of run {run_id!r} is stored as "
            f"event {event.seq} of run {event.run_id!r}"
        )
    return event


def decode_as(where: str, run_id: str, seq: int, payload: str, cls: type[_M]) -> _M:
    """`decode`, and check that the event is a `cls`.

    Raises:
        CorralError: as `decode`, or the event is of another kind.
    """
    event = decode(where, run_id, seq, payload)
    if not isinstance(event, cls):
        raise CorralError(
            f"journal {where}: event {seq} of run {run_id!r} is a {event.kind}, "
            f"not a {cls.__name__}"
        )
    return event


def to_json(value: Any, *, what: str) -> str:
    """Return `value` as JSON text.

    Args:
        value: JSON data.
        what: what the value is, for the error ("the payload delivered to 'k'").

    Raises:
        UsageError: the value cannot be serialised to JSON.
    """
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from exc


def from_json(text: str) -> Any:
    """Return the data of JSON text written by `to_json`."""
    return json.loads(text)


class LazyEvents(Sequence[Event]):
    """A run's stored events, decoded one by one on first access, then kept.

    Equal to any sequence of the same events (a list from ``read``, for one).

    Args:
        where: the journal, as messages name it.
        run_id: the run.
        rows: its ``(seq, payload)`` rows, in order.
    """

    __slots__ = ("_decoded", "_rows", "_run_id", "_where")

    def __init__(self, where: str, run_id: str, rows: list[tuple[int, str]]) -> None:
        self._where = where
        self._run_id = run_id
        self._rows = rows
        self._decoded: list[Event | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self._rows)))]
        if index < 0:
            index += len(self._rows)
        if not 0 <= index < len(self._rows):
            raise IndexError("event index out of range")
        return self._at(index)

    def _at(self, i: int) -> Event:
        event = self._decoded[i]
        if event is None:
            seq, payload = self._rows[i]
            event = self._decoded[i] = decode(self._where, self._run_id, seq, payload)
        return event

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} events of run {self._run_id!r}>"
