"""What the jobs and dead letters admin shows of a row: columns and detail fields.

Payload, error and progress message are deferred on lists (see previews.py): these read the
``*_head`` annotations instead, never the columns themselves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Case, Q, TextField, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Left
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from django_pgjobs.admin.columns import format_time, humanise, progress_bar, timestamp
from django_pgjobs.admin.common import _STATUS_COLOURS, _badge, _excerpt
from django_pgjobs.admin.previews import (
    LIST_CHARS,
    PREVIEW_CHARS,
    LargeValuesMixin,
    bounded,
    whole_or_head,
)
from django_pgjobs.jobs import short_ids
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import FailedJob, Job, JobStatus
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

NO_HANDLER_TITLE = (
    "No handler of this name is registered in the web server's process; workers importing the "
    "same jobs modules will not run it either."
)


def runner_of() -> Case:
    """The workflow id a workflow runner job's payload names (NULL for other jobs, and for a
    payload that is not an object)."""
    return Case(
        When(
            Q(job_name__startswith=WORKFLOW_JOB_PREFIX),
            then=Left(KeyTextTransform("workflow_id", "payload"), LIST_CHARS),
        ),
        output_field=TextField(),
    )


class JobColumns(LargeValuesMixin):
    """Columns shared by jobs and dead letters (both rows describe a job)."""

    # Large columns: lists read 200 characters of the error, detail pages a bounded preview
    # of each, and <id>/raw/<field>/ the whole value (see previews.py).
    raw_fields: ClassVar[dict[str, bool]] = {"payload": True, "error": False, "metadata": True}
    list_defer: tuple[str, ...] = ("payload", "error", "metadata", "error_history")

    def list_heads(self) -> dict[str, Any]:
        return bounded("error", "error", LIST_CHARS) | {"runner_of": runner_of()}

    def detail_heads(self) -> dict[str, Any]:
        return super().detail_heads() | {"runner_of": runner_of()}

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Job | FailedJob) -> str:
        return short_ids.short_id(obj.id)

    @admin.display(description="job", ordering="job_name")
    def job_label(self, obj: Job | FailedJob) -> str:
        """A workflow runner as a link to its workflow; a name no handler claims, marked."""
        if obj.job_name.startswith(WORKFLOW_JOB_PREFIX):
            workflow_id = getattr(obj, "runner_of", None)
            if workflow_id:
                url = reverse("admin:pgjobs_workflowexecution_change", args=[quote(workflow_id)])
                return format_html(
                    '<a href="{}" title="{}">workflow {}</a>',
                    url,
                    obj.job_name,
                    _excerpt(workflow_id, 60),
                )
        if obj.job_name not in registry.names():
            return format_html(
                '{}<span class="pgjobs-no-handler" title="{}">no handler</span>',
                obj.job_name,
                NO_HANDLER_TITLE,
            )
        return obj.job_name

    @admin.display(description="attempts")
    def attempts(self, obj: Job | FailedJob) -> str:
        return f"{obj.attempt}/{obj.max_attempts}"

    @admin.display(description="error")
    def error_excerpt(self, obj: Job | FailedJob) -> str:
        head = getattr(obj, "error_head", None)
        if not head:
            return ""
        return format_html('<span title="{}">{}</span>', head, _excerpt(head))

    @admin.display(description="payload")
    def pretty_payload(self, obj: Job | FailedJob) -> str:
        return self._preview(obj, "payload", json_value=True)

    @admin.display(description="error (with traceback)")
    def full_error(self, obj: Job | FailedJob) -> str:
        return self._preview(obj, "error", json_value=False)

    @admin.display(description="metadata")
    def pretty_metadata(self, obj: Job | FailedJob) -> str:
        return self._preview(obj, "metadata", json_value=True)

    def _preview(self, obj: Job | FailedJob, field: str, *, json_value: bool) -> str:
        url = self.raw_url(obj, field)
        return whole_or_head(obj, field, json_value=json_value, raw_url=url, limit=PREVIEW_CHARS)

    created = timestamp("created_at", "created")
    due = timestamp("scheduled_for", "due")
    started = timestamp("locked_at", "last attempt started")
    finished = timestamp("completed_at", "finished")
    first_started = timestamp("started_at", "first attempt started")
    lease_expires = timestamp("lease_expires_at", "lease expires")
    failed = timestamp("failed_at", "dead-lettered")
    first_created = timestamp("original_created_at", "created")


class JobOnlyColumns(JobColumns):
    """Columns only a job (not a dead letter) has: status, progress, timings."""

    raw_fields: ClassVar[dict[str, bool]] = {
        "payload": True,
        "error": False,
        "progress_message": False,
        "metadata": True,
        "result": True,
    }
    list_defer: tuple[str, ...] = (
        "payload", "error", "progress_message", "metadata", "error_history", "result",
    )  # fmt: skip

    def list_heads(self) -> dict[str, Any]:
        return super().list_heads() | bounded("progress_message", "progress_message", LIST_CHARS)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Job) -> str:
        # error_head: the error is deferred (Job.is_awaiting_retry would load it, row by row).
        retrying = obj.status == JobStatus.PENDING and getattr(obj, "error_head", None) is not None
        label = "awaiting retry" if retrying else obj.status
        colour = "#cf222e" if retrying else _STATUS_COLOURS.get(obj.status, "#7a7a7a")
        return _badge(label, colour)

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, obj: Job) -> str:
        message = getattr(obj, "progress_message_head", None)
        return progress_bar(
            obj.progress, _excerpt(message, LIST_CHARS), excerpt=_excerpt(message, 40)
        )

    @admin.display(description="result (kept by tasks)")
    def pretty_result(self, obj: Job) -> str:
        return self._preview(obj, "result", json_value=True)

    @admin.display(description="progress")
    def progress_detail(self, obj: Job) -> str:
        if obj.progress is None:
            return "—"
        head = getattr(obj, "progress_message_head", None) or ""
        bar = progress_bar(obj.progress, head[:LIST_CHARS])
        if not head:
            return bar
        message = self._preview(obj, "progress_message", json_value=False)
        return format_html("{}{}", bar, message)

    @admin.display(description="created", ordering="created_at")
    def created_and_due(self, obj: Job) -> str:
        """One column for both times (two would not fit a 1,400 px window): the creation time,
        and the due time below it when the job was scheduled for later or is awaiting a retry."""
        created = format_time(obj.created_at)
        if obj.scheduled_for - obj.created_at < timedelta(seconds=1):
            return created
        return format_html(
            '{}<br><small title="due">due {}</small>', created, format_time(obj.scheduled_for)
        )

    @admin.display(description="timings")
    def timings(self, obj: Job) -> str:
        parts = []
        if obj.locked_at and obj.locked_at > obj.scheduled_for:
            parts.append(f"waited {humanise(obj.locked_at - obj.scheduled_for)} to start")
        if obj.completed_at and obj.locked_at:
            parts.append(f"the last attempt ran {humanise(obj.completed_at - obj.locked_at)}")
        elif obj.status == JobStatus.RUNNING and obj.locked_at:
            parts.append(f"running for {humanise(timezone.now() - obj.locked_at)}")
        return "; ".join(parts) or "—"
