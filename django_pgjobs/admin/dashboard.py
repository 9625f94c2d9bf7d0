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
from django_pgjobs.models import (
    Dashboard,
)
from django_pgjobs.observability import dashboard
from django_pgjobs.observability.dashboard import capped, load_dashboard


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
        lag = board.oldest_due_age
        context = {
            **self.admin_site.each_context(request),
            "title": "Jobs dashboard",
            "board": board,
            "count_cap": f"{dashboard.COUNT_CAP:,}",
            "due": capped(board.total_due),
            "dead_letters": capped(board.dead_letters),
            "lag": "—" if lag is None else str(timedelta(seconds=round(lag))),
            "queues": [
                {
                    "queue": q.queue,
                    "due": capped(q.due),
                    "scheduled": capped(q.scheduled),
                    "running": q.running,
                }
                for q in board.queues
            ],
            "completed_chart": bar_chart(
                "Completed per minute", board.completed, board.minutes, "#1a7f37"
            ),
            "dead_chart": bar_chart(
                "Dead-lettered per minute", board.dead, board.minutes, "#cf222e"
            ),
            "depth_chart": line_chart(
                "Queue depth (due + running)", board.depth, board.minutes, "#1f6feb"
            ),
            "workflows": self._workflow_tiles(request),
            **(extra_context or {}),
        }
        template = (
            "admin/pgjobs/dashboard_body.html"
            if request.GET.get("partial")
            else "admin/pgjobs/dashboard.html"
        )
        return TemplateResponse(request, template, context)
