"""Jobs and dead letters in the admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db.models import Count, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce, Now
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_pgjobs.admin import common
from django_pgjobs.admin.common import (
    _STATUS_COLOURS,
    ChoicesDropdown,
    JobNameFilter,
    ModelAdmin,
    QueueFilter,
    ValuesDropdown,
    _apply,
    _badge,
    _excerpt,
    _ReadOnlyFieldsMixin,
    search_by_id_or_name,
)
from django_pgjobs.admin.previews import (
    LIST_CHARS,
    PREVIEW_CHARS,
    LargeValuesMixin,
    bounded,
    whole_or_head,
)
from django_pgjobs.conf import conf
from django_pgjobs.jobs import operations as jobs
from django_pgjobs.models import (
    FailedJob,
    Job,
    JobStatus,
)


class _JobColumns:
    """Columns shared by jobs and dead letters (both rows describe a job)."""

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Job | FailedJob) -> str:
        return str(obj.id)[:8]

    @admin.display(description="attempts")
    def attempts(self, obj: Job | FailedJob) -> str:
        return f"{obj.attempt}/{obj.max_attempts}"

    # Large columns: lists read 200 characters of the error, detail pages a bounded preview
    # of each, and <id>/raw/<field>/ the whole value (see previews.py).
    raw_fields: ClassVar[dict[str, bool]] = {"payload": True, "error": False}
    list_defer: tuple[str, ...] = ("payload", "error")

    def list_heads(self) -> dict[str, Any]:
        return bounded("error", "error", LIST_CHARS)

    @admin.display(description="error")
    def error_excerpt(self, obj: Job | FailedJob) -> str:
        return _excerpt(getattr(obj, "error_head", None))

    @admin.display(description="payload")
    def pretty_payload(self, obj: Job | FailedJob) -> str:
        return self._preview(obj, "payload", json_value=True)

    @admin.display(description="error (with traceback)")
    def full_error(self, obj: Job | FailedJob) -> str:
        return self._preview(obj, "error", json_value=False)

    def _preview(self, obj: Job | FailedJob, field: str, *, json_value: bool) -> str:
        url = LargeValuesMixin.raw_url(self, obj, field)  # type: ignore[arg-type]  # a mixin
        return whole_or_head(obj, field, json_value=json_value, raw_url=url, limit=PREVIEW_CHARS)


@admin.register(Job)
class JobAdmin(_JobColumns, LargeValuesMixin, _ReadOnlyFieldsMixin, ModelAdmin[Job]):
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
    raw_fields: ClassVar[dict[str, bool]] = {
        "payload": True,
        "error": False,
        "progress_message": False,
    }
    list_defer = ("payload", "error", "progress_message")

    def list_heads(self) -> dict[str, Any]:
        return super().list_heads() | bounded("progress_message", "progress_message", LIST_CHARS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting rows behind the queue's back (a running job!) is not an operation here;
        # this also removes the bulk "delete selected" action. Cancel, then let pruning go.
        return False

    readonly_fields = ("pretty_payload", "full_error", "timings", "progress_bar")
    fieldsets = (
        (None, {"fields": ("id", "job_name", "queue", "priority", "status", "key")}),
        ("Attempts", {"fields": ("attempt", "max_attempts", "full_error")}),
        ("Progress", {"fields": ("progress_bar",)}),
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
        # error_head: the error is deferred (Job.is_awaiting_retry would load it, row by row).
        retrying = obj.status == JobStatus.PENDING and getattr(obj, "error_head", None) is not None
        label = "awaiting retry" if retrying else obj.status
        colour = "#cf222e" if retrying else _STATUS_COLOURS.get(obj.status, "#7a7a7a")
        return _badge(label, colour)

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, obj: Job) -> str:
        if obj.progress is None:
            return "—"
        return format_html(
            '<div title="{}" style="width: 100px; background: #eee; border-radius: 3px">'
            '<div style="width: {}%; background: #1f6feb; color: #fff; font-size: 10px; '
            'border-radius: 3px; padding-left: 3px">{}%</div></div><small>{}</small>',
            _excerpt(getattr(obj, "progress_message_head", None), LIST_CHARS),
            obj.progress,
            obj.progress,
            _excerpt(getattr(obj, "progress_message_head", None), 40),
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
        pending = queryset.filter(status=JobStatus.PENDING).values_list("id", flat=True)
        done = _apply(
            self,
            request,
            pending,
            lambda pk: jobs.retry_job(pk, using=conf.DATABASE),
            "job(s) due now",
        )
        # Counted up to the action limit: "select all" over a million rows stays one short query.
        skipped = queryset.exclude(status=JobStatus.PENDING)[: common.ACTION_LIMIT + 1].count()
        if done and skipped:
            shown = f"More than {common.ACTION_LIMIT}" if skipped > common.ACTION_LIMIT else skipped
            message = f"{shown} job(s) skipped: only pending jobs can run now."
            self.message_user(request, message, messages.WARNING)

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
class FailedJobAdmin(_JobColumns, LargeValuesMixin, _ReadOnlyFieldsMixin, ModelAdmin[FailedJob]):
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
