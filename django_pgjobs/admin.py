"""The Django admin as an operations console for jobs, dead letters, schedules and workers.

Every action calls the same library function as the CLI (``retry_job``, ``cancel_job``,
``retry_dead_letter_job``, ``run_schedule_now``) and needs the model's change permission: a
view-only staff user sees everything and can change nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.filters import (
    AllValuesFieldListFilter,
    ChoicesFieldListFilter,
    SimpleListFilter,
)
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Coalesce, Now
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from django_pgjobs import crontab, dashboard, jobs
from django_pgjobs.conf import conf
from django_pgjobs.dashboard import bar_chart, capped, line_chart, load_dashboard
from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.models import Dashboard, FailedJob, Job, JobStatus, Schedule, Worker
from django_pgjobs.registry import registry
from django_pgjobs.scheduler import run_schedule_now

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
else:

    class ModelAdmin(admin.ModelAdmin):
        """django-stubs types ModelAdmin as generic; make ``ModelAdmin[Job]`` work at run time
        without requiring django-stubs-ext's monkeypatching."""

        def __class_getitem__(cls, item: object) -> type:
            return cls


_STATUS_COLOURS: dict[str, str] = {
    JobStatus.PENDING: "#7a7a7a",
    JobStatus.RUNNING: "#1f6feb",
    JobStatus.COMPLETED: "#1a7f37",
    JobStatus.CANCELLED: "#9a6700",
}
_DROPDOWN_TEMPLATE = "django_admin_listfilter_dropdown/dropdown_filter.html"
# The most rows one admin action handles in a request (one statement per row).
ACTION_LIMIT = 1000
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]{4,36}$")


def _filter_template() -> str:
    """django-admin-list-filter-dropdown's select box when that app is installed; else the
    admin's plain list, so the package is an enhancement, not a requirement."""
    if apps.is_installed("django_admin_listfilter_dropdown"):
        return _DROPDOWN_TEMPLATE
    return "admin/filter.html"


class _DropdownTemplate:
    """Pick the filter template once the filter exists (the app registry is ready by then)."""

    template: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.template = _filter_template()


class ValuesDropdown(_DropdownTemplate, AllValuesFieldListFilter):
    pass


class ChoicesDropdown(_DropdownTemplate, ChoicesFieldListFilter):
    pass


class _ExactValueFilter(SimpleListFilter):
    """A filter whose choices come from somewhere cheap instead of a DISTINCT over the table."""

    def offered_values(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.offered_values()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class JobNameFilter(_ExactValueFilter):
    """Job names from the registry."""

    title = "job name"
    parameter_name = "job_name"

    def offered_values(self) -> list[str]:
        return registry.names()


class QueueFilter(_ExactValueFilter):
    """Queues with pending or running jobs, found by the dashboard's skip scan."""

    title = "queue"
    parameter_name = "queue"

    def offered_values(self) -> list[str]:
        return dashboard.active_queues()


def search_by_id_or_name(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    """A full id, an id's first characters (as shown in the list: an index range scan), or a
    job name."""
    if not term:
        return queryset
    if "-" in term and len(term) == 36:
        try:
            return queryset.filter(id=uuid.UUID(term))
        except ValueError:
            pass
    by_name = Q(job_name__icontains=term)
    digits = term.replace("-", "").lower()
    if _HEX_PREFIX.match(term) and len(digits) <= 32:
        low = uuid.UUID(digits.ljust(32, "0"))
        high = uuid.UUID(digits.ljust(32, "f"))
        return queryset.filter(Q(id__range=(low, high)) | by_name)
    return queryset.filter(by_name)


def _excerpt(text: str | None, length: int = 80) -> str:
    first = (text or "").split("\n", 1)[0]
    return first if len(first) <= length else first[: length - 1] + "…"


def _pre(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def _apply(
    modeladmin: ModelAdmin[Any],
    request: HttpRequest,
    ids: Iterable[uuid.UUID],
    operation: Callable[[uuid.UUID], Any],
    done: str,
) -> None:
    """Run one library operation per selected row; report successes, and refusals grouped by
    reason. A selection above ACTION_LIMIT rows is refused: one request must stay short."""
    selected = list(ids)
    if len(selected) > ACTION_LIMIT:
        modeladmin.message_user(
            request,
            f"{len(selected)} rows selected; actions handle at most {ACTION_LIMIT} at a time. "
            "Narrow the selection with filters (or use the CLI / the API for bulk changes).",
            messages.ERROR,
        )
        return
    succeeded = 0
    refusals: dict[str, int] = {}
    for pk in selected:
        try:
            operation(pk)
            succeeded += 1
        except PgJobsError as exc:
            reason = str(exc).replace(str(pk), "{id}")
            refusals[reason] = refusals.get(reason, 0) + 1
    if succeeded:
        modeladmin.message_user(request, f"{succeeded} {done}.", messages.SUCCESS)
    for reason, count in refusals.items():
        modeladmin.message_user(request, f"{count} job(s): {reason}", messages.WARNING)


class _QueueDatabaseMixin:
    """Read and write the queue's database (``PGJOBS["DATABASE"]``), like the library does."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        return queryset.using(conf.DATABASE)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.save(using=conf.DATABASE)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj.delete(using=conf.DATABASE)


if TYPE_CHECKING:
    _PaginatorBase = Paginator[Any]
else:
    _PaginatorBase = Paginator


class _CappedPaginator(_PaginatorBase):
    """Counts at most COUNT_CAP + 1 rows: a million-row table is never counted in full."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if isinstance(qs, QuerySet):
            return len(qs.order_by().values_list("pk", flat=True)[: dashboard.COUNT_CAP + 1])
        return len(qs)


class _ReadOnlyFieldsMixin(_QueueDatabaseMixin):
    """Rows are written by the queue; the admin acts on them only through actions.

    Detail pages are view-only even for superusers: saving a form writes the whole row back as
    it was read, which would undo a claim or bring back a requeued dead letter. Actions check
    the change permission without an object, so they keep working.
    """

    show_full_result_count = False

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator[Any]:
        return _CappedPaginator(queryset, per_page, orphans, allow_empty_first_page)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False
        return bool(super().has_change_permission(request, obj))  # type: ignore[misc]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        model = self.model  # type: ignore[attr-defined]
        declared = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return declared + [f.name for f in model._meta.fields if f.name not in declared]


class _JobColumns:
    """Columns shared by jobs and dead letters (both rows describe a job)."""

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Job | FailedJob) -> str:
        return str(obj.id)[:8]

    @admin.display(description="attempts")
    def attempts(self, obj: Job | FailedJob) -> str:
        return f"{obj.attempt}/{obj.max_attempts}"

    @admin.display(description="error")
    def error_excerpt(self, obj: Job | FailedJob) -> str:
        return _excerpt(obj.error)

    @admin.display(description="payload")
    def pretty_payload(self, obj: Job | FailedJob) -> str:
        return _pre(obj.payload)

    @admin.display(description="error (with traceback)")
    def full_error(self, obj: Job | FailedJob) -> str:
        return _pre(obj.error) if obj.error else "—"


@admin.register(Job)
class JobAdmin(_JobColumns, _ReadOnlyFieldsMixin, ModelAdmin[Job]):
    list_display = (
        "short_id",
        "job_name",
        "queue",
        "status_badge",
        "attempts",
        "progress_bar",
        "scheduled_for",
        "created_at",
        "error_excerpt",
    )
    list_filter = (("status", ChoicesDropdown), QueueFilter, JobNameFilter)
    search_fields = ("job_name",)
    search_help_text = (
        "A job id (or its first characters), a job name, or payload:TEXT to search payloads "
        "(a full scan: slow on large tables)."
    )
    ordering = ("-created_at",)
    list_per_page = 50
    actions = ("retry_now", "run_now", "cancel")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting rows behind the queue's back (a running job!) is not an operation here;
        # this also removes the bulk "delete selected" action. Cancel, then let pruning go.
        return False

    readonly_fields = ("pretty_payload", "full_error", "timings")
    fieldsets = (
        (None, {"fields": ("id", "job_name", "queue", "priority", "status", "key")}),
        ("Attempts", {"fields": ("attempt", "max_attempts", "full_error")}),
        ("Progress", {"fields": ("progress", "progress_message")}),
        ("Payload", {"fields": ("pretty_payload",)}),
        (
            "Timing",
            {"fields": ("timings", "created_at", "scheduled_for", "locked_at", "completed_at")},
        ),
        ("Lease", {"fields": ("locked_by", "lease_expires_at"), "classes": ("collapse",)}),
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if term.startswith("payload:"):
            text = term.removeprefix("payload:").strip()
            annotated = queryset.annotate(payload_text=Cast("payload", TextField()))
            return annotated.filter(payload_text__icontains=text), False
        return search_by_id_or_name(queryset, term), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Job) -> str:
        label = "awaiting retry" if obj.is_awaiting_retry else obj.status
        colour = "#cf222e" if obj.is_awaiting_retry else _STATUS_COLOURS.get(obj.status, "#7a7a7a")
        return format_html(
            '<span style="color: #fff; background: {}; padding: 1px 6px; border-radius: 8px">'
            "{}</span>",
            colour,
            label,
        )

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, obj: Job) -> str:
        if obj.progress is None:
            return "—"
        return format_html(
            '<div title="{}" style="width: 100px; background: #eee; border-radius: 3px">'
            '<div style="width: {}%; background: #1f6feb; color: #fff; font-size: 10px; '
            'border-radius: 3px; padding-left: 3px">{}%</div></div><small>{}</small>',
            obj.progress_message or "",
            obj.progress,
            obj.progress,
            _excerpt(obj.progress_message, 40),
        )

    @admin.display(description="timings")
    def timings(self, obj: Job) -> str:
        parts = [
            f"waited {obj.locked_at - obj.scheduled_for}"
            if obj.locked_at and obj.locked_at > obj.scheduled_for
            else ""
        ]
        if obj.completed_at and obj.locked_at:
            parts.append(f"last attempt ran {obj.completed_at - obj.locked_at}")
        elif obj.status == JobStatus.RUNNING and obj.locked_at:
            parts.append(f"running for {timezone.now() - obj.locked_at}")
        return "; ".join(p for p in parts if p) or "—"

    @admin.action(description="Retry now (pending or cancelled jobs)", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = queryset.values_list("id", flat=True)
        _apply(
            self,
            request,
            ids,
            lambda pk: jobs.retry_job(pk, using=conf.DATABASE),
            "job(s) will run again now",
        )

    @admin.action(description="Run now (pending jobs scheduled later)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        pending = list(queryset.filter(status=JobStatus.PENDING).values_list("id", flat=True))
        skipped = queryset.exclude(status=JobStatus.PENDING).count()
        if skipped:
            message = f"{skipped} job(s) skipped: only pending jobs can run now."
            self.message_user(request, message, messages.WARNING)
        _apply(
            self,
            request,
            pending,
            lambda pk: jobs.retry_job(pk, using=conf.DATABASE),
            "job(s) due now",
        )

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = queryset.values_list("id", flat=True)
        _apply(
            self,
            request,
            ids,
            lambda pk: jobs.cancel_job(pk, using=conf.DATABASE),
            "job(s) cancelled",
        )


@admin.register(FailedJob)
class FailedJobAdmin(_JobColumns, _ReadOnlyFieldsMixin, ModelAdmin[FailedJob]):
    list_display = ("short_id", "job_name", "queue", "attempts", "failed_at", "error_excerpt")
    list_filter = (JobNameFilter, ("queue", ValuesDropdown))
    search_fields = ("job_name",)
    search_help_text = "A dead letter's id (or its first characters) or a job name."
    ordering = ("-failed_at",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[FailedJob], search_term: str
    ) -> tuple[QuerySet[FailedJob], bool]:
        return search_by_id_or_name(queryset, search_term.strip()), False

    actions = ("requeue",)
    readonly_fields = ("pretty_payload", "full_error")
    fields = (
        "id", "job_name", "queue", "priority", "attempt", "max_attempts", "pretty_payload",
        "full_error", "original_created_at", "failed_at",
    )  # fmt: skip
    change_list_template = "admin/pgjobs/failedjob/change_list.html"

    @admin.action(description="Requeue (as a fresh job)", permissions=["change"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[FailedJob]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        _apply(
            self,
            request,
            ids,
            lambda pk: jobs.retry_dead_letter_job(pk, using=conf.DATABASE),
            "dead letter(s) requeued",
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        # One bad deploy is one line here, not a thousand: recent dead letters by job and error
        # class (the last week, through the failed_at index).
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context=extra_context)
        groups = (
            FailedJob.objects.using(conf.DATABASE)
            .filter(failed_at__gte=Now() - timedelta(days=7))
            .annotate(error_class=error_class_expression())
            .values("job_name", "error_class")
            .annotate(count=Count("id"))
            .order_by("-count", "job_name")[:20]
        )
        context = {"dead_letter_groups": list(groups), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)


def error_class_expression() -> Any:
    """The exception class of a stored error: the text before the first ':' of its first line."""
    from django.db.models import Func, Value

    first_line = Func(
        "error", Value("\n"), Value(1), function="split_part", output_field=TextField()
    )
    return Coalesce(
        Func(first_line, Value(":"), Value(1), function="split_part", output_field=TextField()),
        Value("(no error)"),
        output_field=TextField(),
    )


@admin.register(Schedule)
class ScheduleAdmin(_QueueDatabaseMixin, ModelAdmin[Schedule]):
    list_display = (
        "name", "cron", "timezone", "job_name", "enabled", "source", "last_run_at",
        "next_fire_times",
    )  # fmt: skip
    list_filter = ("enabled", "source")
    search_fields = ("name", "job_name")
    actions = ("enable", "disable", "run_now")
    readonly_fields = ("source", "orphaned", "last_run_at", "next_run_at", "next_fire_times")

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.source != "database":
            # Declared in code or settings: the next deploy's sync would undo an edit here.
            # Only pausing (enabled) is the operator's.
            editable = {"enabled"}
            fields += [
                f.name for f in Schedule._meta.fields if f.name not in editable | set(fields)
            ]
        return fields

    @admin.display(description="next fire times")
    def next_fire_times(self, obj: Schedule) -> str:
        try:
            spec = crontab.parse(obj.cron, timezone=obj.timezone, start=obj.start_at)
        except crontab.InvalidScheduleError as exc:
            return f"invalid: {exc}"
        now = timezone.now()
        after = max(now, obj.start_at) if obj.start_at else now
        tz = crontab.get_timezone(obj.timezone)
        times = crontab.upcoming(spec, after, 3, end=obj.end_at)
        return ", ".join(f"{t.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}" for t in times) or "none"

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"{count} schedule(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"{count} schedule(s) disabled.", messages.SUCCESS)

    @admin.action(description="Run now (a manual run, not a tick)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        names = queryset.values_list("name", flat=True)
        _apply(self, request, names, lambda name: run_schedule_now(name), "schedule(s) run")  # type: ignore[arg-type]


@admin.register(Worker)
class WorkerAdmin(_ReadOnlyFieldsMixin, ModelAdmin[Worker]):
    list_display = (
        "id", "state", "hostname", "pid", "queue_list", "concurrency", "running_jobs",
        "started_at", "last_heartbeat_at",
    )  # fmt: skip
    ordering = ("started_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        # Running jobs per worker in the same query: no N+1 on the changelist.
        running = (
            Job.objects.filter(status=JobStatus.RUNNING, locked_by=OuterRef("id"))
            .order_by()
            .values("locked_by")
            .annotate(n=Count("id"))
            .values("n")
        )
        queryset: QuerySet[Worker] = super().get_queryset(request)
        return queryset.annotate(
            running_count=Coalesce(Subquery(running, output_field=IntegerField()), 0)
        )

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
        return ", ".join(obj.queues) or "all"

    @admin.display(description="running jobs", ordering="running_count")
    def running_jobs(self, obj: Worker) -> int:
        return int(getattr(obj, "running_count", 0))


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
            **(extra_context or {}),
        }
        template = (
            "admin/pgjobs/dashboard_body.html"
            if request.GET.get("partial")
            else "admin/pgjobs/dashboard.html"
        )
        return TemplateResponse(request, template, context)
