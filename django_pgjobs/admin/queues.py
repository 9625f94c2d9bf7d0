"""Queues in the admin: pause, resume, and an operator's limits over the settings'.

Every change goes through :mod:`django_pgjobs.queues.control`, as the CLI's does: a form save
calls ``set_queue_limits`` (which compares with this process's ``PGJOBS["QUEUES"]``, not the
row's last sync) and ``pause_queue`` / ``resume_queue``. The row's triggers mark it
``overridden`` when an option differs from the settings (so a worker's start keeps that option)
and wake the queue's idle workers at commit.
"""

from __future__ import annotations

import weakref
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from django_pgjobs.admin.columns import format_time, timestamp
from django_pgjobs.admin.common import ModelAdmin, _apply, _QueueDatabaseMixin, capped_count
from django_pgjobs.admin.queue_form import QueueForm, declared_value, form_limits, no_limits
from django_pgjobs.conf import conf
from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.models import LIMIT_FIELDS, Job, JobStatus, Queue
from django_pgjobs.observability.dashboard import active_queues, capped
from django_pgjobs.observability.queues import describe_limits, limits_overridden, row_limits
from django_pgjobs.queues import control

# Queues an action left as they were, named in its message (the rest counted).
UNCHANGED_NAMED = 5
# Queues with jobs and no row, named above the list (each with links to create its row).
UNLISTED_SHOWN = 50
# Change-form saves that changed no limit (save_model to response_change, one request).
_UNCHANGED: weakref.WeakSet[HttpRequest] = weakref.WeakSet()


@admin.register(Queue)
class QueueAdmin(_QueueDatabaseMixin, ModelAdmin[Queue]):
    form = QueueForm
    list_display = (
        "name", "state", "limits", "running_jobs", "due_jobs", "limits_from", "updated",
    )  # fmt: skip
    list_filter = ("paused", "overridden")
    search_fields = ("name",)
    actions = ("pause", "resume", "reset_limits")
    readonly_fields = ("paused_since", "limits_from", "settings_limits", "updated")
    change_form_template = "admin/pgjobs/queue/change_form.html"
    change_list_template = "admin/pgjobs/queue/change_list.html"
    updated = timestamp("updated_at", "updated")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        # Each count reads at most COUNT_CAP rows (through pgjobs_job_running and
        # pgjobs_job_queue_claim): a queue of a million jobs costs what one of 10,000 does.
        queryset: QuerySet[Queue] = super().get_queryset(request)
        rows = Job.objects.filter(queue=OuterRef("name"))
        return queryset.annotate(
            running_count=capped_count(rows.filter(status=JobStatus.RUNNING)),
            due_count=capped_count(rows.filter(status=JobStatus.PENDING, scheduled_for__lte=Now())),
        )

    def get_fieldsets(self, request: HttpRequest, obj: Queue | None = None) -> Any:
        head: tuple[str, ...] = ("name", "paused") if obj is None else ("name", "paused_since")
        limits = (
            "concurrency", "worker_concurrency", "rate_limit", "rate_period",
            "partition_concurrency", "partition_rate_limit", "fair", "timeout",
        )  # fmt: skip
        if obj is None:
            said = (
                "Limits set here override PGJOBS['QUEUES'] until reset; left empty, the "
                "settings decide (synced when a worker starts)."
            )
            return ((None, {"fields": head}), ("Limits", {"fields": limits, "description": said}))
        said = (
            "Saving changed limits overrides PGJOBS['QUEUES'] until Reset to settings; so does "
            "a Pause or Resume the settings do not declare."
        )
        where = ("limits_from", "settings_limits")
        return (
            (None, {"fields": head}),
            ("Limits", {"fields": (*limits, *where), "description": said}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Queue | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # The name is the row's key (renaming would make another queue); pausing has its own
        # buttons and actions on an existing row, which say what they did.
        return fields + (["name", "paused"] if obj is not None else [])

    def get_form(
        self, request: HttpRequest, obj: Queue | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        declared = obj.declared if obj is not None and isinstance(obj.declared, dict) else None
        if declared is not None:
            # The settings' value beside each field: what "Reset to settings" brings back.
            for name in LIMIT_FIELDS:
                field = form.base_fields.get(name)
                if field is not None:
                    said = f"PGJOBS['QUEUES']: {declared_value(declared, name)}."
                    field.help_text = f"{field.help_text} {said}".strip()
        return form

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a row would resume a paused queue without waking its workers, and a worker's
        # start brings declared queues back anyway: Resume and Reset to settings do it properly.
        return False

    def save_model(self, request: HttpRequest, obj: Queue, form: Any, change: bool) -> None:
        limits = form_limits(form.cleaned_data)
        using = conf.DATABASE
        if not change:
            if limits != no_limits():
                control.set_queue_limits(obj.name, using=using, **limits)
            if form.cleaned_data.get("paused"):
                control.pause_queue(obj.name, using=using)
        # Every limit, as the form shows them: the operator's values replace the settings',
        # unless they are the same (set_queue_limits then marks no override, and ends one).
        elif not (
            set(form.changed_data) & set(LIMIT_FIELDS)
            and control.set_queue_limits(obj.name, using=using, **limits)
        ):
            _UNCHANGED.add(request)
        elif control.declared_limits(obj.name) is not None and not limits_overridden(
            obj.name, using=using
        ):
            # This process's settings, as set_queue_limits compared with (the row's may be
            # another deploy's).
            said = f"Queue {obj.name}: these are PGJOBS['QUEUES']'s limits: override ended."
            self.message_user(request, said, messages.INFO)

    def response_change(self, request: HttpRequest, obj: Queue) -> HttpResponse:
        if request not in _UNCHANGED:
            return super().response_change(request, obj)
        # Django would say "changed successfully": say that nothing was, and where the limits
        # still come from.
        said = f"Queue {obj.name}: nothing changed (limits from: {self.limits_from(obj)})."
        self.message_user(request, said, messages.INFO)
        if "_continue" in request.POST:
            return redirect(request.get_full_path())
        return self.response_post_save_change(request, obj)

    def get_urls(self) -> list[URLPattern]:
        # The change page's buttons: the actions' functions, with the same permission.
        buttons = [
            path(
                f"<path:object_id>/{verb}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"pgjobs_queue_{verb}",
            )
            for verb, view in (
                ("pause", self.pause_view),
                ("resume", self.resume_view),
                ("reset", self.reset_view),
            )
        ]
        return [*buttons, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Queue | None = None,
    ) -> HttpResponse:
        allowed = obj is not None and self.has_change_permission(request)
        context["pgjobs_can_pause"] = allowed and obj is not None and not obj.paused
        context["pgjobs_can_resume"] = allowed and obj is not None and obj.paused
        context["pgjobs_can_reset"] = allowed and obj is not None and obj.overridden
        return super().render_change_form(request, context, add, change, form_url, obj)

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._button(request, object_id, control.pause_queue, "paused", "was paused already")

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._button(request, object_id, control.resume_queue, "resumed", "was not paused")

    def reset_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._button(
            request, object_id, control.reset_queue_limits, "is back to PGJOBS['QUEUES']", ""
        )

    def _button(
        self, request: HttpRequest, name: str, operation: Any, done: str, already: str
    ) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            changed = operation(name, using=conf.DATABASE)
        except PgJobsError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            said, level = (done, messages.SUCCESS) if changed else (already, messages.INFO)
            self.message_user(request, f"Queue {name} {said}.", level)
        return redirect("admin:pgjobs_queue_change", name)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        listed = set(Queue.objects.using(conf.DATABASE).values_list("name", flat=True))
        unlisted = [name for name in active_queues(using=conf.DATABASE) if name not in listed]
        context = {
            "title": "Queues",
            "unlisted_queues": unlisted[:UNLISTED_SHOWN],
            "unlisted_more": max(len(unlisted) - UNLISTED_SHOWN, 0),
            "can_add": self.has_add_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    @admin.display(description="state", ordering="paused")
    def state(self, obj: Queue) -> str:
        if not obj.paused:
            return format_html('<span style="color: {}">active</span>', "#1a7f37")
        return format_html(
            '<strong style="color: #cf222e">paused</strong><br><small>since {}</small>',
            format_time(obj.paused_at),
        )

    @admin.display(description="paused since")
    def paused_since(self, obj: Queue) -> str:
        return format_time(obj.paused_at) if obj.paused else "not paused"

    @admin.display(description="limits")
    def limits(self, obj: Queue) -> str:
        return describe_limits(row_limits(obj)) or "none"

    @admin.display(description="running", ordering="running_count")
    def running_jobs(self, obj: Queue) -> str:
        return capped(int(getattr(obj, "running_count", 0)))

    @admin.display(description="due", ordering="due_count")
    def due_jobs(self, obj: Queue) -> str:
        return capped(int(getattr(obj, "due_count", 0)))

    @admin.display(description="limits from")
    def limits_from(self, obj: Queue) -> str:
        if obj.overridden:
            return "operator (overrides PGJOBS['QUEUES'])" if obj.declared else "operator"
        return "PGJOBS['QUEUES']" if obj.declared is not None else "none set"

    @admin.display(description="in settings")
    def settings_limits(self, obj: Queue) -> str:
        declared = obj.declared
        if not isinstance(declared, dict):
            return "not in PGJOBS['QUEUES'] (as of the last worker start)"
        return describe_limits(declared) or "declared without limits"

    @admin.action(description="Pause (accept jobs, start none)", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        names = queryset.filter(paused=False).values_list("name", flat=True)
        already = _Unchanged(queryset.filter(paused=True), "paused already")
        if _apply(
            self, request, names, _using(control.pause_queue), "queue(s) paused", noun="queue(s)"
        ):
            already.say(self, request)

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        names = queryset.filter(paused=True).values_list("name", flat=True)
        already = _Unchanged(queryset.filter(paused=False), "not paused")
        if _apply(
            self, request, names, _using(control.resume_queue), "queue(s) resumed", noun="queue(s)"
        ):
            already.say(self, request)

    @admin.action(description="Reset limits and pause to PGJOBS['QUEUES']", permissions=["change"])
    def reset_limits(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        names = queryset.filter(overridden=True).values_list("name", flat=True)
        already = _Unchanged(queryset.filter(overridden=False), "not overridden: nothing to reset")
        if _apply(
            self,
            request,
            names,
            _using(control.reset_queue_limits),
            "queue(s) back to PGJOBS['QUEUES']",
            noun="queue(s)",
        ):
            already.say(self, request)


class _Unchanged:
    """The selected queues an action leaves as they are, read before it runs, and the message
    that names them, as the CLI and the change page's buttons say it (the actions said
    nothing of them: found by the new-user trial)."""

    def __init__(self, rows: QuerySet[Queue], state: str) -> None:
        first = list(rows.order_by("name").values_list("name", flat=True)[: UNCHANGED_NAMED + 1])
        more = len(first) > UNCHANGED_NAMED
        self.count = rows.count() if more else len(first)
        self.shown = ", ".join(first[:UNCHANGED_NAMED]) + (", …" if more else "")
        self.state = state

    def say(self, modeladmin: QueueAdmin, request: HttpRequest) -> None:
        if self.count == 1:
            said = f"Queue {self.shown} was {self.state}."
        else:
            said = f"{self.count} queues were {self.state} ({self.shown})."
        if self.count:
            modeladmin.message_user(request, said, messages.INFO)


def _using(operation: Any) -> Any:
    return lambda name: operation(name, using=conf.DATABASE)
