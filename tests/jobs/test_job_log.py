"""The django_pgjobs.jobs lines of the changes the API makes outside a worker: an enqueue at
DEBUG, an operator's cancel, retry and requeue at INFO, each with the job as ``extra`` fields;
a workflow cancelled is a django_pgjobs.workflows line."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import cancel_job, enqueue, enqueue_many, queries, retry_job, start_workflow
from django_pgjobs.jobs import requeue_dead_letter_jobs, retry_dead_letter_job
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import cancel_workflow

pytestmark = pytest.mark.django_db(transaction=True)


def job_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The lines of the API's changes (a worker's outcome lines carry ``outcome`` instead)."""
    return [r for r in caplog.records if r.name == "django_pgjobs.jobs" and "action" in vars(r)]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    names = ("job_id", "job_name", "queue", "attempt", "action")
    return {name: record.__dict__[name] for name in names}


def test_an_enqueue_is_a_debug_line_and_nothing_at_the_default_levels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        enqueue("test.record", {})
        enqueue_many("test.record", [{}, {}])
    assert job_lines(caplog) == []
    with caplog.at_level(logging.DEBUG, logger="django_pgjobs.jobs"):
        one = enqueue("test.record", {}, queue="mail", key="k")
        assert enqueue("test.record", {}, key="k") == one  # held already: nothing written
        many = enqueue_many("test.record", [{}, {}], queue="bulk")
    lines = job_lines(caplog)
    assert [r.levelno for r in lines] == [logging.DEBUG] * 3
    assert lines[0].getMessage() == f"Enqueued test.record {one} on queue mail"
    assert fields(lines[0]) == {
        "job_id": str(one), "job_name": "test.record", "queue": "mail", "attempt": 0,
        "action": "enqueue",
    }  # fmt: skip
    assert [r.__dict__["job_id"] for r in lines[1:]] == [str(job_id) for job_id in many]


def test_cancel_job_is_an_info_line_saying_what_the_job_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pending = enqueue("test.record", {}, queue="mail")
    running = enqueue("test.record", {}, queue="mail", priority=9)
    with connection.cursor() as cur:
        [claimed] = queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
        )
    assert claimed.id == running
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        cancel_job(pending)
        cancel_job(running)
    first, second = job_lines(caplog)
    assert first.levelno == logging.INFO
    assert first.getMessage() == f"Cancelled test.record {pending} (it was pending) by cancel_job()"
    assert fields(first) == {
        "job_id": str(pending), "job_name": "test.record", "queue": "mail", "attempt": 0,
        "action": "cancel",
    }  # fmt: skip
    assert "(it was running)" in second.getMessage() and second.__dict__["attempt"] == 1


def test_retry_job_is_an_info_line_saying_whether_the_attempts_start_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = enqueue("test.record", {})
    cancel_job(cancelled)
    waiting = enqueue("test.record", {}, scheduled_for=timezone.now() + timedelta(days=1))
    Job.objects.filter(id=waiting).update(attempt=2)  # awaiting its third attempt
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        retry_job(cancelled)
        retry_job(waiting)
    again, now = job_lines(caplog)
    assert again.getMessage() == (
        f"test.record {cancelled} is due now by retry_job() (it was cancelled: its attempts "
        "start afresh)"
    )
    assert (again.__dict__["attempt"], again.__dict__["action"]) == (0, "retry")
    assert now.getMessage().endswith("(it was pending: its attempts kept)")
    assert now.__dict__["attempt"] == 2


def test_a_requeue_is_an_info_line_per_job_and_a_bulk_one_a_line_naming_five(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    dead = [enqueue("test.fail", {}, max_attempts=1, queue="mail") for _ in range(8)]
    make_worker(queues=["mail"], concurrency=1).run(burst=True)
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        assert retry_dead_letter_job(dead[0]) == dead[0]
        assert requeue_dead_letter_jobs(queue="mail").count == 7
    one, bulk = job_lines(caplog)
    assert one.getMessage() == (
        f"Requeued dead letter test.fail {dead[0]}: due now, its attempts start afresh"
    )
    assert fields(one) == {
        "job_id": str(dead[0]), "job_name": "test.fail", "queue": "mail", "attempt": 0,
        "action": "requeue",
    }  # fmt: skip
    named = bulk.__dict__["job_ids"]
    assert len(named) == 5 and set(named) <= {str(job_id) for job_id in dead[1:]}
    assert bulk.getMessage() == (
        f"Requeued 7 dead letters ({', '.join(named)} and 2 more): due now, their attempts "
        "start afresh"
    )
    assert (bulk.__dict__["requeued"], bulk.__dict__["action"]) == (7, "requeue")


def test_a_workflow_cancelled_is_a_workflows_line(caplog: pytest.LogCaptureFixture) -> None:
    flow = start_workflow("test.greet", "Hal").workflow_id
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        cancel_workflow(flow)
    [line] = [r for r in caplog.records if r.name == "django_pgjobs.workflows"]
    assert line.getMessage() == (
        f"Workflow {flow} (test.greet) cancelled (it was pending): its job is cancelled too"
    )
    assert (line.__dict__["workflow_id"], line.__dict__["action"]) == (flow, "cancel")
    assert not isinstance(line.__dict__["workflow_id"], uuid.UUID)
