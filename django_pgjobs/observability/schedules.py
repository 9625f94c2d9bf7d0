"""Schedules as an operator sees them: the rows in ``pgjobs_schedules`` and the declarations in
code or settings that no scheduler has synced yet, each with its state and next fire times.

Shared by ``manage.py pgjobs schedules``. A declaration reaches the table when a worker's
scheduler (or ``pgjobs_scheduler``) starts; until then it exists only in this code base, so a
listing of the table alone would hide it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from django_pgjobs.database import queue_database
from django_pgjobs.models import Schedule
from django_pgjobs.schedules import crontab
from django_pgjobs.schedules.declarations import declarations
from django_pgjobs.schedules.validation import default_timezone

UPCOMING = 5


@dataclass(frozen=True)
class ScheduleView:
    name: str
    cron: str
    timezone: str
    job_name: str
    source: str
    # enabled, disabled, orphaned (a row whose declaration is gone: it never fires again),
    # unsynced (declared here, not in the table yet)
    state: str
    last_run_at: datetime | None = None
    upcoming: list[datetime] = field(default_factory=list)
    # Why there are no fire times: an invalid expression, or a window beyond the calendar.
    problem: str | None = None


def schedule_views(*, using: str | None = None, now: datetime | None = None) -> list[ScheduleView]:
    """Every schedule by name: the table's rows, then the declarations missing from it."""
    now = now or timezone.now()
    views = {}
    for row in Schedule.objects.using(queue_database(using)).order_by("name"):
        state = "orphaned" if row.orphaned else "enabled" if row.enabled else "disabled"
        views[row.name] = _view(
            row.name, row.cron, row.timezone, row.job_name, row.source, state,
            start=row.start_at, end=row.end_at, last_run_at=row.last_run_at, now=now,
        )  # fmt: skip
    for declared in declarations():
        if declared.name not in views:
            views[declared.name] = _view(
                declared.name, declared.cron, declared.timezone or default_timezone(),
                declared.job_name, declared.source, "unsynced",
                start=declared.start, end=declared.end, last_run_at=None, now=now,
            )  # fmt: skip
    return [views[name] for name in sorted(views)]


def _view(
    name: str,
    cron: str,
    zone: str,
    job_name: str,
    source: str,
    state: str,
    *,
    start: datetime | None,
    end: datetime | None,
    last_run_at: datetime | None,
    now: datetime,
) -> ScheduleView:
    view = ScheduleView(name, cron, zone, job_name, source, state, last_run_at)
    if state == "orphaned":
        return view  # it will not fire: no fire times to show
    upcoming, problem = fire_times(cron, zone, start=start, end=end, now=now, count=UPCOMING)
    if problem is not None:
        return ScheduleView(**{**vars(view), "problem": problem})
    return ScheduleView(**{**vars(view), "upcoming": upcoming})


def fire_times(
    cron: str,
    zone: str,
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    count: int,
) -> tuple[list[datetime], str | None]:
    """The next ``count`` fire times of a stored schedule, or why there are none to show: an
    invalid expression, or a window near the end of the calendar (a row written by SQL, or a
    form the admin refused and shows again). For ``pgjobs schedules`` and the admin."""
    try:
        spec = crontab.parse(cron, timezone=zone, start=start)
        after = max(now, start) if start else now
        return crontab.upcoming(spec, after, count, end=end), None
    except crontab.InvalidScheduleError as exc:
        return [], str(exc)
    except (OverflowError, ValueError):
        return [], "its window starts beyond the calendar"
