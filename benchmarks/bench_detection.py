"""Prompt-injection detection, measured on the labelled corpus: rates and cost.

Prints:

* per attack template and split (``dev``: tuned on; ``heldout``: other goals; ``blind``:
  written after the patterns were frozen), the number of attacks and the true-positive
  rate at the default threshold (0.5);
* the false-positive rate on the benign corpus (ordinary business text, AgentDojo's
  environment strings, garak's documents), text by text and read as one run's results
  one after another (the seam check);
* the instructions split across two results that a run's `ResultScreen` catches, and
  how many of them neither half shows alone;
* the cost: µs per KB for the benign texts one by one (the typical small result), and
  seconds for one 1 MB and one 10 MB result (plain text, and a JSON result through the
  whole `ResultScreen`), to show the cost grows linearly.

The corpus is ``tests/fixtures/injection/corpus.json`` (sources and licences in
``NOTICE.md`` there). Figures only; ``tests/test_injection_detection_*.py`` asserts the
floors. Run: ``.venv/bin/python benchmarks/bench_detection.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _table import record  # noqa: E402

from corral.guardrails import InjectionDetector, InjectionGuard  # noqa: E402
from corral.guardrails._screen import InputScreen  # noqa: E402

CORPUS = json.loads((ROOT / "tests/fixtures/injection/corpus.json").read_text("utf-8"))
DETECTOR = InjectionDetector()
THRESHOLD = InjectionGuard().threshold


def best(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def rates() -> None:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for attack in CORPUS["attacks"]:
        key = (attack["template"], attack["split"])
        counts[key][0] += 1
        counts[key][1] += DETECTOR.scan(attack["text"]).score >= THRESHOLD
    print(f"{'template':30} {'split':8} {'n':>5} {'TPR':>7}")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (template, split), (n, hits) in sorted(counts.items()):
        print(f"{template:30} {split:8} {n:5} {hits / n:7.1%}")
        totals[split][0] += n
        totals[split][1] += hits
    for split, (n, hits) in sorted(totals.items()):
        print(f"{'all':30} {split:8} {n:5} {hits / n:7.1%}")
        record("bench_detection", f"injection TPR, {split} split", 100 * hits / n, "%")


def false_positives() -> None:
    benign = CORPUS["benign"]
    flagged = [b for b in benign if DETECTOR.scan(b["text"]).score >= THRESHOLD]
    print(f"\nFPR, text by text: {len(flagged)}/{len(benign)} = {len(flagged) / len(benign):.2%}")
    fpr_target = ("<=", 1.0)  # tests/test_injection_detection_corpus.py's MAX_FPR
    record(
        "bench_detection",
        "FPR, benign text by text",
        100 * len(flagged) / len(benign),
        "%",
        target=fpr_target,
    )
    for b in flagged:
        print(f"  {b['source']}: {b['text'][:90]!r}")
    screen = InputScreen(pii="off").for_run()
    seams = [b for b in benign if screen.screen(b["text"]).blocked]
    print(
        f"FPR, read as one run's results: {len(seams)}/{len(benign)} = {len(seams) / len(benign):.2%}"
    )
    record(
        "bench_detection",
        "FPR, benign read as one run's results",
        100 * len(seams) / len(benign),
        "%",
        target=fpr_target,
    )
    by_source: dict[str, int] = defaultdict(int)
    for b in benign:
        by_source[b["source"]] += 1
    print("benign corpus:", ", ".join(f"{s} {n}" for s, n in sorted(by_source.items())))


def splits() -> None:
    caught = together_only = 0
    for case in CORPUS["splits"]:
        first, second = case["parts"]
        alone = InputScreen(pii="off")
        halves = (
            alone.screen(first, source="tool_result").blocked
            or alone.screen(second, source="tool_result").blocked
        )
        run = alone.for_run()
        if run.screen(first).blocked or run.screen(second).blocked:
            caught += 1
            together_only += not halves
    n = len(CORPUS["splits"])
    print(
        f"\nsplit across two results: {caught}/{n} caught ({together_only} only when read together)"
    )


def cost() -> None:
    texts = [b["text"] for b in CORPUS["benign"]]
    kb = sum(len(t.encode()) for t in texts) / 1024
    elapsed = best(3, lambda: [DETECTOR.scan(t) for t in texts])
    print(
        f"\ncost, benign texts one by one: {elapsed / kb * 1e6:.0f} µs per KB "
        f"({elapsed / len(texts) * 1e6:.0f} µs per text, {kb * 1024 / len(texts):.0f} bytes each)"
    )
    record("bench_detection", "scan cost, benign texts", elapsed / kb * 1e6, "us/KB")
    attack_kb = sum(len(a["text"].encode()) for a in CORPUS["attacks"]) / 1024
    elapsed = best(3, lambda: [DETECTOR.scan(a["text"]) for a in CORPUS["attacks"]])
    print(f"cost, attacks one by one: {elapsed / attack_kb * 1e6:.0f} µs per KB")
    body = "\n".join(texts)
    for mb in (1, 10):
        size = mb * 1_000_000
        text = (body * (size // len(body) + 1))[:size]
        seconds = best(2 if mb == 1 else 1, lambda text=text: DETECTOR.scan(text))
        rows = [{"id": i, "subject": texts[i % len(texts)]} for i in range(size // 150)]
        raw = json.dumps(rows)
        screen = InputScreen(pii="off", max_screen_chars=20_000_000)
        json_seconds = best(
            2 if mb == 1 else 1,
            lambda raw=raw, screen=screen: screen.for_run().screen(raw, shown=raw[:3200]),
        )
        print(
            f"cost, one {mb:2} MB result: scan {seconds:6.2f} s; JSON result "
            f"({len(raw) / 1e6:.1f} MB) through ResultScreen {json_seconds:6.2f} s"
        )


if __name__ == "__main__":
    rates()
    false_positives()
    splits()
    cost()
