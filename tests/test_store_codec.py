"""The event codec shared by the backends: stored copies, JSON text, decoding errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from corral.errors import CorralError, UsageError
from corral.events import EventAdapter, GateOpened, WaitStarted
from corral.store._codec import (
    LazyEvents,
    decode,
    decode_as,
    encode,
    from_json,
    to_json,
    with_seq,
)

from .test_store_sqlite import every_kind


def test_the_stored_copy_is_what_model_copy_makes_for_every_kind() -> None:
    for event in every_kind("r1"):
        before = event.model_copy(deep=True)
        stored = with_seq(event, 7)
        expected = event.model_copy(update={"seq": 7})
        assert stored == expected and type(stored) is type(event)
        assert stored.model_fields_set == expected.model_fields_set
        assert stored.__pydantic_private__ == expected.__pydantic_private__
        assert stored.__pydantic_extra__ == expected.__pydantic_extra__
        assert event == before and event.seq == 0  # the original is untouched
        assert encode(stored) == stored.model_dump_json() == EventAdapter.dump_json(stored).decode()
        assert decode("j.db", "r1", 7, encode(stored)) == stored


def test_the_stored_copy_works_on_frozen_models() -> None:
    """Events are to become frozen: the copy must not need to set attributes on them."""

    class Frozen(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        run_id: str
        seq: int = 0

    original = Frozen(run_id="r1")
    stored = with_seq(original, 3)
    assert stored == Frozen(run_id="r1", seq=3) and original.seq == 0
    with pytest.raises(ValueError, match="frozen"):
        stored.seq = 4


def test_a_bad_row_names_the_journal_the_run_and_the_seq() -> None:
    opened = next(e for e in every_kind("r1") if isinstance(e, GateOpened))
    text = encode(with_seq(opened, 2))
    with pytest.raises(CorralError, match=r"journal j\.db: event 2 of run 'r1' is not a valid"):
        decode("j.db", "r1", 2, text.replace('"gate_id"', '"gate"'))
    with pytest.raises(CorralError, match="event 3 of run 'r1' is stored as event 2 of run 'r1'"):
        decode("j.db", "r1", 3, text)
    with pytest.raises(CorralError, match="event 2 of run 'r2' is stored as event 2 of run 'r1'"):
        decode("j.db", "r2", 2, text)
    with pytest.raises(CorralError, match="is a gate_opened, not a WaitStarted"):
        decode_as("j.db", "r1", 2, text, WaitStarted)
    assert decode_as("j.db", "r1", 2, text, GateOpened) == with_seq(opened, 2)


def test_lazy_events_decode_on_first_look_and_equal_the_list() -> None:
    events = [with_seq(e, i) for i, e in enumerate(every_kind("r1"), start=1)]
    rows = [(e.seq, encode(e)) for e in events]
    rows[3] = (4, "{not json")
    lazy = LazyEvents("j.db", "r1", rows)  # nothing decoded yet: no error
    assert len(lazy) == len(events) and lazy[0] == events[0] and lazy[-1] == events[-1]
    assert lazy[1:3] == events[1:3]
    with pytest.raises(CorralError, match="event 4 of run 'r1' is not a valid event"):
        lazy[3]
    good = LazyEvents("j.db", "r1", [(e.seq, encode(e)) for e in events])
    assert good == events and list(good) == events
    with pytest.raises(IndexError):
        good[len(events)]


def test_application_data_goes_through_json() -> None:
    assert from_json(to_json({"a": [1, 2.5, None]}, what="x")) == {"a": [1, 2.5, None]}
    with pytest.raises(UsageError, match="the payload delivered to 'k' is not JSON"):
        to_json(object(), what="the payload delivered to 'k'")
