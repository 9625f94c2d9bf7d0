"""The shop's Django tasks (``django.tasks``), run by django-pgjobs's worker like any job.

``TASKS`` in settings names ``django_pgjobs.backend.PgJobsBackend``, so django_pgjobs imports
every app's ``tasks`` module at start-up, as it does ``jobs``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.utils import timezone

from django_pgjobs.tasks.framework import task  # django.tasks on Django 6, the backport on 5.2
from shop.models import Customer


@task(max_attempts=3, backoff=2)  # type: ignore[call-overload, untyped-decorator]
def tally_signups(day: str) -> dict[str, Any]:
    """How many customers signed up on ``day`` (an ISO date): its return value is kept as the
    task's result, readable from any process with ``tally_signups.get_result(id)``."""
    start = timezone.make_aware(datetime.combine(date.fromisoformat(day), time.min))
    signups = Customer.objects.filter(
        created_at__gte=start, created_at__lt=start + timedelta(days=1)
    ).count()
    return {"day": day, "signups": signups}
