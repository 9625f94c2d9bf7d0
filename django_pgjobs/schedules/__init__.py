"""Schedules: when a cron expression fires, what makes a schedule unable to run, schedules declared
in code and settings, and the scheduler that turns due ticks into jobs, each exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "cron": "django_pgjobs.schedules.declarations",
    "schedule": "django_pgjobs.schedules.declarations",
    "run_schedule_now": "django_pgjobs.schedules.scheduler",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.schedules.declarations import cron as cron
    from django_pgjobs.schedules.declarations import schedule as schedule
    from django_pgjobs.schedules.scheduler import run_schedule_now as run_schedule_now
