"""A worker's own metrics (WorkerMetrics), fed by a real Worker on the test database: runs by
outcome, failures, retries, rescues, run durations and start latency, slots; applied by the
worker's after-write thread, never by the loop; bounded when nothing applies them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest

from django_pgjobs import Snooze, enqueue, queries
from django_pgjobs.metrics import worker as worker_metrics
from django_pgjobs.metrics.readings import OTHER
from django_pgjobs.metrics.worker import WorkerMetrics
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from django_pgjobs.worker.outcomes import Outcome, Written
from tests.helpers import drain, make_due_now
from tests.metrics.scrapes import Scrape

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(metrics: WorkerMetrics) -> Scrape:
    registry = CollectorRegistry()
    registry.register(metrics)
    return Scrape(generate_latest(registry).decode())


def test_runs_failures_retries_and_histograms_from_a_worker(make_worker: type[Worker]) -> None:
    metrics = WorkerMetrics()
    worker = make_worker(metrics=metrics)
    for _ in range(3):
        enqueue("test.record", queue="mail")
    failing = enqueue("test.fail", queue="mail")  # two attempts, then the dead letters
    drain(worker)
    make_due_now(failing)
    drain(worker)

    got = scrape(metrics)
    assert got.by("pgjobs_job_runs_total", "outcome", job_name="test.record") == {"completed": 3}
    assert got.by("pgjobs_job_runs_total", "outcome", job_name="test.fail") == {
        "retried": 1, "buried": 1,
    }  # fmt: skip
    assert got("pgjobs_job_failures_total", queue="mail", job_name="test.fail") == 2
    assert got("pgjobs_job_retries_total", queue="mail", job_name="test.fail") == 1
    assert got("pgjobs_job_failures_total", queue="mail", job_name="test.record") is None
    assert got("pgjobs_job_duration_seconds_count", job_name="test.record") == 3
    assert got("pgjobs_job_duration_seconds_count", job_name="test.fail") == 2
    assert got("pgjobs_job_start_latency_seconds_count", queue="mail") == 5
    assert got("pgjobs_worker_metric_events_dropped_total") == 0


def test_the_after_write_thread_applies_them_before_any_scrape(
    make_worker: type[Worker],
) -> None:
    metrics = WorkerMetrics()
    worker = make_worker(metrics=metrics)
    enqueue("test.record")
    drain(worker)  # run_once waits for the after-write thread to be idle
    # The metric itself, read without WorkerMetrics.collect() (which would apply them).
    [family] = metrics.runs.collect()
    totals = [s for s in family.samples if s.name.endswith("_total")]
    assert [(s.labels["outcome"], s.value) for s in totals] == [("completed", 1.0)]


def test_start_latency_is_measured_from_when_the_job_became_due(
    make_worker: type[Worker],
) -> None:
    metrics = WorkerMetrics()
    late = enqueue("test.record", queue="late")
    Job.objects.filter(id=late).update(scheduled_for=timezone.now() - timedelta(seconds=40))
    enqueue("test.record", queue="soon", scheduled_for=timedelta(hours=1))
    drain(make_worker(metrics=metrics))
    got = scrape(metrics)
    buckets = got.by("pgjobs_job_start_latency_seconds_bucket", "le", queue="late")
    assert buckets["30.0"] == 0 and buckets["60.0"] == 1
    assert 40 <= got("pgjobs_job_start_latency_seconds_sum", queue="late") < 60  # type: ignore[operator]
    assert got("pgjobs_job_start_latency_seconds_count", queue="soon") is None  # not due yet


def test_a_snooze_is_a_run_but_not_a_failure(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    def snooze(payload: Any) -> None:
        raise Snooze(3600)

    register_handler("metrics.snooze", snooze)
    metrics = WorkerMetrics()
    enqueue("metrics.snooze")
    drain(make_worker(metrics=metrics))
    got = scrape(metrics)
    assert got.by("pgjobs_job_runs_total", "outcome", job_name="metrics.snooze") == {"snoozed": 1}
    assert got("pgjobs_job_failures_total", queue="default", job_name="metrics.snooze") is None


def test_rescues_are_counted_by_what_became_of_the_jobs(make_worker: type[Worker]) -> None:
    enqueue("test.record", {"label": "rescued"})
    enqueue("test.record", max_attempts=1)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="dead", limit=2, lease_seconds=30, queues=None, job_names=None
        )
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    metrics = WorkerMetrics()
    make_worker(metrics=metrics).run_once()
    got = scrape(metrics)
    assert got.by("pgjobs_jobs_rescued_total", "outcome") == {"retried": 1, "buried": 1}


def test_slots_and_busy_slots_of_this_worker(make_worker: type[Worker]) -> None:
    metrics = WorkerMetrics()
    worker = make_worker(metrics=metrics, concurrency=3)
    busy = [0]
    metrics.watch(slots=worker.concurrency, busy=lambda: busy[0])
    got = scrape(metrics)
    assert (got("pgjobs_worker_slots"), got("pgjobs_worker_busy_slots")) == (3, 0)
    busy[0] = 2
    assert scrape(metrics)("pgjobs_worker_busy_slots") == 2
    assert worker.busy_slots == 0


def test_events_past_the_bound_are_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_metrics, "MAX_NOTED", 2)
    metrics = WorkerMetrics()
    job = queries.ClaimedJob(
        id=uuid.uuid4(), job_name="x", payload={}, queue="q", priority=0, attempt=1,
        max_attempts=3, scheduled_for=timezone.now(), lease_token=uuid.uuid4(),
    )  # fmt: skip
    # Only the first note asks for a drain; none ran, so the third finds the bound reached.
    assert metrics.written(Written(job, Outcome.COMPLETED), 0.1) is True
    assert metrics.written(Written(job, Outcome.COMPLETED), 0.1) is False
    assert metrics.written(Written(job, Outcome.COMPLETED), 0.1) is False
    got = scrape(metrics)  # a scrape applies what was noted
    assert got("pgjobs_job_runs_total", queue="q", job_name="x", outcome="completed") == 2
    assert got("pgjobs_worker_metric_events_dropped_total") == 1
    # Applied: room again, and the next note asks for a drain of its own once one has run.
    metrics.drain()
    assert metrics.written(Written(job, Outcome.COMPLETED), 0.1) is True


def test_queue_names_past_the_bound_are_counted_as_other_alike_in_every_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rows written by plain SQL may carry any queue name: the process takes the first few, for
    # all its metrics at once. Job names are the registered handlers': never folded.
    monkeypatch.setattr(worker_metrics, "MAX_LABEL_VALUES", 2)
    metrics = WorkerMetrics()

    def job(queue: str, job_name: str) -> queries.ClaimedJob:
        return queries.ClaimedJob(
            id=uuid.uuid4(), job_name=job_name, payload={}, queue=queue, priority=0, attempt=1,
            max_attempts=3, scheduled_for=timezone.now(), lease_token=uuid.uuid4(),
        )  # fmt: skip

    # A start whose outcome is not written yet: "s" is taken by the latency histogram first.
    # Each metric taking its own first names once made q2 real in the counters and folded in
    # the histogram.
    metrics.started(job("s", "a"))
    for queue, job_name in [("q1", "a"), ("q2", "b"), ("q3", "c"), ("q1", "d")]:
        claimed = job(queue, job_name)
        metrics.started(claimed)
        metrics.written(Written(claimed, Outcome.RETRIED), 0.1)
    got = scrape(metrics)
    runs = {
        (s.labels["queue"], s.labels["job_name"], s.labels["outcome"]): s.value
        for s in got.samples
        if s.name == "pgjobs_job_runs_total"
    }
    assert runs == {
        ("q1", "a", "retried"): 1, (OTHER, "b", "retried"): 1, (OTHER, "c", "retried"): 1,
        ("q1", "d", "retried"): 1,
    }  # fmt: skip
    assert got.by("pgjobs_job_duration_seconds_count", "job_name") == {
        "a": 1, "b": 1, "c": 1, "d": 1,
    }  # fmt: skip
    assert got.by("pgjobs_job_start_latency_seconds_count", "queue") == {
        "s": 1, "q1": 2, OTHER: 2,
    }  # fmt: skip
    queues = {
        name: {s.labels["queue"] for s in got.samples if s.name == name}
        for name in (
            "pgjobs_job_runs_total", "pgjobs_job_failures_total", "pgjobs_job_retries_total",
            "pgjobs_job_start_latency_seconds_count",
        )
    }  # fmt: skip
    assert queues["pgjobs_job_start_latency_seconds_count"] == {"s", "q1", OTHER}
    assert all(values == {"q1", OTHER} for name, values in queues.items() if "latency" not in name)
    # Nothing is lost: every attempt is counted once, under its own queue or the sum's.
    assert sum(runs.values()) == 4
