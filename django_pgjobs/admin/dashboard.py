"""The dashboard page, linked from the admin index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from django_pgjobs.admin.charts import bar_chart, line_chart
from django_pgjobs.admin.common import (
    _WORKFLOW_COLOURS,
    ModelAdmin,
)
from django_pgjobs.admin.health import health_context
from django_pgjobs.models import (
    Dashboard,
)
from django_pgjobs.observability import dashboard
from django_pgjobs.observability.dashboard import capped, load_dashboard
from django_pgjobs.observability.explanation import Blocker
from django_pgjobs.observability.health import database_health
from django_pgjobs.observability.status import UnhandledJobs
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

# How often the open page fetches its figures again; the next fetch is scheduled only once the
# previous one has settled, and none is made while the tab is hidden.
REFRESH_SECONDS = 5.0


@admin.register(Dashboard)
class DashboardAdmin(ModelAdmin[Dashboard]):
    """The dashboard page; anyone who may view jobs may view it."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("pgjobs.view_job"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _workflow_tiles(self, request: HttpRequest) -> list[dict[str, str]]:
        """Workflows per status, for those who may see workflows, once there are any."""
        if not request.user.has_perm("pgjobs.view_workflowexecution"):
            return []
        counts = dashboard.workflow_counts()
        if not any(counts.values()):
            return []
        return [
            {"status": status, "count": capped(count), "colour": _WORKFLOW_COLOURS[status]}
            for status, count in counts.items()
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        board = load_dashboard()
        paused = {p.queue for p in board.paused}
        context = {
            **self.admin_site.each_context(request),
            "title": "Jobs dashboard",
            "board": board,
            "refresh_seconds": str(REFRESH_SECONDS),
            "count_cap": f"{dashboard.COUNT_CAP:,}",
            "blocked_cap": f"{board.blocked_cap:,}",
            "due": f"{board.total_due:,}",
            "running": f"{board.total_running:,}",
            "dead_letters": capped(board.dead_letters),
            "lag": _age(board.oldest_due_age),
            "queues": [
                {
                    "queue": q.queue,
                    "due": f"{q.due:,}",
                    "scheduled": f"{q.scheduled:,}",
                    "running": f"{q.running:,}",
                    "lag": _age(q.oldest_due_age),
                    "paused": q.queue in paused,
                    "blocked": _blocked(q.blocked),
                    "capped": sum(q.blocked.values()) >= board.blocked_cap,
                }
                for q in board.queues
            ],
            # The queues page, for those who may see it (the dashboard needs only view_job).
            "queues_page": request.user.has_perm("pgjobs.view_queue"),
            "paused_queues": board.paused,
            "paused_count": f"{board.paused_count:,}",
            "more_paused": board.paused_count - len(board.paused),
            "more_queues": f"{board.queues_not_shown:,}",
            "unhandled": [_unhandled_row(found) for found in board.unhandled],
            "completed_chart": bar_chart(
                "Completed per minute", board.completed, board.minutes, tone="completed"
            ),
            "dead_chart": bar_chart(
                "Dead-lettered per minute", board.dead, board.minutes, tone="dead"
            ),
            "depth_chart": line_chart(
                "Queue depth (due + running)", board.depth, board.minutes, tone="depth"
            ),
            "workflows": self._workflow_tiles(request),
            "health": health_context(database_health()),
            **(extra_context or {}),
        }
        template = (
            "admin/pgjobs/dashboard_body.html"
            if request.GET.get("partial")
            else "admin/pgjobs/dashboard.html"
        )
        return TemplateResponse(request, template, context)


def _blocked(counts: dict[str, int]) -> list[dict[str, str]]:
    """A queue's due jobs by what holds them back, in explain_job's order, claimable last."""
    return [
        {"blocker": blocker.value, "label": blocker.label, "count": f"{counts[blocker]:,}"}
        for blocker in Blocker
        if counts.get(blocker)
    ]


def _age(seconds: float | None) -> str:
    return "—" if seconds is None else str(timedelta(seconds=round(seconds)))


def _unhandled_row(found: UnhandledJobs) -> dict[str, Any]:
    version = (
        found.job_name.removeprefix(WORKFLOW_JOB_PREFIX)
        if found.job_name.startswith(WORKFLOW_JOB_PREFIX)
        else None
    )
    return {
        "job_name": found.job_name,
        "workflow_version": version,
        "n": found.count,
        "count": f"{found.count:,}",
        "age": _age(found.oldest_due_age),
    }
