"""Schedules in the admin: database schedules are edited here, declared ones paused."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import actions as site_actions
from django.db.models import Field, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from django_pgjobs.admin.columns import timestamp
from django_pgjobs.admin.common import (
    ModelAdmin,
    _apply,
    _QueueDatabaseMixin,
)
from django_pgjobs.admin.previews import PREVIEW_CHARS, LargeValuesMixin, whole_or_head
from django_pgjobs.jobs.validation import MAX_KEY_LENGTH
from django_pgjobs.models import Schedule, ScheduleSource
from django_pgjobs.observability.display import in_number
from django_pgjobs.observability.schedules import fire_times
from django_pgjobs.schedules import crontab
from django_pgjobs.schedules.scheduler import run_schedule_now
from django_pgjobs.stored_json import UndecodableJSON, decode_json


def _not_editable(obj: Schedule) -> bool:
    """The payload does not fit the change page's preview (see previews.whole_or_head), or it is
    JSON Python cannot decode (written by SQL): the form could only mangle it. Shown read-only,
    and left as it is when the operator saves (disabling the schedule, say)."""
    head = getattr(obj, "payload_head", None) or ""
    if int(getattr(obj, "payload_size", 0) or 0) > len(head.encode()):
        return True
    return isinstance(decode_json(head), UndecodableJSON)


# The sources a scheduler's sync writes (and puts back): code and settings.
_SYNCED = (ScheduleSource.CODE, ScheduleSource.SETTINGS)


def _declared(obj: Schedule) -> bool:
    """Declared in code or settings, and still declared (not orphaned). A row SQL wrote with
    any other source is no declaration: nothing puts it back, so it may be deleted."""
    return obj.source in _SYNCED and not obj.orphaned


@admin.register(Schedule)
class ScheduleAdmin(LargeValuesMixin, _QueueDatabaseMixin, ModelAdmin[Schedule]):
    list_display = (
        "name", "cron", "timezone", "job_name", "enabled", "source", "last_run", "next_fire_times",
    )  # fmt: skip
    list_filter = ("enabled", "source")
    search_fields = ("name", "job_name")
    actions = ("enable", "disable", "run_now", "delete_selected")
    readonly_fields = ("source", "orphaned", "last_run", "next_run", "next_fire_times")
    last_run = timestamp("last_run_at", "last run")
    next_run = timestamp("next_run_at", "next run")
    # The list does not read payloads; a change page reads a bounded preview of one (a row
    # written by SQL may be megabytes) and edits it only when it fits the preview.
    raw_fields: ClassVar[dict[str, bool]] = {"payload": True}
    list_defer = ("payload",)

    def formfield_for_dbfield(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "partition_key":
            # One line, and empty means NULL (the job's own key): '' is a key of its own, which
            # a TextField's form field would save.
            return forms.CharField(
                required=False,
                empty_value=None,
                max_length=MAX_KEY_LENGTH,
                label="Partition key",
                help_text="The partition key of the schedule's jobs (see the queues how-to); "
                "empty: the job's own (@job(partition_key=...)), if any.",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.source != "database":
            # Declared in code or settings: the next deploy's sync would undo an edit here.
            # Only pausing (enabled) is the operator's.
            editable = {"enabled"}
            fields += [
                f.name
                for f in Schedule._meta.fields
                if f.name not in editable | set(fields) | {"payload"}
            ]
            fields.append("payload_preview")
        elif obj is not None and _not_editable(obj):
            fields.append("payload_preview")
        return fields

    def get_exclude(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        excluded = list(super().get_exclude(request, obj) or [])
        if obj is not None and (obj.source != "database" or _not_editable(obj)):
            excluded.append("payload")  # shown by payload_preview instead
        return excluded

    @admin.display(description="payload")
    def payload_preview(self, obj: Schedule) -> str:
        url = self.raw_url(obj, "payload")
        return whole_or_head(obj, "payload", json_value=True, raw_url=url, limit=PREVIEW_CHARS)

    @admin.display(description="next fire times")
    def next_fire_times(self, obj: Schedule) -> str:
        times, problem = fire_times(
            obj.cron, obj.timezone, start=obj.start_at, end=obj.end_at, now=timezone.now(), count=3
        )
        if problem is not None:
            return f"invalid: {problem}"
        tz = crontab.get_timezone(obj.timezone)
        if not times:
            return "none"
        # One per line, date and time free to wrap apart: a 1,400 px window fits the list.
        return format_html_join(
            mark_safe("<br>"),
            '<span class="pgjobs-time"><span>{}</span> <span>{}</span></span>',
            ((f"{t.astimezone(tz):%Y-%m-%d}", f"{t.astimezone(tz):%H:%M:%S %Z}") for t in times),
        )

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        # A schedule declared in code or settings is put back (enabled) by the next scheduler's
        # sync, and until then nothing fires it: deleting it looks like a pause and undoes the
        # operator's Disable. Orphaned ones (their declaration removed) may go.
        if obj is not None and _declared(obj):
            return False
        return bool(super().has_delete_permission(request, obj))

    @admin.action(
        description=gettext_lazy("Delete selected %(verbose_name_plural)s"), permissions=["delete"]
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        """Django's *Delete selected* (this action takes its name, so it replaces the site's),
        refused when the selection holds a schedule still declared in code or settings (see
        :meth:`has_delete_permission`): nothing is deleted."""
        declared = queryset.filter(source__in=_SYNCED, orphaned=False)
        count = declared.count()
        if count:
            names = list(declared.order_by("name").values_list("name", flat=True)[:5])
            shown = ", ".join(names) + (", ..." if count > 5 else "")
            one = count == 1
            self.message_user(
                request,
                f"Nothing deleted: {count} {in_number('schedule(s)', count)} of the selection "
                f"{'is' if one else 'are'} declared in code or settings ({shown}), which a "
                f"scheduler puts back at its next start. Disable {'it' if one else 'them'} "
                "instead, or remove the declaration.",
                messages.ERROR,
            )
            return None
        return site_actions.delete_selected(self, request, queryset)

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(
            request, f"{count} {in_number('schedule(s)', count)} enabled.", messages.SUCCESS
        )

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(
            request, f"{count} {in_number('schedule(s)', count)} disabled.", messages.SUCCESS
        )

    @admin.action(description="Run now (a manual run, not a tick)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        names = queryset.values_list("name", flat=True)
        _apply(
            self,
            request,
            names,
            lambda name: run_schedule_now(name),
            "schedule(s) run",
            noun="schedule(s)",
        )
