from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig

RECORDED_SIGNALS = (
    "job_started", "job_succeeded", "job_failed", "job_dead_lettered", "job_cancelled",
    "job_snoozed", "workflow_started", "workflow_finished",
)  # fmt: skip


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Worker subprocesses started with this variable record each task_finished they send,
        # with the sending process's pid (a process-pool test checks where it is sent from).
        if os.environ.get("PGJOBS_TEST_RECORD_FINISHED"):
            from django_pgjobs.tasks.framework import signals

            signals.task_finished.connect(_record_finished, dispatch_uid="testapp.finished")
        # ... and each django_pgjobs signal they send, with the process and thread sending it.
        if os.environ.get("PGJOBS_TEST_RECORD_SIGNALS"):
            from django_pgjobs import signals as ours

            for name in RECORDED_SIGNALS:
                getattr(ours, name).connect(_recorder(name), weak=False, dispatch_uid=name)
        # ... and export every span they end to this file, one JSON object a line.
        if os.environ.get("PGJOBS_TEST_TRACE_FILE"):
            _export_spans_to(os.environ["PGJOBS_TEST_TRACE_FILE"])


def _record_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    from tests.testapp.models import Run

    label = f"finished:{task_result.status}:{os.getpid()}"
    Run.objects.create(job_id=task_result.id, label=label[:100])


def _export_spans_to(path: str) -> None:
    """An SDK provider, as an application sets one up, exporting each span as it ends (a
    ``--pool process`` child forked after this inherits it) with the pid of the process that
    ended it."""
    import json

    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    def line(span: ReadableSpan) -> str:
        return json.dumps({**json.loads(span.to_json()), "pid": os.getpid()}) + "\n"

    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - written until the process ends
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=line)))
    trace.set_tracer_provider(provider)


def _recorder(signal_name: str) -> Callable[..., None]:
    def record(sender: Any, **kwargs: Any) -> None:
        from tests.testapp.models import Run

        subject = kwargs.get("job_id") or "00000000-0000-0000-0000-000000000000"
        detail = kwargs.get("status") or kwargs.get("attempt") or ""
        label = f"{signal_name}:{detail}:{os.getpid()}:{threading.current_thread().name}"
        attempt = kwargs.get("attempt", 0)
        Run.objects.create(job_id=subject, label=label[:100], attempt_seen=attempt)

    return record
