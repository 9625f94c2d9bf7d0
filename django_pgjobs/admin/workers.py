"""Live and stale workers in the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_pgjobs.admin.common import (
    ModelAdmin,
    _excerpt,
    _ReadOnlyFieldsMixin,
    related_count,
)
from django_pgjobs.conf import conf
from django_pgjobs.models import (
    Job,
    JobStatus,
    Worker,
)


@admin.register(Worker)
class WorkerAdmin(_ReadOnlyFieldsMixin, ModelAdmin[Worker]):
    list_display = (
        "id", "state", "hostname", "pid", "queue_list", "concurrency", "running_jobs",
        "started_at", "last_heartbeat_at",
    )  # fmt: skip
    ordering = ("started_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        # Running jobs per worker in the same query: no N+1 on the changelist.
        running = Job.objects.filter(status=JobStatus.RUNNING, locked_by=OuterRef("id"))
        queryset: QuerySet[Worker] = super().get_queryset(request)
        return queryset.annotate(running_count=related_count(running, "locked_by"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="state")
    def state(self, obj: Worker) -> str:
        silent = timedelta(seconds=max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS))
        live = obj.last_heartbeat_at >= timezone.now() - silent
        return format_html(
            '<span style="color: {}">{}</span>',
            "#1a7f37" if live else "#cf222e",
            "live" if live else "stale",
        )

    @admin.display(description="queues")
    def queue_list(self, obj: Worker) -> str:
        # Workers write a list of names; a row written by SQL may hold any JSON.
        queues: Any = obj.queues
        if not queues:
            return "all"
        shown = queues if isinstance(queues, list) else [queues]
        names = (q if isinstance(q, str) else json.dumps(q, sort_keys=True) for q in shown)
        return _excerpt(", ".join(names), 200)

    @admin.display(description="running jobs", ordering="running_count")
    def running_jobs(self, obj: Worker) -> int:
        return int(getattr(obj, "running_count", 0))
