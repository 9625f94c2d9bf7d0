"""What every peer's process shares: its database, its command line, its answer.

A peer module is run as ``python -m benchmarks.peers.<peer> WORKLOAD --count N [--processes P]``
with its scratch database in ``BENCH_DATABASE_URL`` (never on a command line: ``ps`` shows those
to every user). It prints one JSON object on its last line of stdout, which orchestra.py reads.
Workers a peer starts for a drain or a latency run are the same module with ``worker`` as the
workload, so they too carry no database on their command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Jobs 20 ms apart, as run.py's latency workload enqueues them for our worker.
LATENCY_GAP = 0.02


def database_url() -> str:
    return os.environ["BENCH_DATABASE_URL"]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1)
    # For ``worker``: what it is for (drain, latency, workflows) and its index among its peers.
    parser.add_argument("--mode", default="drain")
    parser.add_argument("--index", type=int, default=0)
    return parser.parse_args(argv)


def answer(result: dict[str, Any]) -> None:
    """The process's result, as the last line of its stdout."""
    print(json.dumps(result), flush=True)


def worker_command(module: str, mode: str, count: int, index: int = 0) -> list[str]:
    return [
        sys.executable, "-m", f"benchmarks.peers.{module}", "worker",
        "--mode", mode, "--count", str(count), "--index", str(index),
    ]  # fmt: skip


def spawn(command: list[str]) -> subprocess.Popen[bytes]:
    """A worker process, in this one's environment (which holds the database)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 (our own command)


def run_workers(module: str, mode: str, count: int, processes: int) -> None:
    procs = [spawn(worker_command(module, mode, count, i)) for i in range(processes)]
    for proc in procs:
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"peer worker failed: {proc.args!r}")


def percentile(values: list[float], p: float) -> float:
    """As run.py's: the nearest rank, so both sides of a ratio are read alike."""
    if not values:
        return float("nan")
    return values[min(round(p / 100 * (len(values) - 1)), len(values) - 1)]


def latency_figures(waits_ms: list[float]) -> dict[str, float]:
    waits = sorted(waits_ms)
    return {f"p{p}": percentile(waits, p) for p in (50, 95, 99)}


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


LATENCY_TABLE = "CREATE TABLE IF NOT EXISTS bench_latency (n int, started float8)"


async def measure_latency(
    enqueue_one: Callable[[int], Awaitable[None]], count: int
) -> dict[str, float]:
    """Commit-to-handler-start waits of ``count`` jobs enqueued one per transaction, 20 ms apart,
    to an idle worker already running (its handler writes ``(n, time.time())`` into
    ``bench_latency`` as our own latency handler does). A first job, n = -1, is waited for
    before any is timed: the worker is then listening, whatever its start-up takes."""
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("TRUNCATE bench_latency")

        def seen(minimum: int, where: str) -> bool:
            row = conn.execute(f"SELECT count(*) FROM bench_latency WHERE {where}").fetchone()
            return bool(row and row[0] >= minimum)

        await enqueue_one(-1)
        wait_for(lambda: seen(1, "n = -1"), 60, "the peer's worker to start")
        committed: dict[int, float] = {}
        for n in range(count):
            await enqueue_one(n)
            committed[n] = time.time()
            await asyncio.sleep(LATENCY_GAP)
        wait_for(lambda: seen(count, "n >= 0"), 60, "the peer's worker to run every job")
        rows = conn.execute("SELECT n, started FROM bench_latency WHERE n >= 0").fetchall()
    return latency_figures([(started - committed[n]) * 1000 for n, started in rows])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """A long-running worker asked to stop as a process manager would (SIGTERM), then made to."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
