"""Loop detection on benign and looping traces: false stops and catches, old rule against new.

A trace is what a run's tools were asked and answered, in order. The benign traces are
work an agent legitimately does with one tool several times: reading the members of 4 to
10 channels, reading channels of which some are empty, paging through results, polling a
job whose status changes (and one whose status repeats), sending one message to each of
several people, reviewing invoices one by one, re-reading a file after each edit, a
banking task over several tools, and two hard cases (a sweep of folders most of which are
empty, and a poll that sees one status three times). The looping traces are what a stuck
model does: the same call again, the same call in other case or spacing, two calls in
alternation, pages the API ignores, new searches that all find nothing, a poll that never
changes, a failed call retried, one message sent again and again, and a two-tool cycle
whose answers are all stale (caught since stale results count across tools; before, only
the step cap stopped it).

Each trace is replayed through `corral.supervisor._loops.LoopState`, the rule the
supervisor applies (the call keys and result digests are the runtime's own:
`corral.subagents.call_key`, `result_digest`), under:

* ``old``: the same tool more than 3 times in a row (the former default);
* ``new``: today's defaults (identical calls, stale streaks across tools, chains of
  failures);
* a small grid of the new rule's two settings.

Prints, for each: the share of benign traces stopped (false stops, with their names),
the share of loops caught, and how many calls a caught loop made past its first repeat.
Then the cost of the rule per call in microseconds. ``tests/test_loop_detection.py``
asserts the figures of ``old`` and ``new``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral import Limits  # noqa: E402
from corral.subagents._state import call_key  # noqa: E402
from corral.supervisor._loops import LoopState, result_digest  # noqa: E402


@dataclass(frozen=True)
class Call:
    """One call of a trace: the tool, its arguments, what it answered (None: it failed)."""

    tool: str
    args: dict[str, object]
    result: str | None
    acted: bool = False
    """The tool has side effects (write or above)."""


@dataclass(frozen=True)
class Trace:
    """A named sequence of calls; `loop_from` is the index of the first looping call."""

    name: str
    calls: tuple[Call, ...]
    loop_from: int | None = None
    """None for a benign trace."""


def _j(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _names(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def benign_traces() -> list[Trace]:
    """Legitimate work that calls one tool several times."""
    traces: list[Trace] = []
    for n in range(4, 11):
        channels = _names(n, "channel-")
        calls = [Call("get_channels", {}, _j(channels))]
        calls += [
            Call("get_users_in_channel", {"channel": c}, _j([f"{c}-alice", f"{c}-bob"]))
            for c in channels
        ]
        calls.append(Call("send_direct_message", {"to": "alice", "body": "done"}, "sent", True))
        traces.append(Trace(f"channel members x{n}", tuple(calls)))
    for n in range(4, 11):
        channels = _names(n, "general-")
        calls = [Call("get_channels", {}, _j(channels))]
        calls += [
            Call(
                "read_channel_messages",
                {"channel": c},
                "[]" if i % 3 == 2 else _j([{"from": "bob", "body": f"note {i}"}]),
            )
            for i, c in enumerate(channels)
        ]
        traces.append(Trace(f"read channels x{n}, every third empty", tuple(calls)))
    for n in range(3, 9):
        calls = [
            Call(
                "search_transactions",
                {"query": "rent", "page": p},
                _j([f"tx-{p}-{k}" for k in range(3)]),
            )
            for p in range(1, n)
        ]
        calls.append(Call("search_transactions", {"query": "rent", "page": n}, "[]"))
        traces.append(Trace(f"paging x{n}", tuple(calls)))
    for n in range(3, 9):
        statuses = ["queued"] + [f"running {100 * k // n}%" for k in range(1, n - 1)] + ["done"]
        calls = [Call("get_job_status", {"job": "J-7"}, s) for s in statuses]
        traces.append(Trace(f"poll, status changes x{len(calls)}", tuple(calls)))
    for n in range(4, 9):
        calls = [
            Call(
                "send_direct_message", {"to": u, "body": "The meeting moved to 3pm."}, "sent", True
            )
            for u in _names(n, "user-")
        ]
        traces.append(Trace(f"message each of {n} people", tuple(calls)))
    invoices = _names(6, "INV-00010")
    grouped = [Call("search_invoices", {"customer": "Acme"}, _j(invoices))]
    grouped += [
        Call("get_invoice", {"invoice_id": i}, _j({"id": i, "total": 100 + k}))
        for k, i in enumerate(invoices)
    ]
    grouped += [
        Call("calculate_invoice", {"invoice_id": i}, _j({"id": i, "ok": k != 3}))
        for k, i in enumerate(invoices)
    ]
    traces.append(Trace("invoice review, grouped", tuple(grouped)))
    mixed = [Call("search_invoices", {"customer": "Acme"}, _j(invoices))]
    for k, i in enumerate(invoices):
        mixed.append(Call("get_invoice", {"invoice_id": i}, _j({"id": i, "total": 100 + k})))
        mixed.append(Call("calculate_invoice", {"invoice_id": i}, _j({"id": i, "ok": k != 3})))
    traces.append(Trace("invoice review, interleaved", tuple(mixed)))
    reread: list[Call] = []
    for k, text in enumerate(["A", "A B", "A B C"]):
        reread.append(Call("read_file", {"path": "notes.txt"}, text))
        reread.append(Call("append_file", {"path": "notes.txt", "text": f"line {k}"}, "ok", True))
    reread.append(Call("read_file", {"path": "notes.txt"}, "A B C line 2"))
    traces.append(Trace("re-read a file after each edit", tuple(reread)))
    banking = [
        Call("get_balance", {}, "1810.00"),
        Call("get_most_recent_transactions", {"n": 10}, _j([f"tx{k}" for k in range(10)])),
        Call("read_file", {"path": "bill-december-2023.txt"}, "Bill: 98.70 to UK12..."),
        Call("send_money", {"recipient": "UK12", "amount": 98.7}, "sent", True),
        Call("get_scheduled_transactions", {}, _j(["rent 1100"])),
        Call("update_scheduled_transaction", {"id": 7, "amount": 1200}, "updated", True),
        Call("get_balance", {}, "1711.30"),
    ]
    traces.append(Trace("banking task", tuple(banking)))
    folders = ["inbox", "work", "travel", "receipts", "archive", "spam", "drafts", "sent"]
    sweep = [
        Call("list_emails", {"folder": f}, "[]" if f in folders[2:7] else _j([f"{f}-mail"]))
        for f in folders
    ]
    traces.append(Trace("hard: 8 folders, 5 empty in a row", tuple(sweep)))
    statuses = ["queued", "running", "running", "running", "done"]
    traces.append(
        Trace(
            "hard: poll sees 'running' three times",
            tuple(Call("get_job_status", {"job": "J-9"}, s) for s in statuses),
        )
    )
    statuses = ["queued", "running", "running", "done"]
    traces.append(
        Trace(
            "poll sees 'running' twice",
            tuple(Call("get_job_status", {"job": "J-8"}, s) for s in statuses),
        )
    )
    return traces


def looping_traces(length: int = 12) -> list[Trace]:
    """What a stuck model does; each trace runs `length` calls unless stopped."""
    head = [Call("get_channels", {}, _j(["general", "random"]))]

    def loop(name: str, body: list[Call]) -> Trace:
        return Trace(name, tuple(head + body[: length - 1]), loop_from=1)

    q = "Acme invoice"
    spellings = [q, "acme invoice", " ACME  Invoice ", "Acme Invoice"]
    traces = [
        loop("same call", [Call("search", {"q": q}, "[]")] * length),
        loop(
            "same call, other case and spacing",
            [Call("search", {"q": spellings[k % 4]}, "[]") for k in range(length)],
        ),
        loop(
            "same read, a result",
            [Call("get_invoice", {"invoice_id": "INV-1"}, _j({"total": 5}))] * length,
        ),
        loop(
            "two calls in alternation",
            [
                Call("get_invoice", {"invoice_id": "INV-1"}, "{}")
                if k % 2 == 0
                else Call("get_customer", {"id": 3}, "{}")
                for k in range(length)
            ],
        ),
        loop(
            "pages the API ignores",
            [Call("list_transactions", {"page": k}, _j(["tx1", "tx2"])) for k in range(length)],
        ),
        loop(
            "new searches, nothing found",
            [Call("search", {"q": f"invoice {k}"}, "No results.") for k in range(length)],
        ),
        loop(
            "poll that never changes", [Call("get_job_status", {"job": "J-1"}, "running")] * length
        ),
        loop(
            "failed call retried", [Call("get_invoice", {"invoice_id": "INV-404"}, None)] * length
        ),
        loop(
            "one message sent again and again",
            [Call("send_message", {"channel": "general", "body": "hi"}, "sent", True)] * length,
        ),
        loop(
            "two-tool cycle, nothing found",
            [
                Call("search", {"q": f"bob {k}"}, "No results.")
                if k % 2 == 0
                else Call("get_user", {"name": f"bob{k}"}, "not found")
                for k in range(length)
            ],
        ),
    ]
    return traces


OLD = Limits(max_consecutive_same_tool=3, max_repeated_calls=None, max_stale_streak=None)
"""The former default: the same tool more than 3 times in a row."""
NEW = Limits()
"""Today's defaults."""


def stopped_at(trace: Trace, limits: Limits) -> int | None:
    """The index of the call the rule refuses, or None if the trace runs to its end."""
    state = LoopState()
    for index, c in enumerate(trace.calls):
        key = call_key(c.tool, c.args)
        if state.propose(c.tool, key, limits) is not None:
            return index
        if c.result is None:
            state.fail(key)
        else:
            state.result(c.tool, key, result_digest(c.result), acted=c.acted)
    return None


@dataclass(frozen=True)
class Score:
    """How a rule did on the traces."""

    false_stops: list[str]
    """Names of the benign traces it stopped."""
    benign: int
    caught: int
    loops: int
    missed: list[str]
    """Names of the looping traces it let run to their end."""
    wasted: float
    """Mean calls a caught loop made after its first looping call, the refused one excluded."""

    @property
    def false_stop_rate(self) -> float:
        return len(self.false_stops) / self.benign

    @property
    def catch_rate(self) -> float:
        return self.caught / self.loops


def score(limits: Limits) -> Score:
    """Replay every trace under `limits`."""
    benign = benign_traces()
    loops = looping_traces()
    false_stops = [t.name for t in benign if stopped_at(t, limits) is not None]
    wasted: list[int] = []
    missed: list[str] = []
    for t in loops:
        at = stopped_at(t, limits)
        if at is None:
            missed.append(t.name)
        else:
            assert t.loop_from is not None
            wasted.append(at - t.loop_from)
    return Score(
        false_stops,
        len(benign),
        len(wasted),
        len(loops),
        missed,
        statistics.mean(wasted) if wasted else 0.0,
    )


def cost_us(limits: Limits, runs: int = 200) -> float:
    """Median microseconds per call of the rule (propose, then record the result)."""
    traces = benign_traces() + looping_traces()
    prepared = [
        [
            (
                c.tool,
                call_key(c.tool, c.args),
                None if c.result is None else result_digest(c.result),
                c.acted,
            )
            for c in t.calls
        ]
        for t in traces
    ]
    calls = sum(len(p) for p in prepared)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for trace in prepared:
            state = LoopState()
            for tool, key, digest, acted in trace:
                if state.propose(tool, key, limits) is not None:
                    break
                if digest is None:
                    state.fail(key)
                else:
                    state.result(tool, key, digest, acted=acted)
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def _line(label: str, s: Score) -> str:
    return (
        f"{label:<34} false stops {len(s.false_stops):>2}/{s.benign} ({s.false_stop_rate:6.1%})   "
        f"caught {s.caught:>2}/{s.loops} ({s.catch_rate:6.1%})   wasted {s.wasted:4.1f} calls"
    )


def main() -> None:
    from _table import record  # here: tests import this module without benchmarks/ on the path

    old, new = score(OLD), score(NEW)
    print(f"{len(benign_traces())} benign traces, {len(looping_traces())} looping traces\n")
    print(_line("old: same tool > 3 in a row", old))
    print(_line("new: defaults (repeats 2, stale 3)", new))
    print()
    for repeats in (1, 2, 3):
        for stale in (2, 3, 4, 5):
            limits = Limits(max_repeated_calls=repeats, max_stale_streak=stale)
            print(_line(f"  repeats {repeats}, stale {stale}", score(limits)))
    print()
    print("old rule stops:", ", ".join(old.false_stops) or "none")
    print("new rule stops:", ", ".join(new.false_stops) or "none")
    print("old rule misses:", ", ".join(old.missed) or "none")
    print("new rule misses:", ", ".join(new.missed) or "none")
    print()
    new_cost = cost_us(NEW)
    print(f"cost per call: old {cost_us(OLD):.2f} us, new {new_cost:.2f} us")
    # the bounds are tests/test_loop_detection.py's assertions on the new rule
    record(
        "bench_loops",
        "loop rule: benign traces stopped",
        100 * new.false_stop_rate,
        "%",
        target=("<", 6.0),
    )
    record(
        "bench_loops", "loop rule: loops caught", 100 * new.catch_rate, "%", target=(">=", 100.0)
    )
    record("bench_loops", "loop rule: cost per call", new_cost, "us")


if __name__ == "__main__":
    main()
