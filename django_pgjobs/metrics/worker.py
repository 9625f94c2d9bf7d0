"""A worker process's own metrics: what it ran and how it went, counted as it writes outcomes.

The loop thread writes outcomes and the handler threads start attempts: neither may wait on
metrics. So each event is only noted (a tuple appended to a deque: no lock, no label lookup)
and applied to the ``prometheus_client`` metrics later, by the worker's after-write thread
(:mod:`django_pgjobs.worker.after_write`) or by a scrape, whichever comes first. A scrape always
sees every event noted before it.

At most ``MAX_NOTED`` events wait; past that (an after-write thread stuck in a slow signal
receiver, and nobody scraping) new ones are dropped and counted in
``pgjobs_worker_metric_events_dropped_total``.

Queue names come from rows, which plain SQL may write with any names: the process takes at
most ``MAX_LABEL_VALUES`` of them, the first seen, for all its metrics alike (a queue is never
its own series in one and summed in another), and counts the others' jobs as ``OTHER``, so that
neither the process's memory nor a scrape grows without end. Job names need no bound: a worker
claims only jobs whose name it has a handler for, so they are as many as the code registers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from django_pgjobs import queries
from django_pgjobs.metrics.readings import OTHER
from django_pgjobs.worker.outcomes import Outcome, Written

# From a no-op job to the default TIMEOUT of an hour.
BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, float("inf"),
)  # fmt: skip
# A few seconds of a busy worker's events: enough for any pause of the after-write thread a
# scrape does not catch, bounded when neither runs.
MAX_NOTED = 100_000
# Distinct queue names this process's metrics take; a project with more queues than this has
# bigger dashboards to worry about, a stream of made-up names written by SQL would otherwise add
# series (and memory) for ever. A metric's series are then at most this many queues plus one,
# times the registered job names, times its outcomes.
MAX_LABEL_VALUES = 200

_STARTED, _WRITTEN, _RESCUED = 0, 1, 2
_FAILED = (Outcome.RETRIED, Outcome.BURIED)
_RESCUE_OUTCOMES = ("retried", "buried", "unstarted")  # in the order rescued() notes them


class WorkerMetrics:
    """The counters, histograms and gauges of one worker process: a ``prometheus_client``
    collector to register (the exporter registers it), and the
    :class:`~django_pgjobs.worker.after_write.Measured` a :class:`~django_pgjobs.worker.Worker`
    is given."""

    def __init__(self) -> None:
        # Each labelled metric's label names, in order, for _bounded.
        self._label_names: dict[Any, tuple[str, ...]] = {}

        def counter(name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
            metric = Counter(name, documentation, labels, registry=None)
            self._label_names[metric] = labels
            return metric

        def histogram(name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
            metric = Histogram(name, documentation, labels, registry=None, buckets=BUCKETS)
            self._label_names[metric] = labels
            return metric

        self.runs = counter(
            "pgjobs_job_runs",
            "Attempts whose outcome this worker wrote, by outcome: completed, retried, buried "
            "(to the dead letters), cancelled (by its handler), snoozed, handed_back (a workflow "
            "waiting), released (given back unstarted: too late for its rate limit), lost (the "
            "job was rescued or cancelled meanwhile).",
            ("queue", "job_name", "outcome"),
        )
        self.failures = counter(
            "pgjobs_job_failures",
            "Failed attempts this worker wrote: retried or buried.",
            ("queue", "job_name"),
        )
        self.retries = counter(
            "pgjobs_job_retries",
            "Failed attempts this worker wrote that will be retried.",
            ("queue", "job_name"),
        )
        self.rescues = counter(
            "pgjobs_jobs_rescued",
            "Jobs of silent workers this worker's rescue sweep took back: retried (due again, "
            "the attempt counted), buried (that was its last attempt), unstarted (claimed ahead, "
            "never started: the attempt not counted).",
            ("outcome",),
        )
        self.duration = histogram(
            "pgjobs_job_duration_seconds",
            "Seconds handlers ran, by job name, whatever the outcome.",
            ("job_name",),
        )
        self.latency = histogram(
            "pgjobs_job_start_latency_seconds",
            "Seconds from when a job became due (enqueued, or its scheduled time or retry came) "
            "to when its handler started: the worker's clock against the database's.",
            ("queue",),
        )
        self.slots = Gauge("pgjobs_worker_slots", "This worker's handler threads.", registry=None)
        self.busy = Gauge(
            "pgjobs_worker_busy_slots",
            "This worker's handler threads running (or about to run) an attempt.",
            registry=None,
        )
        self._metrics = (
            self.runs, self.failures, self.retries, self.rescues, self.duration, self.latency,
            self.slots, self.busy,
        )  # fmt: skip
        self._noted: deque[tuple[Any, ...]] = deque()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        # The queue names every metric shows as such, up to the bound: the first seen.
        self._queues: set[str] = set()
        self._drain_pending = False
        self.dropped = 0

    def watch(self, *, slots: int, busy: Callable[[], int]) -> None:
        """Show the worker's slots, and its busy ones as ``busy()`` says at each scrape."""
        self.slots.set(slots)
        self.busy.set_function(busy)

    # Noting, on the threads that run and write attempts: as little as can be.

    def started(self, job: queries.ClaimedJob) -> bool:
        return self._note((_STARTED, job.queue, time.time(), job.scheduled_for))

    def written(self, written: Written, took: float) -> bool:
        job = written.job
        return self._note((_WRITTEN, job.queue, job.job_name, written.outcome, took))

    def rescued(self, *, retried: int, buried: int, unstarted: int) -> bool:
        return self._note((_RESCUED, retried, buried, unstarted))

    def _note(self, event: tuple[Any, ...]) -> bool:
        """Note ``event``; True if a drain must be scheduled for it (none is pending)."""
        if len(self._noted) >= MAX_NOTED:
            self.dropped += 1
            return False
        self._noted.append(event)
        if self._drain_pending:
            return False
        self._drain_pending = True
        return True

    # Applying, on the after-write thread or a scrape's.

    def drain(self) -> None:
        """Apply everything noted (the after-write thread's task). The flag is lowered first:
        an event noted from then on either is applied here or schedules the next drain."""
        self._drain_pending = False
        self._apply()

    def _apply(self) -> None:
        labelled = self._labelled
        while True:
            try:
                event = self._noted.popleft()
            except IndexError:
                return
            if event[0] == _WRITTEN:
                _, queue, job_name, outcome, took = event
                labelled(self.runs, queue, job_name, outcome.value).inc()
                if outcome in _FAILED:
                    labelled(self.failures, queue, job_name).inc()
                    if outcome is Outcome.RETRIED:
                        labelled(self.retries, queue, job_name).inc()
                if outcome is not Outcome.LOST and outcome is not Outcome.RELEASED:
                    labelled(self.duration, job_name).observe(took)  # it ran
            elif event[0] == _STARTED:
                _, queue, at, due = event
                labelled(self.latency, queue).observe(max(at - due.timestamp(), 0.0))
            else:
                for outcome, count in zip(_RESCUE_OUTCOMES, event[1:], strict=True):
                    if count:
                        labelled(self.rescues, outcome).inc(count)

    def _labelled(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: that lookup (a lock, a dict of its own) was most of
        what applying an event cost (2 of 9 us per job, twice)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            # Kept under the labels it is shown with: a name folded into OTHER adds no entry,
            # and comes this way each time (a set lookup more).
            key = (metric, self._bounded(metric, labels))
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = metric.labels(*key[1])
        return child

    def _bounded(self, metric: Any, labels: tuple[str, ...]) -> tuple[str, ...]:
        """``labels`` with a queue name past the process's ``MAX_LABEL_VALUES`` as ``OTHER``."""
        bounded = []
        for name, value in zip(self._label_names[metric], labels, strict=True):
            if name == "queue" and value not in self._queues:
                if len(self._queues) >= MAX_LABEL_VALUES:
                    value = OTHER
                else:
                    self._queues.add(value)
            bounded.append(value)
        return tuple(bounded)

    # A prometheus_client collector.

    def describe(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield from metric.describe()
        yield self._dropped_family()

    def collect(self) -> Iterator[Metric]:
        self._apply()
        for metric in self._metrics:
            yield from metric.collect()
        yield self._dropped_family(self.dropped)

    @staticmethod
    def _dropped_family(value: float | None = None) -> CounterMetricFamily:
        return CounterMetricFamily(
            "pgjobs_worker_metric_events_dropped",
            "Starts and outcomes left out of these metrics: too many waited to be applied.",
            value=value,
        )
