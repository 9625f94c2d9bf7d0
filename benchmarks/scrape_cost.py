"""Workload 8 of run.py: what a Prometheus scrape of the database gauges costs a drain (issue 16:
"a scrape every 15 s costs the database nothing measurable").

N due no-op jobs drained by one ``pgjobs_worker --burst -v 0`` process, three ways, interleaved
in a rotating order so that a machine's drift touches them alike:

- no scrape;
- a scrape every 15 s, Prometheus' usual interval;
- a scrape every second, to see the cost at all.

The scraper is a thread of this process (not the worker's): each scrape drops the process's
cached figures and calls ``database_text()``, what ``pgjobs metrics`` and the view serve (the
database gauges and the PostgreSQL health gauges), so every scrape reads the database. Its
first scrape comes half an interval after the worker starts, then one every interval, until the
worker exits; only those between the drain's first claim and last completion are counted.
Ratios are to the drain without a scrape: of the medians, and the median of each repeat's ratio
to its own unscraped run. Each scrape's time is reported too (its gauges' part is the
``pgjobs_metrics_read_duration_seconds`` it exports; the rest is the health read and the
formatting), and, apart from any drain, the time of one scrape with the N jobs due and no
worker running: what a scrape costs the database, without the drain's noise.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

from benchmarks.commands import worker_command
from benchmarks.report import interleaved

if TYPE_CHECKING:
    from benchmarks.run import Bench

# Label and the seconds between scrapes (None: no scraper).
INTERVALS: tuple[tuple[str, float | None], ...] = (
    ("no scrape", None),
    ("a scrape every 15 s", 15.0),
    ("a scrape every 1 s", 1.0),
)
_GAUGES_TIME = "pgjobs_metrics_read_duration_seconds "


class Scraper:
    """Scrapes every ``interval`` seconds, the first after half of one, until stopped; keeps
    when each scrape started (``time.time()``), how long it took and its gauges' part."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.scrapes: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        from django.db import connections

        from django_pgjobs.metrics import database_text
        from django_pgjobs.metrics.collector import forget_cached

        try:
            due = time.monotonic() + self.interval / 2
            while not self._stop.wait(max(due - time.monotonic(), 0)):
                forget_cached()  # a read of the database every time, as past the cache window
                started, clock = time.time(), time.perf_counter()
                text = database_text()
                took = time.perf_counter() - clock
                gauges = next(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith(_GAUGES_TIME)
                )
                self.scrapes.append((started, took, gauges))
                due += self.interval
        finally:
            connections.close_all()


def _alone(bench: Bench, count: int) -> dict[str, Any]:
    """Scrapes one after another, ``count`` jobs due and no worker: each scrape's time."""
    bench.reset()
    bench.copy_jobs(count)
    bench.raw.execute("VACUUM ANALYZE pgjobs_job_queue")
    with Scraper(0.0) as scraper:
        while len(scraper.scrapes) < 5 * bench.repeat:
            time.sleep(0.05)
    took = [s[1] * 1000 for s in scraper.scrapes]
    return {
        "median": statistics.median(took),
        "min": min(took),
        "max": max(took),
        "gauges_ms": statistics.median(s[2] * 1000 for s in scraper.scrapes),
        "scrapes": len(took),
    }


def _drain(bench: Bench, count: int, interval: float | None) -> tuple[float, list[Any]]:
    """One drain; its rate (from the rows) and the scrapes made while it ran."""

    bench.copy_jobs(count)
    bench.raw.execute("VACUUM ANALYZE pgjobs_job_queue")
    if interval is None:
        bench.run_processes([worker_command("--burst")])
        return bench.drain_rate(), []
    with Scraper(interval) as scraper:
        bench.run_processes([worker_command("--burst")])
    row = bench.raw.execute(
        "SELECT extract(epoch FROM min(locked_at)), extract(epoch FROM max(completed_at)) "
        "FROM pgjobs_job_queue WHERE status = 'completed'"
    ).fetchone()
    assert row is not None
    first, last = float(row[0]), float(row[1])
    return bench.drain_rate(), [s for s in scraper.scrapes if first <= s[0] <= last]


def scrape_cost(bench: Bench) -> list[dict[str, Any]]:
    count = bench.n(100_000)
    rates: dict[str, list[float]] = {label: [] for label, _ in INTERVALS}
    scrapes: dict[str, list[list[Any]]] = {label: [] for label, _ in INTERVALS}
    for repeat in range(bench.repeat):
        turn = repeat % len(INTERVALS)
        for label, interval in INTERVALS[turn:] + INTERVALS[:turn]:
            bench.reset()
            rate, made = _drain(bench, count, interval)
            rates[label].append(rate)
            scrapes[label].append(made)

    def figures(label: str) -> dict[str, Any]:
        runs = rates[label]
        made = [s for each in scrapes[label] for s in each]
        return {
            "median": statistics.median(runs),
            "min": min(runs),
            "max": max(runs),
            "runs": runs,
            "scrapes_per_drain": statistics.median(len(each) for each in scrapes[label]),
            "scrape_ms": statistics.median(s[1] for s in made) * 1000 if made else None,
            "gauges_ms": statistics.median(s[2] for s in made) * 1000 if made else None,
        }

    unscraped = figures("no scrape")
    results: list[dict[str, Any]] = [
        {
            "name": f"one scrape, {count} jobs due, no worker",
            "unit": "ms",
            "n": count,
            "library": _alone(bench, count),
            "scrape_alone": True,
        }
    ]
    for label, _ in INTERVALS[1:]:
        ours = figures(label)
        results.append(
            interleaved(
                f"drain {count} jobs, 1 process, {label} / none", count, ours, unscraped,
                "the same worker, no scraper, interleaved",
            )
        )  # fmt: skip
    return results
