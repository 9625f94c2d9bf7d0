"""Tracing off: without the OpenTelemetry API installed, everything works and nothing is
traced; with the API but no TracerProvider, a worker starts nothing for a job enqueued outside
a trace, and a job that carries one still passes it on."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from opentelemetry import trace

from django_pgjobs import enqueue, get_job, start_workflow
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.tracing import jobs as job_tracing
from django_pgjobs.tracing import otel
from django_pgjobs.worker import Worker
from tests.helpers import drain
from tests.testapp import workflows as wf
from tests.tracing.conftest import Spans

pytestmark = pytest.mark.django_db(transaction=True)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def without_the_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``import opentelemetry`` fails, as without the ``otel`` extra, and the guard is imported
    again; afterwards, again with the API."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    importlib.reload(otel)
    assert not otel.INSTALLED
    yield
    monkeypatch.undo()
    importlib.reload(otel)
    assert otel.INSTALLED


def test_without_the_api_jobs_and_workflows_run_untraced(
    spans: Spans, tracer: trace.Tracer, without_the_api: None, make_worker: type[Worker]
) -> None:
    with tracer.start_as_current_span("request"):  # current, but the guard says no API
        job_id = enqueue("test.record", {"label": "plain"})
        handle = start_workflow(wf.greet, "Ada")
        failing = enqueue("test.fail", max_attempts=1)
    assert Job.objects.filter(trace_context__isnull=False).count() == 0
    drain(make_worker())
    assert get_job(job_id).status == "completed"
    assert FailedJob.objects.get(id=failing).trace_context is None
    assert handle.get_result(1) == "hello Ada!"
    assert spans.names() == ["request"]


def claimed(trace_context: str | None) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(), job_name="test.record", payload={}, queue="default", priority=0,
        attempt=1, max_attempts=3, scheduled_for=datetime.now(UTC),
        lease_token=uuid.uuid4(), trace_context=trace_context,
    )  # fmt: skip


def test_without_a_provider_a_job_enqueued_outside_a_trace_costs_its_run_nothing() -> None:
    assert not otel.configured()
    assert job_tracing.run_span(claimed(None)) is None
    # A job that carries a trace is still run in it (its spans record nothing here).
    assert job_tracing.run_span(claimed(f'{{"traceparent": "00-{TRACE_ID}-00f067aa0ba902b7-01"}}'))


def enqueue_another(payload: Any) -> None:
    enqueue("test.record", {"label": "from the handler"})


def test_without_a_provider_a_job_s_trace_still_reaches_the_jobs_its_handler_enqueues(
    make_worker: type[Worker], register_handler: Any
) -> None:
    """Propagation needs only the API: a worker that exports nothing still hands the trace on,
    so the jobs a handler enqueues join it for the processes that do export."""
    register_handler("test.fan_out", enqueue_another)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, trace_context) VALUES ('test.fan_out', %s)",
            [f'{{"traceparent": "00-{TRACE_ID}-00f067aa0ba902b7-01"}}'],
        )
    assert make_worker().run_once().completed == 1
    carried = Job.objects.get(job_name="test.record").trace_context
    assert carried["traceparent"].split("-")[1] == TRACE_ID
