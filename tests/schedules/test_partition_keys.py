"""A schedule's jobs get its partition key (``@cron``/``schedule()``/settings/the admin), else
their handler's; a handler's callable that cannot key a tick is reported, not fired."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs import cron, job
from django_pgjobs.jobs.registry import JobHandler, registry
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.declarations import Declaration, settings_declarations
from django_pgjobs.schedules.scheduler import Scheduler, run_schedule_now
from tests.helpers import add_schedule, db_now, make_schedule_due
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def fire(scheduler: Scheduler, name: str, *, ticks: int = 1) -> list[Job]:
    """Make ``ticks`` minutely ticks of ``name`` due and fire them; their jobs, oldest first."""
    scheduler.run_once()
    now = db_now().replace(second=30, microsecond=0)
    make_schedule_due(name, at=now.replace(second=0) - timedelta(minutes=ticks - 1))
    assert scheduler.run_once(now=now).enqueued == ticks
    return list(Job.objects.order_by("scheduled_for"))


def test_a_schedules_key_goes_on_every_tick_it_fires(scheduler: Scheduler) -> None:
    add_schedule("ledger", "* * * * *", partition_key="ledger", catch_up="all")
    jobs = fire(scheduler, "ledger", ticks=3)
    assert [j.partition_key for j in jobs] == ["ledger"] * 3


def test_a_handlers_key_applies_when_the_schedule_has_none(
    scheduler: Scheduler, register_handler: Callable[..., JobHandler]
) -> None:
    register_handler(
        "ledger.close",
        lambda payload: None,
        partition_key=lambda p: f"account:{p['account']}:{p['fire_time'][:10]}",
    )
    Schedule.objects.create(
        name="close", cron="* * * * *", job_name="ledger.close", payload={"account": 7}
    )
    Schedule.objects.create(
        name="close-mine", cron="* * * * *", job_name="ledger.close", payload={"account": 8},
        partition_key="mine",
    )  # fmt: skip
    scheduler.run_once()
    now = db_now().replace(second=30, microsecond=0)
    for name in ("close", "close-mine"):
        make_schedule_due(name, at=now.replace(second=0))
    assert scheduler.run_once(now=now).enqueued == 2
    day = now.astimezone(UTC).date().isoformat()
    keys = dict(Job.objects.values_list("payload__account", "partition_key"))
    assert keys == {7: f"account:7:{day}", 8: "mine"}  # the callable sees the fire time


def test_a_tick_the_handler_cannot_key_is_quarantined_and_writes_nothing(
    scheduler: Scheduler, register_handler: Callable[..., JobHandler]
) -> None:
    register_handler("ledger.close", lambda payload: None, partition_key=lambda p: p["account"])
    # SQL or the ORM can write what the form and the check refuse.
    Schedule.objects.create(name="broken", cron="* * * * *", job_name="ledger.close")
    scheduler.run_once()
    now = db_now().replace(second=30, microsecond=0)
    tick = make_schedule_due("broken", at=now.replace(second=0))
    assert scheduler.run_once(now=now).enqueued == 0
    assert not Job.objects.exists()
    assert Schedule.objects.get().next_run_at == tick  # not advanced: fired once it is fixed
    assert set(scheduler._quarantined) == {Schedule.objects.get().id}


def test_code_and_settings_declarations_carry_a_key(
    scheduler: Scheduler, declared: list[str]
) -> None:
    @cron("0 * * * *", name="code-keyed", partition_key="hourly")
    @job("test.keyed")
    def keyed(payload: Any) -> None: ...

    declared.append("code-keyed")
    try:
        entries = {"settings-keyed": {"cron": "0 2 * * *", "job": "test.record",
                                      "partition_key": "nightly"}}  # fmt: skip
        with override_settings(PGJOBS={"SCHEDULES": entries}):
            scheduler.run_once()
            assert Schedule.objects.get(name="code-keyed").partition_key == "hourly"
            assert Schedule.objects.get(name="settings-keyed").partition_key == "nightly"
            assert Job.objects.get(id=run_schedule_now("settings-keyed")).partition_key == (
                "nightly"
            )
        # A declaration's key changing is synced like any other option.
        entries["settings-keyed"]["partition_key"] = "other"
        with override_settings(PGJOBS={"SCHEDULES": entries}):
            another = Scheduler()
            try:
                another.run_once()
            finally:
                another.close()
            assert Schedule.objects.get(name="settings-keyed").partition_key == "other"
    finally:
        registry.remove("test.keyed")


def test_a_cron_on_a_task_keys_its_ticks_from_the_tasks_arguments(scheduler: Scheduler) -> None:
    Schedule.objects.create(
        name="post", cron="* * * * *", job_name=tasks.post_entry.module_path,
        payload={"args": [5], "kwargs": {"amount": 1}},
    )  # fmt: skip
    (tick,) = fire(scheduler, "post")
    assert tick.partition_key == "account:5"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"partition_key": 5}, "partition_key must be a non-empty str"),
        ({"partition_key": "k" * 501}, "501 characters long"),
        ({"job_name": "ledger.keyed", "payload": {}}, "raised KeyError"),
    ],
)
def test_bad_keys_are_reported_by_the_check(
    register_handler: Callable[..., JobHandler], options: dict[str, Any], problem: str
) -> None:
    register_handler("ledger.keyed", lambda payload: None, partition_key=lambda p: p["account"])
    fields = {"name": "s", "cron": "* * * * *", "job_name": "test.record", **options}
    found = Declaration(**fields).problems()
    assert problem in found["partition_key"]
    assert Declaration(**{**fields, "partition_key": "own"}).problems() == {}


def test_settings_accept_the_key_and_nothing_unknown() -> None:
    entries = {"s": {"cron": "* * * * *", "job": "test.record", "partition_key": "k"}}
    with override_settings(PGJOBS={"SCHEDULES": entries}):
        (declaration,), errors = settings_declarations()
    assert declaration.partition_key == "k" and errors == []
