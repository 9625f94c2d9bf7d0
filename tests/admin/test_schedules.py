"""The schedules admin: validated like the system checks; declared schedules can only be paused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import Job, Schedule
from tests.admin.changelists import act, changelist

pytestmark = pytest.mark.django_db(transaction=True)


def test_schedule_admin_validates_and_acts(admin_client_: Client) -> None:
    add_url = reverse("admin:pgjobs_schedule_add")
    bad = admin_client_.post(
        add_url,
        {"name": "bad", "cron": "0 0 30 2 *", "job_name": "test.record", "payload": "{}",
         "timezone": "UTC", "enabled": "on", "catch_up": "skip", "catch_up_limit": "10"},
    )  # fmt: skip
    assert bad.status_code == 200 and "Invalid cron expression" in bad.content.decode()
    assert not Schedule.objects.exists()
    admin_client_.post(
        add_url,
        {"name": "ok", "cron": "*/5 * * * *", "job_name": "test.record", "payload": "{}",
         "timezone": "Europe/Paris", "enabled": "on", "catch_up": "skip", "catch_up_limit": "10"},
    )  # fmt: skip
    row = Schedule.objects.get(name="ok")
    assert "Europe/Paris" in admin_client_.get(changelist("schedule")).content.decode()
    act(admin_client_, "schedule", "disable", [row.pk])
    assert not Schedule.objects.get().enabled
    act(admin_client_, "schedule", "run_now", [row.pk])
    assert Job.objects.get().payload["manual"] is True


def test_declared_schedules_only_let_operators_pause_them(admin_client_: Client) -> None:
    row = Schedule.objects.create(
        name="from-code", cron="0 * * * *", job_name="test.record", source="code"
    )
    page = admin_client_.get(
        reverse("admin:pgjobs_schedule_change", args=[row.pk])
    ).content.decode()
    assert 'name="enabled"' in page
    assert 'name="cron"' not in page  # shown read-only: a deploy's sync would undo an edit


def test_pausing_a_declared_schedule_through_its_form(admin_client_: Client) -> None:
    row = Schedule.objects.create(
        name="declared", cron="0 * * * *", job_name="handler.gone", source="code", orphaned=True
    )
    response = admin_client_.post(
        reverse("admin:pgjobs_schedule_change", args=[row.pk]), {"enabled": ""}
    )
    assert response.status_code == 302
    assert not Schedule.objects.get().enabled


@pytest.mark.parametrize("cron", ["@daily", "*/5 * * * *", "every 1 hours"])
def test_adding_a_schedule_that_starts_at_the_end_of_the_calendar_is_a_form_error(
    admin_client_: Client, cron: str
) -> None:
    """Before: with @daily, the refused form re-rendered its fire times from the invalid
    instance, and croniter's OverflowError made the page a 500."""
    form = {
        "name": "far", "cron": cron, "job_name": "test.record", "timezone": "UTC",
        "payload": "{}", "start_at_0": "9999-12-31", "start_at_1": "00:00:00",
        "catch_up": "skip", "catch_up_limit": "10",
    }  # fmt: skip
    page = admin_client_.post(reverse("admin:pgjobs_schedule_add"), form)
    assert page.status_code == 200
    assert "outside the supported range" in page.content.decode()
    assert not Schedule.objects.exists()


def test_the_admin_form_sets_a_key_and_an_empty_field_means_none(
    admin_client_: Client, register_handler: Callable[..., JobHandler]
) -> None:
    form = {
        "name": "keyed", "cron": "*/5 * * * *", "job_name": "test.record", "payload": "{}",
        "timezone": "UTC", "enabled": "on", "catch_up": "skip", "catch_up_limit": "10",
    }  # fmt: skip
    add = reverse("admin:pgjobs_schedule_add")
    assert admin_client_.post(add, {**form, "partition_key": "acct:1"}).status_code == 302
    assert Schedule.objects.get(name="keyed").partition_key == "acct:1"
    assert admin_client_.post(add, {**form, "name": "plain"}).status_code == 302
    assert Schedule.objects.get(name="plain").partition_key is None  # not ''
    register_handler("ledger.keyed", lambda payload: None, partition_key=lambda p: p["account"])
    refused = admin_client_.post(add, {**form, "name": "bad", "job_name": "ledger.keyed"})
    assert "raised KeyError" in refused.content.decode()
    with pytest.raises(ValidationError, match="partition_key"):
        Schedule(
            name="nul", cron="* * * * *", job_name="test.record", partition_key="a\x00"
        ).clean()


def test_the_add_form_reports_every_field_error_at_once(admin_client_: Client) -> None:
    """Before: an unknown time zone hid the expression's error (the expression was parsed in
    that zone), which appeared only once the other fields were fixed (a new user's trial)."""
    form = {
        "name": "all-wrong", "cron": "every 0 seconds", "job_name": "no.such.job",
        "payload": "[1]", "timezone": "Mars/Olympus", "enabled": "on", "catch_up": "skip",
        "catch_up_limit": "10",
    }  # fmt: skip
    page = admin_client_.post(reverse("admin:pgjobs_schedule_add"), form)
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert set(errors) == {"cron", "job_name", "payload", "timezone"}, errors
    assert "the interval must be at least 1" in errors["cron"][0]
    assert "Unknown timezone 'Mars/Olympus'" in errors["timezone"][0]
    assert not Schedule.objects.exists()


def test_a_declared_schedule_cannot_be_deleted_here_an_orphaned_or_database_one_can(
    admin_client_: Client,
) -> None:
    """Deleting one declared in code stopped its ticks until the next scheduler's start put it
    back, enabled: an operator's Disable undone (a new user's trial)."""
    code = Schedule.objects.create(
        name="c", cron="0 * * * *", job_name="test.record", source="code"
    )
    gone = Schedule.objects.create(
        name="g", cron="0 * * * *", job_name="test.record", source="code", orphaned=True
    )
    mine = Schedule.objects.create(
        name="m", cron="0 * * * *", job_name="test.record", source="database"
    )
    delete = reverse("admin:pgjobs_schedule_delete", args=[code.pk])
    assert admin_client_.get(delete).status_code == 403
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    selected = {"action": "delete_selected", "post": "yes"}
    refused = admin_client_.post(
        changelist("schedule"), {**selected, "_selected_action": [code.pk, mine.pk]}, follow=True
    )
    assert "Nothing deleted: 1 schedule of the selection is declared in code" in (
        refused.content.decode()
    )
    assert Schedule.objects.count() == 3
    admin_client_.post(
        changelist("schedule"), {**selected, "_selected_action": [gone.pk, mine.pk]}, follow=True
    )
    assert list(Schedule.objects.values_list("name", flat=True)) == ["c"]
    # A source SQL wrote that no sync knows is no declaration: nothing puts it back.
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, source) "
            "VALUES ('legacy', '0 * * * *', 'test.record', 'manual') RETURNING id"
        )
        (legacy,) = cur.fetchone()
    assert (
        admin_client_.post(
            reverse("admin:pgjobs_schedule_delete", args=[legacy]), {"post": "yes"}
        ).status_code
        == 302
    )
    assert not Schedule.objects.filter(name="legacy").exists()
