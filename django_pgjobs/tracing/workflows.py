"""A workflow's spans: ``pgjobs start <workflow name>`` (PRODUCER) around
``start_workflow()``, whose context its job keeps, so every run of the workflow (each resume
after a wait too) is a span of the trace that started it; ``pgjobs workflow <workflow name>``
around each run of its code, inside the job's ``pgjobs run`` span; ``pgjobs step <step name>``
around each step that runs. A step replayed from its checkpoint runs no code and gets no span;
a step retried in the same run (its ``max_attempts``) is one span, its last failure recorded.

Workflow and step spans are made only inside a span that records (the job's run span, when a
TracerProvider is set and sampled it), so an untraced worker pays a look-up per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django_pgjobs.tracing import otel
from django_pgjobs.tracing.jobs import SYSTEM

# How a run of the workflow's code stopped without failing, by the control-flow exception that
# stopped it (django_pgjobs.workflows.context's; BaseException subclasses, so never failures).
_STOPPED = {
    "_Suspended": "suspended",  # waiting (sleep, recv, a child): its job is handed back
    "_Cancelled": "cancelled",
    "_LeaseLost": "taken_over",  # another worker holds its job now
    "_BookkeepingFailed": "interrupted",  # our own statement failed: its job is retried
}


@contextmanager
def start_span(row: dict[str, Any]) -> Iterator[None]:
    """Around creating the workflow ``row`` and its job: inside a trace, a PRODUCER span whose
    context goes in ``row["trace_context"]``; else NULL."""
    row["trace_context"] = None
    if not otel.in_span():
        yield
        return
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "start",
        "messaging.destination.name": row["queue"],
        "pgjobs.workflow.id": row["workflow_id"],
        "pgjobs.workflow.name": row["name"],
    }
    with otel.span(f"pgjobs start {row['name']}", "producer", attributes):
        row["trace_context"] = otel.carrier()
        yield


@contextmanager
def workflow_span(workflow_id: str, name: str) -> Iterator[None]:
    """Around one run of a workflow's code. ``pgjobs.workflow.outcome``: ``completed``,
    ``failed`` (status ERROR, the exception recorded), or how it stopped (see _STOPPED)."""
    if not otel.recording():
        yield
        return
    attributes = {"pgjobs.workflow.id": workflow_id, "pgjobs.workflow.name": name}
    with otel.span(f"pgjobs workflow {name}", "internal", attributes) as span:
        outcome = "failed"
        try:
            yield
            outcome = "completed"
        except BaseException as exc:
            if not isinstance(exc, Exception):
                outcome = _STOPPED.get(type(exc).__name__, "stopped")
            raise
        finally:
            span.set_attribute("pgjobs.workflow.outcome", outcome)


@contextmanager
def step_span(workflow_id: str, index: int, name: str) -> Iterator[None]:
    """Around a step that runs (not one replayed): status ERROR and the exception recorded when
    it fails for good."""
    if not otel.recording():
        yield
        return
    attributes: otel.Attributes = {
        "pgjobs.workflow.id": workflow_id,
        "pgjobs.step.name": name,
        "pgjobs.step.index": index,
    }
    with otel.span(f"pgjobs step {name}", "internal", attributes):
        yield
