"""Schedules declared in code and settings: synced into the table at start-up, orphaned when
removed, an operator's pause kept."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs import cron, job, schedule
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import Schedule
from django_pgjobs.schedules.declarations import forget
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import make_schedule_due

pytestmark = pytest.mark.django_db(transaction=True)


def start_another_scheduler() -> None:
    """A scheduler starting up: it syncs declarations, fires what is due, and goes away."""
    another = Scheduler()
    try:
        another.run_once()
    finally:
        another.close()


def test_code_and_settings_schedules_are_synced_and_removed_ones_disabled(
    scheduler: Scheduler, declared: list[str]
) -> None:
    @cron("*/5 * * * *", name="sync-code", payload={"a": 1}, timezone="Europe/Paris")
    @job("test.scheduled")
    def scheduled(payload: Any) -> None: ...

    declared.append("sync-code")
    try:
        settings_schedules = {"sync-settings": {"cron": "0 2 * * *", "job": "test.record"}}
        with override_settings(PGJOBS={"SCHEDULES": settings_schedules}):
            scheduler.run_once()
            code = Schedule.objects.get(name="sync-code")
            assert (code.source, code.cron, code.timezone, code.payload) == (
                "code", "*/5 * * * *", "Europe/Paris", {"a": 1},
            )  # fmt: skip
            assert Schedule.objects.get(name="sync-settings").source == "settings"
            # An operator pauses the code schedule; a new scheduler's sync keeps it paused.
            Schedule.objects.filter(name="sync-code").update(enabled=False)
            start_another_scheduler()
            assert not Schedule.objects.get(name="sync-code").enabled
        # Removed from settings: no longer fires, row and history kept, enabled flag untouched.
        start_another_scheduler()
        gone = Schedule.objects.get(name="sync-settings")
        assert (gone.enabled, gone.orphaned) == (True, True)
        make_schedule_due("sync-settings", ago=timedelta(seconds=1))
        assert scheduler.run_once().enqueued == 0
        with override_settings(PGJOBS={"SCHEDULES": settings_schedules}):
            start_another_scheduler()
            back = Schedule.objects.get(name="sync-settings")
            assert (back.enabled, back.orphaned) == (True, False)
            # An old deploy's scheduler orphans the code schedule; the operator's pause of it
            # survives that and its return.
            forget("sync-code")
            start_another_scheduler()
            assert Schedule.objects.get(name="sync-code").orphaned
            schedule("sync-code", cron="*/5 * * * *", job_name="test.scheduled")
            start_another_scheduler()
            code = Schedule.objects.get(name="sync-code")
            assert (code.orphaned, code.enabled) == (False, False)
    finally:
        registry.remove("test.scheduled")


def test_the_sync_line_counts_created_schedules_apart_from_updated_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: a brand new schedule was logged as "1 updated" (a new user's trial)."""

    def synced(schedules: dict[str, Any]) -> str:
        caplog.clear()
        with (
            override_settings(PGJOBS={"SCHEDULES": schedules}),
            caplog.at_level(logging.INFO, logger="django_pgjobs.scheduler"),
        ):
            start_another_scheduler()
        [line] = [r.getMessage() for r in caplog.records if "Synced schedules" in r.msg]
        return line

    nightly = {"cron": "0 2 * * *", "job": "test.record"}
    weekly = {"cron": "0 3 * * 1", "job": "test.record"}
    assert synced({"nightly": nightly}) == (
        "Synced schedules: 1 created, 0 updated, 0 no longer declared"
    )
    assert synced({"nightly": nightly}) == (
        "Synced schedules: 0 created, 0 updated, 0 no longer declared"
    )
    assert synced({"nightly": {**nightly, "cron": "0 4 * * *"}, "weekly": weekly}) == (
        "Synced schedules: 1 created, 1 updated, 0 no longer declared"
    )
    assert synced({"weekly": weekly}) == (
        "Synced schedules: 0 created, 0 updated, 1 no longer declared"
    )


def test_cron_must_sit_above_job() -> None:
    with pytest.raises(TypeError, match="above @job"):
        cron("* * * * *")(lambda payload: None)
