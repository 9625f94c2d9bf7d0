"""Queues in the admin: pause, resume, and an operator's limits over the settings'.

Every change goes through :mod:`django_pgjobs.queues.control`, as the CLI's does: a form save
calls ``set_queue_limits`` (which compares with this process's ``PGJOBS["QUEUES"]``, not the
row's last sync) and ``pause_queue`` / ``resume_queue``. The row's triggers mark it
``overridden`` when an option differs from the settings (so a worker's start keeps that option)
and wake the queue's idle workers at commit.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from django import forms
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
from django_pgjobs.admin.queue_fields import (
    RateField,
    RatePeriodField,
    TimeoutField,
    WholeField,
    seconds_typed,
)
from django_pgjobs.conf import conf
from django_pgjobs.exceptions import InvalidJobError, PgJobsError
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.validation import MAX_INT
from django_pgjobs.models import LIMIT_FIELDS, Job, JobStatus, Queue
from django_pgjobs.observability.dashboard import active_queues, capped
from django_pgjobs.observability.queues import describe_limits, limits_overridden, row_limits
from django_pgjobs.queues import control
from django_pgjobs.queues.declarations import (
    COUNTS,
    LEFT_OUT,
    RATE_PERIOD_ALONE,
    TAKES,
    limit_problems,
    rate_period_alone,
    too_large,
    too_large_said,
)

# Queues an action left as they were, named in its message (the rest counted).
UNCHANGED_NAMED = 5
# Queues with jobs and no row, named above the list (each with links to create its row).
UNLISTED_SHOWN = 50
_DURATIONS = ("rate_period", "timeout")
# Change-form saves that changed no limit (save_model to response_change, one request).
_UNCHANGED: weakref.WeakSet[HttpRequest] = weakref.WeakSet()


def _no_limits() -> dict[str, Any]:
    """A new row's limits: none, a rate window of 1 s, no turns."""
    blank = Queue()
    return {name: getattr(blank, name) for name in LIMIT_FIELDS}


def _form_limits(cleaned: dict[str, Any]) -> dict[str, Any]:
    return {name: cleaned.get(name) for name in LIMIT_FIELDS}


def _declared_value(declared: dict[str, Any], name: str) -> str:
    """A limit of ``PGJOBS["QUEUES"]`` as the field beside it shows it: in seconds, and one left
    out as what it means ("the default (1 second)" for the rate period the field then holds)."""
    value = declared.get(name)
    if name == "fair":
        return "yes" if value else "no"
    if value is None:
        return LEFT_OUT[name]
    return f"{seconds_typed(value)} s" if name in _DURATIONS else str(value)


class QueueForm(forms.ModelForm):  # type: ignore[type-arg]
    """The limits, checked by the same function as ``PGJOBS["QUEUES"]`` and the CLI."""

    class Meta:
        model = Queue
        fields = ("name", "paused", *LIMIT_FIELDS)
        field_classes: ClassVar[dict[str, type[forms.Field]]] = {
            **dict.fromkeys(COUNTS, WholeField),
            **dict.fromkeys(("rate_limit", "partition_rate_limit"), RateField),
            "rate_period": RatePeriodField,
            "timeout": TimeoutField,
        }
        help_texts: ClassVar[dict[str, str]] = {
            "rate_period": "Seconds, e.g. 60: the sliding window of the rate limits. Empty: "
            "the default, 1 second.",
            "timeout": "Seconds, e.g. 60: a job running longer fails with a timeout (unless the "
            "job or its handler says otherwise). Empty: no timeout.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in COUNTS:
            if name in self.fields:  # "none", "1.5": say what to type, not just "a number"
                self.fields[name].error_messages.update(
                    invalid=f"Enter a positive whole number (1 to {MAX_INT}), or leave it empty "
                    f"for {LEFT_OUT[name]}."
                )
        if "rate_period" in self.fields:  # blank: the default window, as the CLI's "none"
            self.fields["rate_period"].required = False

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "rate_period" in cleaned and cleaned["rate_period"] is None:
            cleaned["rate_period"] = Queue._meta.get_field("rate_period").get_default()
        if "name" in self.fields and cleaned.get("name") is not None:
            try:
                validation.check_name(cleaned["name"], "queue name")
            except InvalidJobError as exc:
                self.add_error("name", str(exc))
        # A field the form already refused (not a number, say) is not checked again.
        limits = {
            name: value
            for name, value in _form_limits(cleaned).items()
            if name in self.fields and name not in self.errors
        }
        for name, message in limit_problems(limits, self._says).items():
            self.add_error(name, message)
        rated = ("rate_period", "rate_limit", "partition_rate_limit")
        if all(name in limits for name in rated) and rate_period_alone(limits):
            self.add_error("rate_period", RATE_PERIOD_ALONE)
        # A new row that neither pauses nor limits changes nothing, and would override the
        # settings' limits with none.
        if (
            self.instance._state.adding
            and not cleaned.get("paused")
            and not self.errors
            and {n: limits.get(n) for n in LIMIT_FIELDS} == _no_limits()
        ):
            raise forms.ValidationError(
                "Pause the queue or set a limit: a queue without either needs no row."
            )
        return cleaned

    def _says(self, option: str, value: Any) -> str:
        """What a field takes, as the form says it: by the field's label ("Rate period", not
        rate_period), and empty for no limit. (The field still shows what was typed.)"""
        label = self.fields[option].label
        if too_large(option, value):
            said = too_large_said(label or option, option)
            return f"{said}; leave it empty for {LEFT_OUT[option]}."
        return f"{label} must be {TAKES[option]}; leave it empty for {LEFT_OUT[option]}."


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
                    said = f"PGJOBS['QUEUES']: {_declared_value(declared, name)}."
                    field.help_text = f"{field.help_text} {said}".strip()
        return form

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a row would resume a paused queue without waking its workers, and a worker's
        # start brings declared queues back anyway: Resume and Reset to settings do it properly.
        return False

    def save_model(self, request: HttpRequest, obj: Queue, form: Any, change: bool) -> None:
        limits = _form_limits(form.cleaned_data)
        using = conf.DATABASE
        if not change:
            if limits != _no_limits():
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
