"""Jobs and dead letters in the admin."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce, Now
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from django_pgjobs.admin import common
from django_pgjobs.admin.attempt_history import AttemptHistoryColumns
from django_pgjobs.admin.common import (
    ModelAdmin,
    _apply,
    _ReadOnlyFieldsMixin,
    search_by_id_or_name,
)
from django_pgjobs.admin.explain_panel import explanation_panel
from django_pgjobs.admin.filters import (
    ChoicesDropdown,
    HandlerFilter,
    JobNameFilter,
    QueueFilter,
    RunnerJobFilter,
)
from django_pgjobs.admin.job_columns import JobColumns, JobOnlyColumns
from django_pgjobs.admin.requeue import requeue_all_selected
from django_pgjobs.conf import conf
from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.jobs import operations as jobs
from django_pgjobs.models import (
    FailedJob,
    Job,
    JobStatus,
)
from django_pgjobs.observability.display import in_number


@admin.register(Job)
class JobAdmin(JobOnlyColumns, AttemptHistoryColumns, _ReadOnlyFieldsMixin, ModelAdmin[Job]):
    list_display = (
        "short_id", "job_label", "queue", "status_badge", "attempts", "progress_bar",
        "created_and_due", "error_excerpt",
    )  # fmt: skip
    list_filter = (
        ("status", ChoicesDropdown), QueueFilter, JobNameFilter, HandlerFilter, RunnerJobFilter,
    )  # fmt: skip
    search_fields = ("job_name",)
    search_help_text = (
        "A job id (or its last or first characters), a job name, or payload:TEXT to search "
        "payloads (a full scan: slow on large tables)."
    )
    # Newest first through the key (ids are time-ordered, django_pgjobs.jobs.ids); the created
    # column still sorts by created_at when clicked, reading the whole table to sort it.
    ordering = ("-id",)
    list_per_page = 50
    actions = ("retry_now", "run_now", "cancel")
    change_form_template = "admin/pgjobs/job/change_form.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting rows behind the queue's back (a running job!) is not an operation here;
        # this also removes the bulk "delete selected" action. Cancel, then let pruning go.
        return False

    readonly_fields = (
        "job_label", "status_badge", "pretty_payload", "full_error", "timings",
        "progress_detail", "created", "due", "first_started", "started", "finished",
        "lease_expires", "attempt_history", "pretty_result", "pretty_metadata",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("id", "job_label", "queue", "priority", "status_badge", "key")}),
        ("Attempts", {"fields": ("attempt", "max_attempts", "full_error", "attempt_history")}),
        ("Progress", {"fields": ("progress_detail",)}),
        ("Payload", {"fields": ("pretty_payload", "pretty_metadata", "pretty_result")}),
        (
            "Timing",
            {"fields": ("timings", "created", "due", "first_started", "started", "finished")},
        ),
        ("Lease", {"fields": ("locked_by", "lease_expires"), "classes": ("collapse",)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> Any:
        if obj is None or obj.partition_key is None:
            return self.fieldsets
        # Shown beside the queue where a job has one (most jobs have none).
        (name, first), *rest = self.fieldsets
        fields = list(first["fields"])
        fields.insert(fields.index("queue") + 1, "partition_key")
        return ((name, {**first, "fields": tuple(fields)}), *rest)

    def get_urls(self) -> list[URLPattern]:
        buttons = [
            path(
                f"<path:object_id>/{verb}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"pgjobs_job_{verb}",
            )
            for verb, view in (("retry", self.retry_view), ("cancel", self.cancel_view))
        ]
        return [*buttons, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Job | None = None,
    ) -> HttpResponse:
        # The buttons call what the list's actions call, with the same (model) permission.
        allowed = obj is not None and self.has_change_permission(request)
        status = obj.status if obj is not None else None
        context["pgjobs_can_retry"] = allowed and status in (JobStatus.PENDING, "cancelled")
        context["pgjobs_can_cancel"] = allowed and status in (JobStatus.PENDING, "running")
        if obj is not None:
            context["pgjobs_explanation"] = explanation_panel(obj.id)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # A job that failed its last attempt moved to the dead letters under the same id: a
        # link or bookmark to it opens the dead letter, not "doesn't exist".
        dead_id = _uuid_or_none(object_id)
        if (
            dead_id is not None
            and self.get_object(request, object_id) is None
            and FailedJob.objects.using(conf.DATABASE).filter(pk=dead_id).exists()
        ):
            self.message_user(
                request, f"Job {object_id} was dead-lettered: this is its dead letter."
            )
            return redirect("admin:pgjobs_failedjob_change", object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._button(request, object_id, jobs.retry_job, "will run again now")

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._button(request, object_id, jobs.cancel_job, "is cancelled")

    def _button(
        self, request: HttpRequest, object_id: str, operation: Any, done: str
    ) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            operation(object_id, using=conf.DATABASE)
        except PgJobsError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.message_user(request, f"Job {object_id} {done}.", messages.SUCCESS)
        return redirect("admin:pgjobs_job_change", object_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if term.startswith("payload:"):
            text = term.removeprefix("payload:").strip()
            annotated = queryset.annotate(payload_text=Cast("payload", TextField()))
            return annotated.filter(payload_text__icontains=text), False
        return search_by_id_or_name(queryset, term), False

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
            noun = in_number("job(s)", skipped)
            message = f"{shown} {noun} skipped: only pending jobs can run now."
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
class FailedJobAdmin(
    JobColumns, AttemptHistoryColumns, _ReadOnlyFieldsMixin, ModelAdmin[FailedJob]
):
    list_display = ("short_id", "job_label", "queue", "attempts", "failed", "error_excerpt")
    list_filter = (JobNameFilter, QueueFilter)
    search_fields = ("job_name",)
    search_help_text = "A dead letter's id (or its last or first characters) or a job name."
    ordering = ("-failed_at",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[FailedJob], search_term: str
    ) -> tuple[QuerySet[FailedJob], bool]:
        return search_by_id_or_name(queryset, search_term.strip()), False

    actions = ("requeue", requeue_all_selected)
    readonly_fields = (
        "job_label", "pretty_payload", "full_error", "first_created", "failed", "first_started",
        "attempt_history", "pretty_metadata",
    )  # fmt: skip
    fields = (
        "id", "job_label", "queue", "priority", "attempt", "max_attempts", "pretty_payload",
        "pretty_metadata", "full_error", "attempt_history", "first_created", "first_started",
        "failed",
    )  # fmt: skip
    change_list_template = "admin/pgjobs/failedjob/change_list.html"

    def get_fields(self, request: HttpRequest, obj: FailedJob | None = None) -> Any:
        # The job's partition key and timeout, which a requeue gives back, where it had them.
        fields = list(self.fields)
        if obj is not None and obj.partition_key is not None:
            fields.insert(fields.index("queue") + 1, "partition_key")
        if obj is not None and obj.timeout is not None:
            fields.insert(fields.index("max_attempts") + 1, "timeout")
        return fields

    @admin.action(description="Requeue (as a fresh job)", permissions=["change"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[FailedJob]) -> None:
        ids = queryset.values_list("id", flat=True)
        _apply(
            self,
            request,
            ids,
            lambda pk: jobs.retry_dead_letter_job(pk, using=conf.DATABASE),
            "dead letter(s) requeued",
            results="as job(s)",
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: FailedJob | None = None,
    ) -> HttpResponse:
        if obj is not None:  # when and why it was dead-lettered, and how to retry it
            context["pgjobs_explanation"] = explanation_panel(obj.id, dead_letter_page=True)
        return super().render_change_form(request, context, add, change, form_url, obj)

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


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
