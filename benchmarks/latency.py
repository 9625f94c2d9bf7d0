"""Workload 3 of run.py: commit-to-handler-start latency of jobs enqueued one per transaction,
20 ms apart, to an idle worker woken by LISTEN/NOTIFY: the library tuned and at its defaults,
the raw-SQL baseline's listener, and the peers (each woken by its own notifications).
"""

from __future__ import annotations

import signal
import statistics
import time
from typing import TYPE_CHECKING, Any

from benchmarks.commands import baseline_command, defaults_command, worker_command
from benchmarks.report import percentile

if TYPE_CHECKING:
    from benchmarks.run import Bench


def latency(bench: Bench) -> dict[str, Any]:
    from django.db import transaction

    from django_pgjobs import enqueue

    count = bench.n(300)

    def measure(command: list[str], defaults: bool = False) -> dict[str, float]:
        bench.reset()
        proc = bench.spawn(command, defaults=defaults)
        try:
            wait_until_listening(bench)
            committed: dict[int, float] = {}
            for n in range(count):
                with transaction.atomic():
                    enqueue("bench.latency", {"n": n})
                committed[n] = time.time()
                time.sleep(0.02)
            deadline = time.monotonic() + 60
            while count_latency(bench) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = bench.raw.execute("SELECT n, started FROM bench_latency").fetchall()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        waits = sorted((started - committed[n]) * 1000 for n, started in rows)
        return {
            "p50": percentile(waits, 50),
            "p95": percentile(waits, 95),
            "p99": percentile(waits, 99),
        }

    worker = worker_command("--concurrency", "4", "--poll-interval", "60", "--no-scheduler")
    raw = baseline_command("listen", count)
    runs, peers = bench.rounds(
        {
            "library": lambda: measure(worker),
            "baseline": lambda: measure(raw),
            # As a user starts it: its default poll (5 s), threads and scheduler; woken by NOTIFY.
            "library_defaults": lambda: measure(defaults_command(), defaults=True),
        },
        peers=("latency", count, 1),
    )
    result: dict[str, Any] = {
        "name": f"latency, commit to handler start ({count} jobs, 20 ms apart)",
        "key": "latency",
    }
    for which in ("library", "baseline", "library_defaults"):
        for key in ("p50", "p95", "p99"):
            result[f"{which}_{key}_ms"] = statistics.median(r[key] for r in runs[which])
    result["peers"] = peers
    return result


def wait_until_listening(bench: Bench) -> None:
    """Until the library worker has registered or the baseline listener has connected."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = bench.raw.execute(
            "SELECT (SELECT count(*) FROM pgjobs_workers) + (SELECT count(*) "
            "FROM pg_stat_activity WHERE application_name = 'pgjobs-baseline')"
        ).fetchone()
        if row and row[0]:
            time.sleep(0.2)  # let it reach its wait
            return
        time.sleep(0.05)
    raise SystemExit("the listener never started")


def count_latency(bench: Bench) -> int:
    row = bench.raw.execute("SELECT count(*) FROM bench_latency").fetchone()
    return int(row[0]) if row else 0
