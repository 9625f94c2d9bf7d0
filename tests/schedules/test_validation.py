"""Bad schedules are reported by system checks pgjobs.E010/E011 and refused by the model's
validation (the admin form's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs import schedule
from django_pgjobs.checks import check_schedules
from django_pgjobs.models import Schedule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"cron": "61 * * * *"}, "Invalid cron expression"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "Unknown timezone"),
        ({"cron": "0 * * * *", "job_name": "nobody.handles.this"}, "No job handler"),
        (
            {
                "cron": "0 * * * *",
                "start": datetime(2026, 2, 1, tzinfo=UTC),
                "end": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "end must be after its start",
        ),
        ({"cron": "0 * * * *", "payload": {"fire_time": "mine"}}, "set by the scheduler"),
    ],
)
def test_e010_invalid_code_schedules(
    declared: list[str], declaration: dict[str, Any], message: str
) -> None:
    schedule("bad", **{"job_name": "test.record", **declaration})
    declared.append("bad")
    errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"]
    assert message in errors[0].msg and "'bad' (code)" in errors[0].msg


def test_e010_and_e011_for_settings_schedules() -> None:
    bad = {
        "no-job": {"cron": "0 * * * *"},
        "typo": {"cron": "0 * * * *", "job": "test.record", "paylod": {}},
        "bad-cron": {"cron": "every day", "job": "test.record"},
    }
    with override_settings(PGJOBS={"SCHEDULES": bad}):
        ids = sorted(str(e.id) for e in check_schedules(app_configs=None, databases=None))
    assert ids == ["pgjobs.E010", "pgjobs.E011", "pgjobs.E011"]


def test_model_validation_serves_the_admin_form() -> None:
    from django.core.exceptions import ValidationError

    row = Schedule(name="x", cron="0 0 30 2 *", job_name="test.record", timezone="UTC")
    with pytest.raises(ValidationError) as raised:
        row.full_clean()
    assert "cron" in raised.value.message_dict


def test_schedule_options_are_validated_like_enqueue(declared: list[str]) -> None:
    from django.core.exceptions import ValidationError

    schedule("loud", cron="0 * * * *", job_name="test.record", priority=500)
    declared.append("loud")
    errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"] and "between -100 and 100" in errors[0].msg
    with pytest.raises(ValidationError) as raised:
        Schedule(
            name="x", cron="0 * * * *", job_name="test.record", queue="", priority=500
        ).full_clean()
    assert {"priority", "queue"} <= set(raised.value.message_dict)


def test_settings_schedule_with_a_string_start_is_reported_not_a_crash() -> None:
    bad = {"s": {"cron": "0 * * * *", "job": "test.record", "start": "2026-01-01"}}
    with override_settings(PGJOBS={"SCHEDULES": bad}):
        errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"] and "aware datetime" in errors[0].msg


def test_e012_two_code_schedules_with_one_name(declared: list[str]) -> None:
    """Two @cron on one job without name=, or two apps picking the same name: the second would
    silently replace the first."""
    declared.append("twice")
    schedule("twice", cron="0 3 * * *", job_name="test.record")
    schedule("twice", cron="0 3 * * *", job_name="test.record")  # a module imported again: fine
    assert "pgjobs.E012" not in [e.id for e in check_schedules(app_configs=None, databases=None)]
    schedule("twice", cron="0 4 * * *", job_name="test.record")
    [error] = [
        e for e in check_schedules(app_configs=None, databases=None) if e.id == "pgjobs.E012"
    ]
    assert "'0 3 * * *'" in error.msg and "'0 4 * * *'" in error.msg
