"""The service's figures: `corral serve` as a real process, driven over loopback HTTP.

The server runs ``benchmarks/_serve_app.py`` (one agent, an instant model and tool, 5
steps a run, each step committed to a SQLite file before the next) in its own process;
this process is the client (httpx). Both share the machine's 2 cores, so every figure
includes the client's own cost. Prints:

  * submission latency (``POST /v1/runs``, one at a time): p50 / p99;
  * read latency (``GET /v1/runs/{id}`` of a finished run): p50 / p99;
  * ``GET /metrics`` latency after the runs;
  * end-to-end throughput: 200 runs submitted by 20 concurrent clients, each polling its
    run until it finished: runs/s and durable steps/s, from first request to last result.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _table import record

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-" + "0" * 24
SUBMITS = 200
READS = 500
RUNS = 200
CLIENTS = 20
STEPS = 5


def _start(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    import hashlib

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
        "CORRAL_SERVER__TOKENS": json.dumps(
            [
                {
                    "name": "bench",
                    "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                    "roles": ["admin"],
                }
            ]
        ),
        "CORRAL_SERVER__RATE_LIMIT_PER_MINUTE": "0",
        "CORRAL_SERVER__MAX_QUEUED_RUNS": "100000",
        "CORRAL_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "--db",
            f"sqlite:///{tmp / 'bench.db'}",
            "serve",
            "--port",
            "0",
            "--app",
            "_serve_app:app",
        ],
        env=env,
        cwd=tmp,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return process, found.group(1)
    raise SystemExit("the server did not start")


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


async def _until_finished(client: httpx.AsyncClient, run_id: str) -> None:
    while (await client.get(f"/v1/runs/{run_id}")).json()["status"] != "finished":
        await asyncio.sleep(0.005)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, url = _start(Path(tmp))
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
            async with httpx.AsyncClient(
                base_url=url, headers=headers, limits=limits, timeout=30
            ) as client:
                for _ in range(20):  # warm-up
                    run = (await client.post("/v1/runs", json={"task": "warm"})).json()
                    await _until_finished(client, run["run_id"])
                submit_ms, ids = [], []
                for _ in range(SUBMITS):
                    started = time.perf_counter()
                    response = await client.post("/v1/runs", json={"task": "look up"})
                    submit_ms.append((time.perf_counter() - started) * 1000)
                    ids.append(response.json()["run_id"])
                for run_id in ids:
                    await _until_finished(client, run_id)
                read_ms = []
                for i in range(READS):
                    started = time.perf_counter()
                    await client.get(f"/v1/runs/{ids[i % len(ids)]}")
                    read_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                metrics = await client.get("/metrics")
                metrics_ms = (time.perf_counter() - started) * 1000
                assert metrics.status_code == 200

                queue: asyncio.Queue[int] = asyncio.Queue()
                for i in range(RUNS):
                    queue.put_nowait(i)

                async def worker() -> None:
                    while not queue.empty():
                        queue.get_nowait()
                        run = (await client.post("/v1/runs", json={"task": "look up"})).json()
                        await _until_finished(client, run["run_id"])

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(CLIENTS)))
                elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"submit  (POST /v1/runs, one at a time): p50 {_pct(submit_ms, 50):.2f} ms, p99 {_pct(submit_ms, 99):.2f} ms"
    )
    print(
        f"read    (GET /v1/runs/ID, finished run): p50 {_pct(read_ms, 50):.2f} ms, p99 {_pct(read_ms, 99):.2f} ms"
    )
    print(f"metrics (GET /metrics, {SUBMITS + 20} runs seen): {metrics_ms:.1f} ms")
    print(
        f"end to end: {RUNS} runs by {CLIENTS} clients (submit, poll until finished): "
        f"{RUNS / elapsed:.0f} runs/s, {RUNS * STEPS / elapsed:.0f} durable steps/s "
        f"(client and server share 2 cores; polling costs the server reads too)"
    )
    record("bench_server", "submit latency p50 (POST /v1/runs)", _pct(submit_ms, 50), "ms")
    record("bench_server", "submit latency p99 (POST /v1/runs)", _pct(submit_ms, 99), "ms")
    record("bench_server", "read latency p99 (GET /v1/runs/ID)", _pct(read_ms, 99), "ms")
    record(
        "bench_server",
        f"end to end, {RUNS} runs by {CLIENTS} clients",
        RUNS * STEPS / elapsed,
        "steps/s",
        note="client and server share the 2 cores",
    )


if __name__ == "__main__":
    asyncio.run(main())
