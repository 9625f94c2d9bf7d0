"""A schedule's times, catch-up and job stay inside what the scheduler, the admin and the
commands can handle: a start of 9999-12-31 or a catch-up of a million ticks is refused by the
admin form (the model's validation) and by the checks of code and settings declarations, and a
schedule can never run one of the library's own jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django import forms
from django.db import IntegrityError, connection
from django.test import override_settings

from django_pgjobs import schedule
from django_pgjobs.checks import check_schedules
from django_pgjobs.models import Schedule
from django_pgjobs.workflows.definitions import runner_job_name

pytestmark = pytest.mark.django_db(transaction=True)

FAR = datetime(9999, 12, 31, tzinfo=UTC)


class ScheduleForm(forms.ModelForm):  # type: ignore[type-arg]
    """The fields the admin's form edits, validated as the admin validates them."""

    class Meta:
        model = Schedule
        fields = ("name", "cron", "job_name", "payload", "timezone", "start_at", "end_at",
                  "catch_up", "catch_up_limit")  # fmt: skip


def form_errors(**fields: Any) -> dict[str, Any]:
    data = {"name": "x", "cron": "0 * * * *", "job_name": "test.record", "payload": "{}",
            "timezone": "UTC", "catch_up": "skip", "catch_up_limit": 10, **fields}  # fmt: skip
    form = ScheduleForm(data=data)
    form.is_valid()
    return dict(form.errors)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"start_at": FAR}, "start_at", "outside the supported range"),
        ({"end_at": FAR}, "end_at", "Leave it empty for no bound"),
        ({"start_at": datetime(1, 1, 1, tzinfo=UTC)}, "start_at", "outside the supported range"),
        ({"catch_up_limit": 1_000_000}, "catch_up_limit", "from 1 to 1000"),
        ({"catch_up_limit": 0}, "catch_up_limit", "from 1 to 1000"),
        ({"job_name": "pgjobs.workflow:abc"}, "job_name", "reserved for django-pgjobs"),
    ],
)
def test_the_admin_form_refuses_what_would_break_later(
    fields: dict[str, Any], field: str, message: str
) -> None:
    errors = form_errors(**fields)
    assert field in errors and message in str(errors[field])
    assert not Schedule.objects.exists()


def test_the_form_accepts_the_bounds_themselves() -> None:
    assert form_errors(catch_up_limit=1000, end_at=datetime(8999, 12, 31, tzinfo=UTC)) == {}


def test_the_running_workflow_runner_cannot_be_scheduled() -> None:
    errors = form_errors(job_name=runner_job_name())
    assert "reserved" in str(errors["job_name"])


@pytest.mark.parametrize(
    ("options", "message", "hint"),
    [
        ({"start": FAR}, "outside the supported range", "Fix its 'start'."),
        ({"end": FAR}, "Leave it empty", "Fix its 'end'."),
        ({"catch_up": "all", "catch_up_limit": 10**6}, "from 1 to 1000", "'catch_up_limit'"),
    ],
)
def test_code_declarations_are_held_to_the_same_bounds(
    declared: list[str], options: dict[str, Any], message: str, hint: str
) -> None:
    schedule("far", cron="0 * * * *", job_name="test.record", **options)
    declared.append("far")
    [error] = check_schedules(app_configs=None, databases=None)
    assert error.id == "pgjobs.E010" and message in error.msg
    assert error.hint is not None and hint in error.hint


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        ({"job": "test.record", "start": "2026-01-01"}, "Fix its 'start'."),
        ({"job": "test.record", "end": FAR}, "Fix its 'end'."),
        ({"job": "nobody.handles.this"}, "Fix its 'job'."),
    ],
)
def test_the_e010_hint_names_the_settings_key(entry: dict[str, Any], hint: str) -> None:
    """A settings entry says "start", "end" and "job", not the model's start_at, end_at and
    job_name."""
    with override_settings(PGJOBS={"SCHEDULES": {"s": {"cron": "0 * * * *", **entry}}}):
        [error] = check_schedules(app_configs=None, databases=None)
    assert error.hint == hint


def test_e011_lists_the_allowed_keys() -> None:
    bad = {"typo": {"cron": "0 * * * *", "job": "test.record", "start_at": None}}
    with override_settings(PGJOBS={"SCHEDULES": bad}):
        [error] = check_schedules(app_configs=None, databases=None)
    assert error.id == "pgjobs.E011"
    assert "unknown key(s): start_at; the allowed keys are cron, job, payload, queue" in error.msg
    assert "start, end, catch_up, catch_up_limit." in error.msg


@pytest.mark.parametrize(
    ("column", "value"),
    [("job_name", "pgjobs.workflow:abc"), ("catch_up_limit", 1001), ("catch_up_limit", 0)],
)
def test_the_table_refuses_the_same_from_sql(column: str, value: Any) -> None:
    row: dict[str, Any] = {"name": "sql", "job_name": "test.record", column: value}
    with pytest.raises(IntegrityError), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, catch_up_limit) "
            "VALUES (%(name)s, '0 * * * *', %(job_name)s, %(limit)s)",
            {**row, "limit": row.get("catch_up_limit", 10)},
        )


def test_a_schedule_payload_is_held_to_what_enqueue_accepts() -> None:
    with override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": 50}):
        errors = form_errors(payload='{"blob": "' + "x" * 100 + '"}')
    assert "the limit is 50" in str(errors["payload"])
    assert form_errors(payload='{"a": 1}') == {}
