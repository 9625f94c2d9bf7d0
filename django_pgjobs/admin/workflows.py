"""Workflows in the admin: list, view-only detail with steps, cancel/resume/fork."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from django_pgjobs.admin.columns import timestamp
from django_pgjobs.admin.common import (
    _WORKFLOW_COLOURS,
    ModelAdmin,
    _apply,
    _badge,
    _pre,
    _ReadOnlyFieldsMixin,
    related_count,
)
from django_pgjobs.admin.filters import ChoicesDropdown, _ExactValueFilter
from django_pgjobs.admin.previews import (
    PREVIEW_CHARS,
    LargeValuesMixin,
    traceback_of,
    whole_or_head,
)
from django_pgjobs.admin.workflow_steps import error_summary, step_raw_response, steps_table
from django_pgjobs.conf import conf
from django_pgjobs.jobs import ids, short_ids
from django_pgjobs.models import (
    FailedJob,
    Job,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
    WorkflowStepStatus,
)
from django_pgjobs.workflows import definitions, registry
from django_pgjobs.workflows.control import cancel_workflow, fork_workflow, resume_workflow

# Child workflows and jobs linked from a detail page.
LINKS_SHOWN = 10
# A workflow's jobs are looked up from this long before it was created (ids carry the clock of the
# host that made them; see runs_as).
ID_CLOCK_MARGIN = timedelta(hours=1)
_LINE_BREAK = mark_safe("<br>")


class WorkflowNameFilter(_ExactValueFilter):
    """Workflow names from the workflow registry."""

    title = "workflow name"
    parameter_name = "name"

    def offered_values(self) -> list[str]:
        return [definition.name for definition in registry.workflows.all()]


def search_workflows(
    queryset: QuerySet[WorkflowExecution], term: str
) -> QuerySet[WorkflowExecution]:
    """A workflow id or its first characters, or part of a workflow name."""
    if not term:
        return queryset
    return queryset.filter(Q(workflow_id__startswith=term) | Q(name__icontains=term))


def _workflow_link(workflow_id: str) -> str:
    url = reverse("admin:pgjobs_workflowexecution_change", args=[quote(workflow_id)])
    return format_html('<a href="{}">{}</a>', url, workflow_id)


@admin.register(WorkflowExecution)
class WorkflowAdmin(LargeValuesMixin, _ReadOnlyFieldsMixin, ModelAdmin[WorkflowExecution]):
    list_display = (
        "workflow_id", "name", "status_badge", "version", "steps_done", "created", "updated",
    )  # fmt: skip
    list_filter = (("status", ChoicesDropdown), WorkflowNameFilter)
    search_fields = ("name",)
    search_help_text = "A workflow id (or its first characters) or part of a workflow name."
    ordering = ("-created_at",)
    list_per_page = 50
    actions = ("cancel", "resume", "resume_on_deployed_version", "fork_from_start")
    change_form_template = "admin/pgjobs/workflowexecution/change_form.html"
    readonly_fields = (
        "created", "started", "updated", "finished",
        "status_badge", "version", "pretty_input", "pretty_output", "full_error",
        "lineage", "runs_as",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("workflow_id", "name", "status_badge", "version")}),
        ("Queueing", {"fields": ("queue", "priority", "max_recovery_attempts")}),
        ("Inputs", {"fields": ("pretty_input",)}),
        ("Outcome", {"fields": ("pretty_output", "full_error")}),
        ("Lineage and jobs", {"fields": ("lineage", "runs_as")}),
        ("Timing", {"fields": ("created", "started", "updated", "finished")}),
    )

    # The list shows no inputs, outputs or errors: it does not read them (they may be large).
    list_defer = ("input", "output", "error")
    raw_fields: ClassVar[dict[str, bool]] = {"input": True, "output": True, "error": True}

    def detail_heads(self) -> dict[str, Any]:
        return super().detail_heads() | traceback_of("error", PREVIEW_CHARS)

    def get_urls(self) -> list[URLPattern]:
        step_raw = path(
            "<path:object_id>/steps/<int:index>/raw/<str:field>/",
            self.admin_site.admin_view(self.step_raw_view),
            name="pgjobs_workflowexecution_step_raw",
        )
        return [step_raw, *super().get_urls()]

    def step_raw_view(
        self, request: HttpRequest, object_id: str, index: int, field: str
    ) -> HttpResponse:
        """One step's whole output or error, as stored."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return step_raw_response(unquote(object_id), index, field)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a workflow would orphan its job (which would then fail to load it). Cancel.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowExecution]:
        # Completed steps per workflow in the same query (a correlated count through the
        # (workflow_id, step_index) unique index): no N+1 on the changelist.
        done = WorkflowStep.objects.filter(
            workflow=OuterRef("workflow_id"), status=WorkflowStepStatus.COMPLETED
        )
        queryset: QuerySet[WorkflowExecution] = super().get_queryset(request)
        return queryset.annotate(steps_completed=related_count(done, "workflow"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WorkflowExecution], search_term: str
    ) -> tuple[QuerySet[WorkflowExecution], bool]:
        return search_workflows(queryset, search_term.strip()), False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: WorkflowExecution | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(steps_table(obj.workflow_id))
        return super().render_change_form(request, context, add, change, form_url, obj)

    created = timestamp("created_at", "created")
    started = timestamp("started_at", "started")
    updated = timestamp("updated_at", "updated")
    finished = timestamp("completed_at", "finished")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowExecution) -> str:
        return _badge(obj.status, _WORKFLOW_COLOURS.get(obj.status, "#7a7a7a"))

    @admin.display(description="app version", ordering="app_version")
    def version(self, obj: WorkflowExecution) -> str:
        deployed = definitions.app_version()
        if obj.app_version == deployed or obj.status not in ("pending", "running"):
            return obj.app_version
        # Workers claim only workflows of their own code version: once the old workers are
        # gone, this one waits for "Resume on the deployed code version".
        return format_html(
            '{} <small style="color: #9a6700" title="Workers claim only workflows of their own '
            'code version.">(deployed: {})</small>',
            obj.app_version,
            deployed,
        )

    @admin.display(description="steps done")
    def steps_done(self, obj: WorkflowExecution) -> int:
        return int(getattr(obj, "steps_completed", 0))

    def _preview(self, obj: WorkflowExecution, name: str, field: str, *, json_value: bool) -> str:
        url = self.raw_url(obj, field)
        return whole_or_head(obj, name, json_value=json_value, raw_url=url, limit=PREVIEW_CHARS)

    @admin.display(description="input (args and kwargs)")
    def pretty_input(self, obj: WorkflowExecution) -> str:
        return self._preview(obj, "input", "input", json_value=True)

    @admin.display(description="output")
    def pretty_output(self, obj: WorkflowExecution) -> str:
        if obj.status != WorkflowStatus.COMPLETED:
            return "—"
        # As JSON even when it is a string: "42" and 42 are different outputs.
        return self._preview(obj, "output", "output", json_value=True)

    @admin.display(description="error (with traceback)")
    def full_error(self, obj: WorkflowExecution) -> str:
        if getattr(obj, "error_head", None) is None:
            return "—"
        if getattr(obj, "error_traceback_head", None):
            return self._preview(obj, "error_traceback", "error", json_value=False)
        return _pre(error_summary(obj, "error"))

    @admin.display(description="lineage")
    def lineage(self, obj: WorkflowExecution) -> str:
        parts = []
        if obj.parent_workflow_id:
            parts.append(format_html("child of {}", _workflow_link(obj.parent_workflow_id)))
        if obj.forked_from:
            parts.append(format_html("forked from {}", _workflow_link(obj.forked_from)))
        # Through the partial index on parent_workflow_id.
        children = list(
            WorkflowExecution.objects.using(conf.DATABASE)
            .filter(parent_workflow_id=obj.workflow_id)
            .order_by("created_at")
            .values_list("workflow_id", "status")[: LINKS_SHOWN + 1]
        )
        if children:
            links = format_html_join(
                ", ",
                "{} ({})",
                ((_workflow_link(child), status) for child, status in children[:LINKS_SHOWN]),
            )
            more = ", …" if len(children) > LINKS_SHOWN else ""
            parts.append(format_html("children: {}{}", links, more))
        return format_html_join(_LINE_BREAK, "{}", ((part,) for part in parts)) or "—"

    @admin.display(description="runs as")
    def runs_as(self, obj: WorkflowExecution) -> str:
        """The workflow's jobs (key ``pgjobs.workflow:<id>``), and its dead letter if it died."""
        key = f"pgjobs.workflow:{obj.workflow_id}"
        # Its jobs are created with it or later (a resume queues a new one): a range of the key
        # bounds the scan (ids are time-ordered; an hour earlier for the clocks of the hosts
        # that made them), as the key is indexed only for pending and running jobs.
        since = ids.earliest_id(obj.created_at - ID_CLOCK_MARGIN)
        runs = list(
            Job.objects.using(conf.DATABASE)
            .filter(key=key, id__gte=since, created_at__gte=obj.created_at)
            .order_by("-id")
            .values_list("id", "status")[:LINKS_SHOWN]
        )
        lines = [
            format_html(
                '<a href="{}">job {}</a> ({})',
                reverse("admin:pgjobs_job_change", args=[job_id]),
                short_ids.short_id(job_id),
                status,
            )
            for job_id, status in runs
        ]
        if obj.status == WorkflowStatus.DEAD:
            dead = FailedJob.objects.using(conf.DATABASE).filter(
                job_name__startswith="pgjobs.workflow:", payload__workflow_id=obj.workflow_id
            )
            lines += [
                format_html(
                    '<a href="{}">dead letter {}</a>',
                    reverse("admin:pgjobs_failedjob_change", args=[dead_id]),
                    short_ids.short_id(dead_id),
                )
                for dead_id in dead.values_list("id", flat=True)[:LINKS_SHOWN]
            ]
        query = urlencode(
            {
                "key": key,
                "id__gte": str(since),
                "created_at__gte": obj.created_at.isoformat(),
                "runner": "shown",
            }
        )
        lines.append(
            format_html(
                '<a href="{}?{}">all its jobs in the jobs admin</a>',
                reverse("admin:pgjobs_job_changelist"),
                query,
            )
        )
        return format_html_join(_LINE_BREAK, "{}", ((line,) for line in lines))

    def _act(
        self,
        request: HttpRequest,
        queryset: QuerySet[WorkflowExecution],
        operation: Callable[[str], Any],
        done: str,
    ) -> bool:
        ids = queryset.values_list("workflow_id", flat=True)
        return _apply(self, request, ids, operation, done, noun="workflow(s)")

    @admin.action(description="Cancel (pending or running workflows)", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[WorkflowExecution]) -> None:
        self._act(request, queryset, cancel_workflow, "workflow(s) cancelled")

    @admin.action(
        description="Resume from the last checkpoint (cancelled, dead or pending workflows)",
        permissions=["change"],
    )
    def resume(self, request: HttpRequest, queryset: QuerySet[WorkflowExecution]) -> None:
        self._act(request, queryset, resume_workflow, "workflow(s) queued to resume")

    @admin.action(description="Resume on the deployed code version", permissions=["change"])
    def resume_on_deployed_version(
        self, request: HttpRequest, queryset: QuerySet[WorkflowExecution]
    ) -> None:
        version = definitions.app_version()
        self._act(
            request,
            queryset,
            lambda workflow_id: resume_workflow(workflow_id, app_version=version),
            f"workflow(s) queued to resume on version {version}",
        )

    @admin.action(
        description="Fork from the start (a new workflow, same inputs, deployed code)",
        permissions=["change"],
    )
    def fork_from_start(self, request: HttpRequest, queryset: QuerySet[WorkflowExecution]) -> None:
        forks: list[str] = []

        def fork(workflow_id: str) -> None:
            forks.append(fork_workflow(workflow_id, 0).workflow_id)

        if self._act(request, queryset, fork, "workflow(s) forked") and forks:
            links = format_html_join(", ", "{}", ((_workflow_link(f),) for f in forks[:10]))
            more = ", …" if len(forks) > 10 else ""
            message = format_html("The new workflow(s): {}{}", links, more)
            self.message_user(request, message, messages.INFO)
