"""What a job carries of the enqueuing context: the W3C trace context, never its baggage, even
when the application's global propagator writes baggage. Baggage may carry user data (an
e-mail, a tenant) that would otherwise be stored in the jobs table; no span needs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from django_pgjobs import enqueue, start_workflow
from django_pgjobs.jobs.operations import retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from tests.helpers import workflow_job
from tests.testapp import workflows as wf
from tests.tracing.conftest import Spans
from tests.tracing.test_jobs import child_of

pytestmark = pytest.mark.django_db(transaction=True)

seen: list[dict[str, object]] = []


def record_baggage(payload: Any) -> None:
    seen.append(dict(baggage.get_all()))


@pytest.fixture
def baggage_propagated() -> Iterator[None]:
    """A global propagator that writes baggage, whatever OTEL_PROPAGATORS says here."""
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    seen.clear()
    yield
    propagate.set_global_textmap(before)


def test_a_job_keeps_the_trace_context_but_not_the_baggage_and_its_run_sees_none(
    spans: Spans,
    tracer: trace.Tracer,
    make_worker: type[Worker],
    register_handler: Any,
    baggage_propagated: None,
) -> None:
    register_handler("test.baggage", record_baggage)
    token = otel_context.attach(baggage.set_baggage("user.email", "ann@example.com"))
    try:
        with tracer.start_as_current_span("request"):
            # The global propagator would write it: the test's setup is real.
            written: dict[str, str] = {}
            propagate.inject(written)
            assert "baggage" in written
            job_id = enqueue("test.baggage", {})
            handle = start_workflow(wf.sleeper, "nap", 60)
    finally:
        otel_context.detach(token)

    assert set(Job.objects.get(id=job_id).trace_context) == {"traceparent"}
    assert set(workflow_job(handle.workflow_id).trace_context) == {"traceparent"}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pgjobs_job_queue WHERE trace_context::text LIKE %s",
            ["%ann@example.com%"],
        )
        assert cur.fetchone() == (0,)

    make_worker().run_once()
    assert seen == [{}]
    assert child_of(spans.one("pgjobs run test.baggage"), spans.one("pgjobs enqueue test.baggage"))


def test_baggage_written_into_trace_context_by_sql_is_not_attached_to_the_run(
    spans: Spans, make_worker: type[Worker], register_handler: Any, baggage_propagated: None
) -> None:
    register_handler("test.baggage", record_baggage)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, trace_context) VALUES ('test.baggage', %s)",
            [f'{{"traceparent": "{parent}", "baggage": "user.email=ann%40example.com"}}'],
        )
    assert make_worker().run_once().completed == 1
    assert seen == [{}]
    ran = spans.one("pgjobs run test.baggage")
    assert ran.parent is not None and f"{ran.parent.span_id:016x}" == parent.split("-")[2]


PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# A row written before the enqueue stopped storing baggage (or by SQL): the trace and user data.
OLD_CONTEXT = f"""{{"traceparent": "{PARENT}", "tracestate": "vendor=1",
                   "baggage": "user.email=ann%40example.com"}}"""


def test_a_dead_letter_and_its_requeue_keep_only_the_trace_of_an_old_row(
    make_worker: type[Worker],
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload, max_attempts, trace_context) "
            "VALUES ('test.fail', '{\"message\": \"down\"}', 1, %s) RETURNING id",
            [OLD_CONTEXT],
        )
        [job_id] = cur.fetchone()
    assert make_worker().run_once().buried == 1
    kept = {"traceparent": PARENT, "tracestate": "vendor=1"}
    assert FailedJob.objects.get(id=job_id).trace_context == kept
    retry_dead_letter_job(job_id)
    assert Job.objects.get(id=job_id).trace_context == kept


def test_a_dead_letter_written_before_the_upgrade_is_requeued_without_its_baggage() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name, trace_context) VALUES ('test.fail', %s) "
            "RETURNING id",
            [OLD_CONTEXT],
        )
        [dead_id] = cur.fetchone()
    retry_dead_letter_job(dead_id)
    assert Job.objects.get(id=dead_id).trace_context == {
        "traceparent": PARENT,
        "tracestate": "vendor=1",
    }
