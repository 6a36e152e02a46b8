"""Orchestration cost per step, in memory, with an instant model and instant tools.

A step is one model call plus the tool call it proposes, through everything Corral does
around them: supervisor reservation and settlement, loop and breaker checks, name and
schema validation, timeout and retry wrappers, result screening and rendering, and four journal events.

Prints steps per second and microseconds per step (median of several repetitions) for
one run and for 100 concurrent runs. Target (issue 17): at most 60 us of orchestration per
step at one run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _instant import LIMITS, InstantModel, lookup  # noqa: E402
from _table import record  # noqa: E402

from corral import Runtime, SubAgent  # noqa: E402

STEPS_PER_RUN = 50
REPEATS = 5


async def measure(concurrent: int) -> float:
    agent = SubAgent(
        "bench",
        instructions="Benchmark agent.",
        tools=[lookup],
        model=InstantModel(STEPS_PER_RUN),
        limits=LIMITS,
    )
    async with Runtime(agents=[agent]) as runtime:
        await runtime.run("warm up")
        start = time.perf_counter()
        handles = [await runtime.submit(f"task {i}") for i in range(concurrent)]
        results = [await h.result() for h in handles]
        elapsed = time.perf_counter() - start
    assert all(r.outcome == "completed" and r.steps == STEPS_PER_RUN for r in results)
    return elapsed / (concurrent * STEPS_PER_RUN)


def main() -> None:
    print(f"bench_core: {STEPS_PER_RUN} steps per run, median of {REPEATS} repetitions")
    for concurrent in (1, 100):
        per_step = statistics.median(anyio.run(measure, concurrent) for _ in range(REPEATS))
        print(
            f"  {concurrent:>3} concurrent run(s): {1 / per_step:>9,.0f} steps/s  "
            f"{per_step * 1e6:>7.1f} us/step" + ("   (target <= 60 us)" if concurrent == 1 else "")
        )
        record(
            "bench_core",
            f"in-memory orchestration per step, {concurrent} run(s)",
            per_step * 1e6,
            "us/step",
            target=("<=", 60.0) if concurrent == 1 else None,
            note="no journal, instant model and tool",
        )


if __name__ == "__main__":
    main()
