"""Rows holding JSON Python cannot decode (stored by SQL or another language): every operator
function, CLI listing and model read shows or acts on them instead of raising."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_pgjobs import cancel_job, enqueue, get_job
from django_pgjobs.jobs import list_dead_letter_jobs, list_jobs, retry_dead_letter_job, validation
from django_pgjobs.models import FailedJob, Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.worker import Worker
from tests.helpers import add_schedule, db_now, make_schedule_due

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = """'{"amount": 1e5000}'::jsonb"""
NESTING = "(repeat('[', 3000) || repeat(']', 3000))::jsonb"


def poison_job(payload_sql: str = NUMBER, *, status: str = "pending") -> uuid.UUID:
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO pgjobs_job_queue (job_name, payload, status) "
            f"VALUES ('test.record', {payload_sql}, %s) RETURNING id",
            [status],
        )
        return uuid.UUID(str(cur.fetchone()[0]))


def poison_dead_letter(payload_sql: str = NESTING) -> uuid.UUID:
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO pgjobs_failed_jobs (job_name, payload, attempt, error) "
            f"VALUES ('test.record', {payload_sql}, 3, 'ValueError: boom') RETURNING id"
        )
        return uuid.UUID(str(cur.fetchone()[0]))


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("payload_sql", "error"),
    [(NUMBER, "ValueError: a number has more digits"), (NESTING, "RecursionError: nested deeper")],
)
def test_get_job_and_list_jobs_show_the_payload_as_undecodable_text(
    payload_sql: str, error: str
) -> None:
    job_id = poison_job(payload_sql)
    job = get_job(job_id)
    assert isinstance(job.payload, UndecodableJSON)
    assert job.payload.error.startswith(error)
    assert job.payload.startswith(f"(cannot be decoded: {error}")
    assert [j.id for j in list_jobs()] == [job_id]
    assert list(Job.objects.values_list("payload", flat=True)) == [job.payload]


@pytest.mark.parametrize("status", ["pending", "running"])
def test_cancel_job_cancels_a_poison_job(status: str) -> None:
    job_id = poison_job(status=status)
    cancel_job(job_id)
    assert get_job(job_id).status == "cancelled"


def test_a_workflow_named_job_with_a_poison_payload_is_cancelled_as_a_job() -> None:
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO pgjobs_job_queue (job_name, payload, key) "
            f"VALUES ('pgjobs.workflow:v1', {NUMBER}, 'workflow:w1') RETURNING id"
        )
        job_id = cur.fetchone()[0]
    cancel_job(job_id)
    assert get_job(job_id).status == "cancelled"


def test_dead_letters_with_a_poison_payload_are_listed_and_requeued_as_stored() -> None:
    dead_id = poison_dead_letter()
    [dead] = list_dead_letter_jobs()
    assert dead.id == dead_id and isinstance(dead.payload, UndecodableJSON)
    new_id = retry_dead_letter_job(dead_id)
    assert not FailedJob.objects.exists()
    with connection.cursor() as cur:
        cur.execute(f"SELECT payload = {NESTING} FROM pgjobs_job_queue WHERE id = %s", [new_id])
        assert cur.fetchone()[0] is True


def test_pgjobs_list_shows_poison_jobs_and_dead_letters() -> None:
    job_id = poison_job()
    dead_id = poison_dead_letter()
    assert str(job_id) in pgjobs("list")
    assert str(job_id) in pgjobs("list", "--status", "pending")
    assert str(dead_id) in pgjobs("list", "--status", "dead")


def test_the_stand_in_is_never_saved_over_the_stored_value() -> None:
    job = get_job(poison_job())
    with pytest.raises(ValueError, match=r"Job\.payload holds JSON Python cannot decode"):
        job.save()
    with connection.cursor() as cur:
        cur.execute(f"SELECT payload = {NUMBER} FROM pgjobs_job_queue WHERE id = %s", [job.id])
        assert cur.fetchone()[0] is True


def test_a_schedule_whose_payload_cannot_be_decoded_is_quarantined_saying_why(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    add_schedule("poison", "0 * * * *")
    add_schedule("fine", "0 * * * *")
    with connection.cursor() as cur:
        cur.execute(f"UPDATE pgjobs_schedules SET payload = {NUMBER} WHERE name = 'poison'")
    scheduler.run_once()
    tick = db_now().replace(minute=0, second=0, microsecond=0)
    for name in ("poison", "fine"):
        make_schedule_due(name, at=tick)
    with caplog.at_level(logging.ERROR, logger="django_pgjobs"):
        report = scheduler.run_once(now=tick + timedelta(seconds=1))
    # The other schedule still fires; the poison one is set aside, saying why.
    assert report.enqueued == 1
    assert "fire_time" in Job.objects.get().payload
    assert any(
        "'poison' cannot run (its payload cannot be decoded: ValueError: a number has"
        in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    assert isinstance(Schedule.objects.get(name="poison").payload, UndecodableJSON)


@pytest.mark.parametrize("attempt", [validation.MAX_INT, validation.MAX_INT - 1])
def test_a_row_at_the_largest_attempt_runs_and_stops_no_other_job(
    make_worker: type[Worker], attempt: int
) -> None:
    """One row SQL wrote with attempt 2147483647 made every claim fail (``integer out of
    range``: a claim takes its jobs in one statement), so no job of any queue ran."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, attempt, max_attempts) "
            "VALUES ('test.record', %s, 3) RETURNING id",
            [attempt],
        )
        (poison,) = cur.fetchone()
    others = [enqueue("test.record") for _ in range(3)]
    make_worker(concurrency=4).run_once()  # one claim of all four (it raised, and kept raising)
    assert [get_job(job_id).status for job_id in others] == ["completed"] * 3
    assert (get_job(poison).status, get_job(poison).attempt) == ("completed", validation.MAX_INT)


def test_a_failing_row_at_the_largest_attempt_is_buried(make_worker: type[Worker]) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload, attempt) "
            "VALUES ('test.fail', '{}', %s) RETURNING id",
            [validation.MAX_INT],
        )
        (poison,) = cur.fetchone()
    make_worker().run_once()
    (dead,) = list_dead_letter_jobs()
    assert (dead.id, dead.attempt) == (poison, validation.MAX_INT)
