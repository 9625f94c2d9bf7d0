"""The database gauges: a ``prometheus_client`` collector that reads the figures of
:mod:`.readings` when scraped, at most once per ``PGJOBS["METRICS_CACHE_SECONDS"]`` per process
and database, however many scrapers ask.

The cache is the process's, behind one lock: scrapers arriving together while it is stale wait
for one read instead of each running it, and within the window no statement runs at all. What
is cached is the list of metric families, built once per read and never changed after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from django.db import connections
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.metrics import health
from django_pgjobs.metrics.readings import (
    QUEUE_FAMILIES,
    SCHEDULE_FAMILIES,
    Readings,
    read_figures,
)

logger = logging.getLogger("django_pgjobs.metrics")

_STATES = ("due", "scheduled", "running")
_CAPPED = "Stops at 10000 (the admin's 10,000+)."

# name: (help, labels). Units are in the names, as Prometheus asks; none of these is a counter.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pgjobs_jobs": (
        "Jobs by queue and state: due (claimable now), scheduled (due later, retries waiting "
        f"their turn included) and running. {_CAPPED}",
        ("queue", "state"),
    ),
    "pgjobs_oldest_due_job_age_seconds": (
        "Seconds since the queue's oldest due job became due (0: nothing due): how far behind "
        "the workers are.",
        ("queue",),
    ),
    "pgjobs_dead_letters": (
        f"Dead letters by queue, among the newest 10000 (exact below that). {_CAPPED}",
        ("queue",),
    ),
    "pgjobs_live_workers": ("Worker processes whose heartbeat is recent.", ()),
    "pgjobs_live_worker_slots": ("Handler threads of the live workers.", ()),
    "pgjobs_live_worker_busy_slots": (
        "Running jobs held by live workers (running jobs of a silent worker wait for the "
        f"rescue). {_CAPPED}",
        (),
    ),
    "pgjobs_schedule_enabled": (
        "1 if the schedule is enabled and still declared, 0 if disabled or orphaned.",
        ("schedule",),
    ),
    "pgjobs_schedule_last_fire_timestamp_seconds": (
        "When the schedule's latest tick fired (Unix time); absent if it never fired.",
        ("schedule",),
    ),
    "pgjobs_schedule_next_fire_timestamp_seconds": (
        "When the schedule's next tick is due (Unix time); absent if it will not fire. In the "
        "past by more than a poll interval: no scheduler is running.",
        ("schedule",),
    ),
    "pgjobs_workflows": (f"Workflows by status. {_CAPPED}", ("status",)),
    "pgjobs_queue_paused": ("1 if the queue is paused (accepts jobs, starts none).", ("queue",)),
    "pgjobs_queue_fair": (
        "1 if the queue's claims take turns between partition keys (fair), 0 if oldest first.",
        ("queue",),
    ),
    "pgjobs_queue_concurrency_limit": (
        "At most this many of the queue's jobs run at once, across workers.",
        ("queue",),
    ),
    "pgjobs_queue_worker_concurrency_limit": (
        "At most this many of the queue's jobs run at once in one worker process.",
        ("queue",),
    ),
    "pgjobs_queue_rate_limit": (
        "At most this many of the queue's jobs start in any window of "
        "pgjobs_queue_rate_period_seconds.",
        ("queue",),
    ),
    "pgjobs_queue_rate_period_seconds": (
        "The sliding window of the queue's rate limits.",
        ("queue",),
    ),
    "pgjobs_queue_partition_concurrency_limit": (
        "At most this many of the queue's jobs run at once per partition key.",
        ("queue",),
    ),
    "pgjobs_queue_partition_rate_limit": (
        "At most this many of the queue's jobs start per partition key in any window of "
        "pgjobs_queue_rate_period_seconds.",
        ("queue",),
    ),
    "pgjobs_queue_timeout_seconds": (
        "A job of the queue running longer fails with a timeout (unless the job or its handler "
        "says otherwise).",
        ("queue",),
    ),
    "pgjobs_metrics_read_timestamp_seconds": (
        "When these database figures were read (Unix time): they are reused until "
        "PGJOBS['METRICS_CACHE_SECONDS'] have passed.",
        (),
    ),
    "pgjobs_metrics_read_duration_seconds": ("How long reading these figures took.", ()),
    "pgjobs_metrics_truncated": (
        "1 if the metric's series were cut to bound the read: queues past the first 1000 "
        '(declared ones first, then by name) summed into queue="" (their limits left out), '
        "schedules past the first 1000 left out, or a queue's many priorities counted from "
        "their first 10000 jobs.",
        ("metric",),
    ),
}

# The limits of a pgjobs_queues row, by the gauge that shows each; a limit not set is absent.
_LIMITS = {
    "pgjobs_queue_concurrency_limit": "concurrency",
    "pgjobs_queue_worker_concurrency_limit": "worker_concurrency",
    "pgjobs_queue_rate_limit": "rate_limit",
    "pgjobs_queue_rate_period_seconds": "rate_period",
    "pgjobs_queue_partition_concurrency_limit": "partition_concurrency",
    "pgjobs_queue_partition_rate_limit": "partition_rate_limit",
    "pgjobs_queue_timeout_seconds": "timeout",
}

_lock = threading.Lock()
# alias: (time.monotonic() of the read, its families)
_cache: dict[str, tuple[float, list[Metric]]] = {}
# alias: time.monotonic() of the last read that failed
_failed: dict[str, float] = {}


class DatabaseCollector:
    """The database gauges of ``using``'s queue. ``close_connection``: close this thread's
    connection after a read (the exporter's threads are not Django's, and each scrape may come
    on a new one). ``quiet``: a database error is logged and the gauges are left out of the
    scrapes of that window, instead of failing them (a worker's exporter keeps serving its
    counters)."""

    def __init__(
        self, *, using: str | None = None, close_connection: bool = False, quiet: bool = False
    ) -> None:
        self.using = using
        self.close_connection = close_connection
        self.quiet = quiet

    def describe(self) -> list[Metric]:
        # The names only: a registry checks them for clashes without reading the database.
        return [_family(name) for name in FAMILIES] + health.described()

    def collect(self) -> Iterable[Metric]:
        alias = queue_database(self.using)
        window = conf.METRICS_CACHE_SECONDS
        with _lock:
            cached = _cache.get(alias)
            if cached is not None and time.monotonic() - cached[0] < window:
                return cached[1]
            failed = _failed.get(alias)
            if self.quiet and failed is not None and time.monotonic() - failed < window:
                # The database failed a read this window: try again after it, not on every
                # scrape (each would wait for a connection that is not coming, under the lock).
                return []
            try:
                families = database_families(read_figures(using=alias)) + health.health_families(
                    alias
                )
            except Exception:
                # Quiet (a worker's port): whatever failed, a database error or a row no reader
                # expected (plain SQL writes any), the worker's own metrics are still served.
                _failed[alias] = time.monotonic()
                if not self.quiet:
                    raise
                logger.warning("Reading the metrics' database figures failed", exc_info=True)
                return []
            finally:
                if self.close_connection:
                    connections[alias].close()
            _failed.pop(alias, None)
            _cache[alias] = (time.monotonic(), families)
            return families


def forget_cached() -> None:
    """Drop the process's cached figures (and failures): the next scrape reads the database."""
    with _lock:
        _cache.clear()
        _failed.clear()


def database_registry(*, using: str | None = None) -> CollectorRegistry:
    """A registry of the database gauges alone: what the command and the view serve."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(using=using))
    return registry


def database_families(readings: Readings) -> list[Metric]:
    families = {name: _family(name) for name in FAMILIES}

    def add(name: str, labels: list[str], value: float) -> None:
        families[name].add_metric(labels, value)

    for queue, figures in sorted(readings.queues.items()):
        for state in _STATES:
            add("pgjobs_jobs", [queue, state], getattr(figures, state))
        add("pgjobs_oldest_due_job_age_seconds", [queue], figures.oldest_due_age)
        add("pgjobs_dead_letters", [queue], figures.dead_letters)
        limits = figures.limits
        add("pgjobs_queue_paused", [queue], 1 if limits is not None and limits.paused else 0)
        add("pgjobs_queue_fair", [queue], 1 if limits is not None and limits.fair else 0)
        for name, limit in _LIMITS.items():
            value = None if limits is None else getattr(limits, limit)
            if value is not None:
                add(name, [queue], value)
    add("pgjobs_live_workers", [], readings.live_workers)
    add("pgjobs_live_worker_slots", [], readings.slots)
    add("pgjobs_live_worker_busy_slots", [], readings.busy_slots)
    for schedule in readings.schedules:
        add("pgjobs_schedule_enabled", [schedule.name], 1 if schedule.enabled else 0)
        if schedule.last_fire is not None:
            add(
                "pgjobs_schedule_last_fire_timestamp_seconds",
                [schedule.name],
                schedule.last_fire.timestamp(),
            )
        if schedule.next_fire is not None:
            add(
                "pgjobs_schedule_next_fire_timestamp_seconds",
                [schedule.name],
                schedule.next_fire.timestamp(),
            )
    for status, count in readings.workflows.items():
        add("pgjobs_workflows", [status], count)
    add("pgjobs_metrics_read_timestamp_seconds", [], readings.now.timestamp())
    add("pgjobs_metrics_read_duration_seconds", [], readings.seconds)
    for name in QUEUE_FAMILIES + SCHEDULE_FAMILIES:
        add("pgjobs_metrics_truncated", [name], 1 if name in readings.truncated else 0)
    return list(families.values())


def _family(name: str) -> GaugeMetricFamily:
    documentation, labels = FAMILIES[name]
    return GaugeMetricFamily(name, documentation, labels=labels)
