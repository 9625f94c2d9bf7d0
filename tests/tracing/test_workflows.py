"""A workflow's trace: its start inside the caller's trace, each run of its job a span of that
trace (resumes included), a span per run of its code and per step that runs; replayed steps
run nothing and get none."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from django_pgjobs import get_workflow, start_workflow
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import drain, end_workflow_wait, workflow_job
from tests.testapp import workflows as wf
from tests.tracing.conftest import Spans
from tests.tracing.test_jobs import child_of

pytestmark = pytest.mark.django_db(transaction=True)


def runs_of(spans: Spans) -> list[ReadableSpan]:
    """The workflow's job's run spans, oldest first."""
    found = [s for s in spans.all() if s.name.startswith("pgjobs run pgjobs.workflow:")]
    return sorted(found, key=lambda s: s.start_time or 0)


def test_a_workflow_started_in_a_trace_runs_each_time_in_it_with_a_span_per_step_run(
    spans: Spans, tracer: trace.Tracer, make_worker: type[Worker]
) -> None:
    with tracer.start_as_current_span("request"):
        handle = start_workflow(wf.sleeper, "nap", 60)
    started = spans.one("pgjobs start test.sleeper")
    assert child_of(started, spans.one("request")) and started.kind == SpanKind.PRODUCER
    assert dict(started.attributes or {}) == {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "send",
        "messaging.operation.name": "start",
        "messaging.destination.name": "default",
        "pgjobs.workflow.id": handle.workflow_id,
        "pgjobs.workflow.name": "test.sleeper",
    }
    assert workflow_job(handle.workflow_id).trace_context is not None

    assert make_worker().run_once().handed_back == 1  # sleeps: its job is handed back
    end_workflow_wait(handle.workflow_id)
    drain(make_worker())
    assert handle.get_result(1) == "nap:after"

    first, second = runs_of(spans)
    assert child_of(first, started) and child_of(second, started)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["pgjobs.job.outcome"] == "handed_back"
    assert second.attributes["pgjobs.job.outcome"] == "completed"
    code = sorted(spans.named("pgjobs workflow test.sleeper"), key=lambda s: s.start_time or 0)
    assert [child_of(c, r) for c, r in zip(code, (first, second), strict=True)] == [True, True]
    assert [dict(c.attributes or {}) for c in code] == [
        {
            "pgjobs.workflow.id": handle.workflow_id,
            "pgjobs.workflow.name": "test.sleeper",
            "pgjobs.workflow.outcome": outcome,
        }
        for outcome in ("suspended", "completed")
    ]
    # The first run ran the step before the sleep; the second replayed it and ran the one after.
    steps = [s for s in spans.all() if s.name.startswith("pgjobs step ")]
    assert [child_of(s, c) for s, c in zip(steps, code, strict=True)] == [True, True]
    assert [(s.attributes or {}).get("pgjobs.step.index") for s in steps] == [0, 2]
    assert {s.context.trace_id for s in spans.all()} == {started.context.trace_id}


def test_a_failing_workflow_and_a_step_failing_for_good_record_their_exceptions(
    spans: Spans, make_worker: type[Worker]
) -> None:
    failing = start_workflow(wf.fails, "no")
    flaky = start_workflow(wf.flaky, "never", 10)  # its step's 3 attempts all fail
    drain(make_worker(concurrency=2))
    assert get_workflow(failing.workflow_id).status == "failed"
    assert get_workflow(flaky.workflow_id).status == "failed"

    for name, error in (("test.fails", "ValueError"), ("test.flaky", "ConnectionError")):
        code = spans.one(f"pgjobs workflow {name}")
        assert code.attributes is not None
        assert code.attributes["pgjobs.workflow.outcome"] == "failed"
        assert code.status.status_code == StatusCode.ERROR
        assert [e.name for e in code.events] == ["exception"]
        assert (code.events[0].attributes or {})["exception.type"] == error
        # The workflow failed; its job did what it had to and completed.
        [ran] = [r for r in runs_of(spans) if child_of(code, r)]
        assert ran.status.status_code == StatusCode.UNSET
    step = spans.one("pgjobs step tests.testapp.workflows.flaky_step")
    assert step.status.status_code == StatusCode.ERROR
    assert child_of(step, spans.one("pgjobs workflow test.flaky"))
    assert [(e.attributes or {}).get("exception.type") for e in step.events] == ["ConnectionError"]


def test_a_workflow_started_outside_a_trace_runs_in_one_of_its_own(
    spans: Spans, make_worker: type[Worker]
) -> None:
    handle = start_workflow(wf.greet, "Ada")
    assert Job.objects.get(key=f"pgjobs.workflow:{handle.workflow_id}").trace_context is None
    drain(make_worker())
    [ran] = runs_of(spans)
    assert ran.parent is None and spans.names().count("pgjobs start test.greet") == 0
    code = spans.one("pgjobs workflow test.greet")
    assert child_of(code, ran)
    [step] = [s for s in spans.all() if s.name.startswith("pgjobs step ")]
    assert child_of(step, code)


def test_a_child_workflow_runs_in_its_parent_s_trace(
    spans: Spans, tracer: trace.Tracer, make_worker: type[Worker]
) -> None:
    with tracer.start_as_current_span("request"):
        handle = start_workflow(wf.parent, 1)
    drain(make_worker(concurrency=2))
    assert handle.get_result(1) == [0]
    started = spans.one("pgjobs start test.child")
    assert any(child_of(started, c) for c in spans.named("pgjobs workflow test.parent"))
    [ran] = [r for r in runs_of(spans) if child_of(r, started)]
    assert child_of(spans.one("pgjobs workflow test.child"), ran)
    assert {s.context.trace_id for s in spans.all()} == {spans.one("request").context.trace_id}
