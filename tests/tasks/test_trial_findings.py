"""What a new user's trial found, each kept fixed: a task enqueued by name or by a schedule gets
the backend's MAX_ATTEMPTS and is refused a payload it could never run; a schedule runs now
before any scheduler synced it; clear errors for bad metadata, arguments and options."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_pgjobs import cancel_job, enqueue
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import Job
from django_pgjobs.schedules import run_schedule_now
from django_pgjobs.schedules.declarations import Declaration, cron
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import InvalidTask, TaskResultStatus
from django_pgjobs.testing import drain
from tests.testapp import tasks

add: PgJobsTask = tasks.add  # type: ignore[assignment]
NAME = "tests.testapp.tasks.fail_plain"


@pytest.fixture
def reregistered() -> Iterator[None]:
    """fail_plain registered again by the backend the test configures; put back after."""
    registry.remove(NAME)
    yield
    registry.remove(NAME)
    framework.task_backends["default"].validate_task(tasks.fail_plain)


@pytest.mark.django_db
@pytest.mark.usefixtures("reregistered")
def test_a_task_enqueued_by_name_gets_the_backends_max_attempts() -> None:
    options = {"BACKEND": "django_pgjobs.backend.PgJobsBackend", "OPTIONS": {"MAX_ATTEMPTS": 7}}
    with override_settings(TASKS={"default": options}):
        framework.task_backends["default"].validate_task(tasks.fail_plain)  # as an import does
        job_id = enqueue(NAME, {"args": ["down"]})  # the command line's and a schedule's way
    assert Job.objects.get(id=job_id).max_attempts == 7


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [{"full": True}, {"args": "not a list"}, [1, 2]])
def test_a_payload_a_task_could_never_run_is_refused_at_enqueue(payload: Any) -> None:
    with pytest.raises(InvalidJobError, match="a task's payload is"):
        enqueue("tests.testapp.tasks.add", payload)


def test_a_schedule_of_a_task_with_such_a_payload_fails_the_system_check() -> None:
    declaration = Declaration(
        name="bad-task-payload",
        cron="0 * * * *",
        job_name="tests.testapp.tasks.add",
        payload={"full": True},
    )
    assert "a task's payload is" in declaration.problems()["payload"]


@pytest.mark.django_db
def test_a_declared_schedule_runs_now_before_any_scheduler_synced_it(
    declared: list[str],
) -> None:
    cron("0 3 * * *", name="nightly-add", payload={"args": [2, 3]})(tasks.add)
    declared.append("nightly-add")
    job_id = run_schedule_now("nightly-add")
    assert drain().completed == 1
    result = framework.task_backends["default"].get_result(str(job_id))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_metadata_json_cannot_hold_is_an_invalid_task() -> None:
    with pytest.raises(InvalidTask, match="not JSON serialisable"):
        add.using(metadata={"day": date(2026, 1, 1)})


@pytest.mark.django_db
def test_an_argument_json_cannot_hold_is_refused_naming_the_task() -> None:
    with pytest.raises(PayloadNotSerializable, match=r"tests\.testapp\.tasks\.add are not JSON"):
        tasks.add.enqueue(date(2026, 1, 1), 1)  # type: ignore[arg-type]
    assert not Job.objects.exists()


@override_settings(
    TASKS={
        "default": {
            "BACKEND": "django_pgjobs.backend.PgJobsBackend",
            "OPTIONS": {"MAX_ATEMPTS": 3, "BACKOFF": -5},
        }
    }
)
def test_option_errors_say_what_the_user_wrote() -> None:
    messages = {m.id: m.msg for m in run_checks() if m.id and m.id.startswith("pgjobs.E03")}
    assert "MAX_ATEMPTS (did you mean MAX_ATTEMPTS?)" in messages["pgjobs.E030"]
    assert (
        "BACKOFF must be" in messages["pgjobs.E032"]
        and "retry_delay" not in messages["pgjobs.E032"]
    )


@pytest.mark.django_db
def test_a_task_cancelled_while_running_keeps_when_it_started() -> None:
    from django.db import connection

    from django_pgjobs import queries

    result = tasks.add.enqueue(1, 2)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
        )
    cancel_job(result.id)
    job = Job.objects.get(id=result.id)
    assert job.started_at is not None and job.started_at == job.locked_at
