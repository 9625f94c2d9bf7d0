"""Live and stale workers in the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_pgjobs.admin.columns import timestamp
from django_pgjobs.admin.common import (
    ACTION_LIMIT,
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
from django_pgjobs.observability.display import in_number


def silence() -> timedelta:
    """How long a worker may go without a heartbeat before it counts as stale: the lease, or
    three heartbeats if that is longer (a lease would be rescued by then anyway)."""
    return timedelta(seconds=max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS))


def is_live(worker: Worker) -> bool:
    return worker.last_heartbeat_at >= timezone.now() - silence()


@admin.register(Worker)
class WorkerAdmin(_ReadOnlyFieldsMixin, ModelAdmin[Worker]):
    list_display = (
        "id", "state", "hostname", "pid", "queue_list", "concurrency", "running_jobs",
        "started", "last_heartbeat",
    )  # fmt: skip
    ordering = ("started_at",)
    fields = (
        "id", "state", "hostname", "pid", "queue_list", "concurrency", "started", "last_heartbeat",
    )  # fmt: skip
    readonly_fields = ("state", "queue_list", "started", "last_heartbeat")
    actions = ("delete_stale",)
    started = timestamp("started_at", "started")
    last_heartbeat = timestamp("last_heartbeat_at", "last heartbeat")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        # Running jobs per worker in the same query: no N+1 on the changelist.
        running = Job.objects.filter(status=JobStatus.RUNNING, locked_by=OuterRef("id"))
        queryset: QuerySet[Worker] = super().get_queryset(request)
        return queryset.annotate(running_count=related_count(running, "locked_by"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        # A live worker's row is its registration: deleting it would not stop the process,
        # only hide it. Stale rows (a worker killed without cleaning up) may go.
        if obj is not None and is_live(obj):
            return False
        return bool(super().has_delete_permission(request, obj))

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # action_location: Django 6.1 passes where the actions are shown (its deprecation warns
        # about an override without it); 5.2 calls this with the request alone.
        base: Any = super().get_actions
        actions: dict[str, Any] = (
            base(request)
            if action_location is None
            else base(request, action_location=action_location)
        )
        actions.pop("delete_selected", None)  # it would delete live workers too
        return actions

    @admin.action(
        description="Delete stale workers (no heartbeat for a lease)", permissions=["delete"]
    )
    def delete_stale(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        """Deletes only the selected rows whose heartbeat is older than the lease, in one
        statement that checks the age itself (a worker that just beat stays)."""
        stale = queryset.filter(last_heartbeat_at__lt=Now() - silence())
        deleted, _ = stale.delete()
        self.message_user(
            request, f"{deleted} stale {in_number('worker(s)', deleted)} deleted.", messages.SUCCESS
        )
        live = queryset.filter(last_heartbeat_at__gte=Now() - silence())[: ACTION_LIMIT + 1].count()
        if live:
            self.message_user(
                request,
                f"{live} live {in_number('worker(s)', live)} kept: only stale workers can be "
                "deleted.",
                messages.WARNING,
            )

    @admin.display(description="state")
    def state(self, obj: Worker) -> str:
        live = is_live(obj)
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
