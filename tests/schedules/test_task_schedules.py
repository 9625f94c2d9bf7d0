"""Django tasks on a schedule: ``@cron`` stacked on ``@task``; the tick runs the task with the
schedule's arguments."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_pgjobs import cron
from django_pgjobs.models import Job
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.tasks.framework import TaskResultStatus, task_backends
from django_pgjobs.worker import Worker
from tests.helpers import db_now, make_schedule_due
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_cron_above_a_task_runs_it_with_the_schedules_arguments(
    scheduler: Scheduler, declared: list[str], make_worker: type[Worker]
) -> None:
    decorated = cron("0 * * * *", name="add-hourly", payload={"args": [40, 2]})(tasks.add)
    declared.append("add-hourly")
    assert decorated is tasks.add
    scheduler.run_once()  # syncs the declaration and sets its first tick
    tick = make_schedule_due("add-hourly", at=db_now().replace(minute=0, second=0, microsecond=0))
    assert scheduler.run_once(now=tick + timedelta(seconds=1)).enqueued == 1
    job = Job.objects.get(job_name="tests.testapp.tasks.add")
    assert job.payload["args"] == [40, 2] and "fire_time" in job.payload
    assert make_worker().run_once().completed == 1
    result = task_backends["default"].get_result(str(job.id))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    # The tick's fire time is not an argument of the function.
    assert result.args == [40, 2] and result.kwargs == {}


def test_cron_refuses_what_is_neither_a_job_nor_a_task() -> None:
    with pytest.raises(TypeError, match="above @job or @task"):
        cron("* * * * *")(print)
