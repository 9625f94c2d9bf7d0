"""A job's trace: the enqueue span inside the caller's trace, the run span on the handler's
thread as its child (and linked to it), the handler's own spans inside the run, failures
recorded, and NULL (a trace of its own) for everything enqueued outside a span."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from django_pgjobs import enqueue, enqueue_many, enqueue_on_commit, get_job
from django_pgjobs.jobs.context import RunningAttempt
from django_pgjobs.jobs.operations import retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.testing import drain
from django_pgjobs.tracing import jobs as tracing
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import AttemptResult
from tests.helpers import make_due_now, wait_for
from tests.tracing.conftest import Spans

pytestmark = pytest.mark.django_db(transaction=True)


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context.trace_id == parent.context.trace_id
    )


def linked_to(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


def record_inside(payload: Any) -> None:
    with trace.get_tracer("handler").start_as_current_span("inside the handler"):
        pass


def test_a_job_enqueued_in_a_trace_runs_in_it_as_the_child_of_its_enqueue_span(
    spans: Spans, tracer: trace.Tracer, make_worker: type[Worker], register_handler: Any
) -> None:
    register_handler("test.traced", record_inside)
    with tracer.start_as_current_span("request") as request:
        job_id = enqueue("test.traced", {"n": 1}, queue="mail")
    carried = Job.objects.get(id=job_id).trace_context
    assert carried["traceparent"].split("-")[1] == f"{request.get_span_context().trace_id:032x}"

    assert make_worker().run_once().completed == 1
    sent, ran = spans.one("pgjobs enqueue test.traced"), spans.one("pgjobs run test.traced")
    assert child_of(sent, spans.one("request")) and sent.kind == SpanKind.PRODUCER
    assert dict(sent.attributes or {}) == {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": "mail",
        "messaging.message.id": str(job_id),
        "pgjobs.job.name": "test.traced",
    }
    assert child_of(ran, sent) and ran.kind == SpanKind.CONSUMER
    assert linked_to(ran) == [sent.context.span_id]
    assert dict(ran.attributes or {}) == {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": "mail",
        "messaging.message.id": str(job_id),
        "pgjobs.job.name": "test.traced",
        "pgjobs.job.attempt": 1,
        "pgjobs.job.max_attempts": 3,
        "pgjobs.job.outcome": "completed",
    }
    assert ran.status.status_code == StatusCode.UNSET
    # The handler's own spans are the run's children: it runs inside the run span.
    assert child_of(spans.one("inside the handler"), ran)


def test_an_enqueue_outside_any_span_writes_null_and_its_run_starts_a_trace(
    spans: Spans, make_worker: type[Worker]
) -> None:
    job_id = enqueue("test.record", {"label": "untraced"})
    assert Job.objects.get(id=job_id).trace_context is None
    assert make_worker().run_once().completed == 1
    assert spans.names() == ["pgjobs run test.record"]
    ran = spans.one("pgjobs run test.record")
    assert ran.parent is None and ran.links == ()


def test_jobs_written_by_sql_run_with_a_root_span_whatever_their_trace_context_holds(
    spans: Spans, make_worker: type[Worker]
) -> None:
    carried = [
        None,
        "42",
        '"traceparent"',
        '{"traceparent": "00-not-a-trace"}',
        '{"traceparent": 5, "tracestate": []}',
        "[1, 2]",
    ]
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('test.record')")
        for text in carried:
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, trace_context) VALUES "
                "('test.record', %s::jsonb)",
                [text],
            )
    assert make_worker(concurrency=8).run_once().completed == 7
    runs = spans.named("pgjobs run test.record")
    assert len(runs) == 7
    assert all(s.parent is None and s.links == () for s in runs)
    assert len({s.context.trace_id for s in runs}) == 7


def test_a_failed_run_records_its_exception_and_every_attempt_stays_in_the_enqueuing_trace(
    spans: Spans, tracer: trace.Tracer, make_worker: type[Worker]
) -> None:
    with tracer.start_as_current_span("request"):
        job_id = enqueue("test.fail", {"message": "smtp down"}, max_attempts=2)
    carried = Job.objects.get(id=job_id).trace_context
    worker = make_worker()
    assert worker.run_once().retried == 1
    make_due_now(job_id)
    assert worker.run_once().buried == 1

    sent = spans.one("pgjobs enqueue test.fail")
    first, second = sorted(spans.named("pgjobs run test.fail"), key=lambda s: s.start_time or 0)
    for attempt, ran in enumerate((first, second), start=1):
        assert child_of(ran, sent)
        assert ran.attributes is not None
        assert ran.attributes["pgjobs.job.attempt"] == attempt
        assert ran.attributes["pgjobs.job.outcome"] == "failed"
        assert ran.attributes["error.type"] == "builtins.ValueError"
        assert ran.status.status_code == StatusCode.ERROR
        assert ran.status.description == "ValueError: smtp down"
        [event] = ran.events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "smtp down"
        assert "Traceback" in str(event.attributes["exception.stacktrace"])

    # The dead letter keeps the trace context, and so does the job requeued from it.
    assert FailedJob.objects.get(id=job_id).trace_context == carried
    retry_dead_letter_job(job_id)
    assert Job.objects.get(id=job_id).trace_context == carried


def test_enqueue_many_makes_one_enqueue_span_that_all_its_jobs_run_under(
    spans: Spans, tracer: trace.Tracer, make_worker: type[Worker]
) -> None:
    with tracer.start_as_current_span("request"):
        ids = enqueue_many("test.record", [{"label": "a"}, {"label": "b"}, {"label": "c"}])
    sent = spans.one("pgjobs enqueue test.record")
    assert sent.attributes is not None
    assert sent.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in sent.attributes
    assert len({json.dumps(j.trace_context) for j in Job.objects.filter(id__in=ids)}) == 1
    assert make_worker(concurrency=4).run_once().completed == 3
    runs = spans.named("pgjobs run test.record")
    assert len(runs) == 3 and all(child_of(ran, sent) for ran in runs)


def test_a_key_already_held_writes_nothing_and_says_so_on_the_enqueue_span(
    spans: Spans, tracer: trace.Tracer
) -> None:
    first = enqueue("test.record", key="once")
    with tracer.start_as_current_span("request"):
        again = enqueue("test.record", key="once")
    assert again == first
    sent = spans.one("pgjobs enqueue test.record")
    assert sent.attributes is not None
    assert sent.attributes["messaging.message.id"] == str(first)
    assert sent.attributes["pgjobs.job.existing"] is True
    assert Job.objects.get(id=first).trace_context is None  # the holder keeps its own


def test_a_replaced_job_takes_the_trace_of_the_enqueue_that_replaced_it(
    spans: Spans, tracer: trace.Tracer
) -> None:
    first = enqueue("test.record", {"v": 1}, key="latest")
    with tracer.start_as_current_span("request") as request:
        assert enqueue("test.record", {"v": 2}, key="latest", replace=True) == first
    carried = Job.objects.get(id=first).trace_context
    assert f"{request.get_span_context().trace_id:032x}" in carried["traceparent"]


def test_enqueue_on_commit_writes_at_the_commit_in_the_trace_still_current_then(
    spans: Spans, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("request"), transaction.atomic():
        job_id = enqueue_on_commit("test.record")
        assert spans.named("pgjobs enqueue test.record") == []
    assert child_of(spans.one("pgjobs enqueue test.record"), spans.one("request"))
    assert get_job(job_id).trace_context is not None


def test_an_async_handler_s_spans_are_children_of_its_run(
    spans: Spans, tracer: trace.Tracer, register_handler: Any
) -> None:
    async def handler(payload: Any) -> None:
        await asyncio.sleep(0)
        with trace.get_tracer("handler").start_as_current_span("inside the handler"):
            pass

    register_handler("test.traced_async", handler)
    with tracer.start_as_current_span("request"):
        enqueue("test.traced_async")
    drain()
    ran = spans.one("pgjobs run test.traced_async")
    assert child_of(ran, spans.one("pgjobs enqueue test.traced_async"))
    assert child_of(spans.one("inside the handler"), ran)


def test_a_job_s_run_does_not_join_the_trace_current_where_it_is_drained(
    spans: Spans, tracer: trace.Tracer
) -> None:
    """testing.drain() runs handlers in the test's thread: the run belongs to the job's trace
    (here: none), never to whatever span is current there."""
    enqueue("test.record")
    with tracer.start_as_current_span("test"):
        drain()
    assert spans.one("pgjobs run test.record").parent is None


def test_a_django_task_enqueued_in_a_trace_runs_in_it(spans: Spans, tracer: trace.Tracer) -> None:
    from tests.testapp import tasks

    with tracer.start_as_current_span("request"):
        result = tasks.add.enqueue(2, 40)
    drain()
    name = "tests.testapp.tasks.add"
    assert child_of(spans.one(f"pgjobs run {name}"), spans.one(f"pgjobs enqueue {name}"))
    result.refresh()
    assert result.return_value == 42


def test_a_run_the_worker_failed_at_its_timeout_says_so_whatever_its_handler_did_later(
    spans: Spans, make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    """The abandoned handler returns normally long after: its span ended as completed, with
    the job in the dead letters for JobTimeout (as a new user's trial saw)."""
    release = threading.Event()
    register_handler("t.overrun", lambda payload: release.wait(30))
    job_id = enqueue("t.overrun", {}, timeout=0.5, max_attempts=1)
    worker = make_worker(concurrency=1)
    assert worker.run_once().buried == 1
    release.set()
    wait_for(lambda: worker.abandoned_threads == 0, what="the abandoned handler to return")
    ran = spans.one("pgjobs run t.overrun")
    assert ran.attributes is not None
    assert ran.attributes["pgjobs.job.outcome"] == "timed_out"
    assert ran.attributes["error.type"] == "django_pgjobs.exceptions.JobTimeout"
    assert ran.status.status_code == StatusCode.ERROR
    assert FailedJob.objects.filter(id=job_id).exists()


def test_a_run_cancelled_or_taken_over_meanwhile_is_lost_whatever_its_handler_did(
    spans: Spans, tracer: trace.Tracer
) -> None:
    attempt = RunningAttempt(SimpleNamespace(id=None, attempt=1))  # type: ignore[arg-type]
    with tracer.start_as_current_span("run") as span:
        attempt.no_longer_ours()  # an operator's cancel, seen while the handler ran
        tracing.ran(span, AttemptResult(took=1.0), attempt)  # it returned normally
    assert spans.one("run").attributes == {"pgjobs.job.outcome": "lost"}
