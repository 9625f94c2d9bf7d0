"""enqueue() and enqueue_many(): the row they write, its defaults, and one statement for many."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.exceptions import PayloadNotSerializable
from django_pgjobs.models import Job
from tests.testapp.jobs import fail, record

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_writes_a_pending_job_with_resolved_defaults() -> None:
    job_id = enqueue("test.record", {"label": "a"})
    job = get_job(job_id)
    assert job.status == "pending"
    assert job.payload == {"label": "a"}
    assert (job.queue, job.priority, job.attempt, job.max_attempts) == ("default", 0, 0, 3)
    assert job.error is None and job.progress is None
    assert job.scheduled_for <= timezone.now()


def test_handler_options_are_enqueue_defaults_and_arguments_win() -> None:
    assert get_job(fail.enqueue()).max_attempts == 2  # from @job("test.fail", max_attempts=2)
    job = get_job(enqueue("test.fail", max_attempts=7, queue="mail", priority=-5))
    assert (job.max_attempts, job.queue, job.priority) == (7, "mail", -5)


@override_settings(PGJOBS={"MAX_ATTEMPTS": 9})
def test_max_attempts_setting_applies_when_nothing_else_does() -> None:
    assert get_job(enqueue("unregistered.job")).max_attempts == 9


def test_scheduled_for_accepts_aware_datetimes_and_delays() -> None:
    at = timezone.now() + timedelta(hours=2)
    assert get_job(enqueue("test.record", scheduled_for=at)).scheduled_for == at
    delayed = get_job(enqueue("test.record", scheduled_for=timedelta(minutes=5)))
    assert delayed.scheduled_for - delayed.created_at == pytest.approx(
        timedelta(minutes=5), abs=timedelta(seconds=1)
    )


def test_handler_enqueue_shortcut() -> None:
    job = get_job(record.enqueue({"label": "via handler"}))
    assert job.job_name == "test.record"


def test_enqueue_many_is_one_statement_and_keeps_payload_order(
    django_assert_num_queries: Any,
) -> None:
    payloads = [{"n": n} for n in range(500)]
    with django_assert_num_queries(1):
        ids = enqueue_many("test.record", payloads, queue="bulk", priority=3)
    assert len(set(ids)) == 500
    stored = dict(Job.objects.filter(id__in=ids).values_list("id", "payload"))
    assert [stored[i] for i in ids] == payloads
    assert set(Job.objects.values_list("queue", "priority")) == {("bulk", 3)}


def test_enqueue_many_stores_every_kind_of_payload_as_given() -> None:
    """The payloads travel as one JSON array: quotes, commas, braces, backslashes, nulls and
    nesting must come back element for element."""
    payloads: list[Any] = [
        None, "a,b", '{"x"}', "back\\slash \\\"", [1, [2, {"k": None}]], 1.5, True, "é ✓ 😀",
        {"nested": {"list": [], "empty": {}}}, "", 0, -7,
    ]  # fmt: skip
    ids = enqueue_many("test.record", payloads)
    stored = dict(Job.objects.filter(id__in=ids).values_list("id", "payload"))
    assert [stored[i] for i in ids] == [{} if p is None else p for p in payloads]  # None: {}


def test_enqueue_many_with_one_bad_payload_writes_nothing() -> None:
    with pytest.raises(PayloadNotSerializable):
        enqueue_many("test.record", [{"ok": 1}, {"bad": object()}])
    assert Job.objects.count() == 0
    assert enqueue_many("test.record", []) == []


@pytest.mark.parametrize("poll_only", [False, True])
def test_enqueue_is_seen_by_django_instrumentation_either_way(poll_only: bool) -> None:
    """Server-side binding (the default) and Django's own cursor (POLL_ONLY, for PgBouncer)
    both go through execute_wrapper(), which query logging and APM agents hook."""
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with override_settings(PGJOBS={"POLL_ONLY": poll_only}), connection.execute_wrapper(spy):
        with transaction.atomic():
            job_id = enqueue("test.record", {"n": 1})
        enqueue_many("test.record", [{"n": 2}])
    assert sum("INSERT INTO pgjobs_job_queue" in sql for sql in seen) == 2
    assert Job.objects.get(id=job_id).payload == {"n": 1}
