"""What the admin pages share: the action runner, mixins, the capped paginator."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast, Coalesce, Replace
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.models import (
    JobStatus,
)
from django_pgjobs.observability import dashboard
from django_pgjobs.observability.display import in_number

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin as ModelAdmin
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
_WORKFLOW_COLOURS: dict[str, str] = {
    "pending": "#7a7a7a",
    "running": "#1f6feb",
    "completed": "#1a7f37",
    "failed": "#cf222e",
    "cancelled": "#9a6700",
    "dead": "#82071e",
    "waiting": "#8250df",  # a step's durable wait in progress
}
# The most rows one admin action handles in a request (one statement per row).
ACTION_LIMIT = 1000
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]{4,36}$")


def related_count(rows: QuerySet[Any], group_by: str) -> Coalesce:
    """How many of ``rows`` (already filtered on an ``OuterRef``) there are per outer row, as a
    correlated subquery: a count column on a changelist without a query per row."""
    counted = rows.order_by().values(group_by).annotate(n=Count("id")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class _CappedCount(Subquery):
    template = "(SELECT count(*) FROM (%(subquery)s) AS capped)"


def capped_count(rows: QuerySet[Any]) -> Subquery:
    """How many of ``rows`` (filtered on an ``OuterRef``) there are per outer row, reading at
    most ``COUNT_CAP`` of them (shown as "10,000+" by ``dashboard.capped``): a count column
    whose cost per row stays bounded however many jobs a queue holds."""
    return _CappedCount(
        rows.order_by().values("pk")[: dashboard.COUNT_CAP], output_field=IntegerField()
    )


def search_by_id_or_name(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    """A full id, an id's first characters (an index range scan) or last ones (as the list
    shows them: every id is read, as a name's search reads every name), or a job name."""
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
        hex_id = Replace(Cast("id", TextField()), Value("-"), Value(""), output_field=TextField())
        annotated: QuerySet[Any] = queryset.annotate(pgjobs_hex_id=hex_id)
        return annotated.filter(
            Q(id__range=(low, high)) | Q(pgjobs_hex_id__endswith=digits) | by_name
        )
    return queryset.filter(by_name)


def _excerpt(text: str | None, length: int = 80) -> str:
    first = (text or "").split("\n", 1)[0]
    return first if len(first) <= length else first[: length - 1] + "…"


def _badge(label: str, colour: str) -> str:
    return format_html(
        '<span style="color: #fff; background: {}; padding: 1px 6px; border-radius: 8px">{}</span>',
        colour,
        label,
    )


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
    ids: Iterable[Any],
    operation: Callable[[Any], Any],
    done: str,
    *,
    noun: str = "job(s)",
    results: str | None = None,
) -> bool:
    """Run one library operation per selected row; report successes, and refusals grouped by
    reason. A selection above ACTION_LIMIT rows is refused (False): one request must stay
    short. A queryset ("select all N") is read only up to ACTION_LIMIT + 1 rows to decide.
    ``results`` names what the operation returns (e.g. "as job(s)"): the message lists them."""
    selected = list(ids[: ACTION_LIMIT + 1] if isinstance(ids, QuerySet) else ids)
    if len(selected) > ACTION_LIMIT:
        modeladmin.message_user(
            request,
            f"More than {ACTION_LIMIT} rows selected; actions handle at most {ACTION_LIMIT} at a "
            "time. "
            "Narrow the selection with filters (or use the CLI / the API for bulk changes).",
            messages.ERROR,
        )
        return False
    succeeded = 0
    made: list[Any] = []
    # One message per reason: the first refusal as it was said, and the ids it applies to.
    refusals: dict[str, tuple[str, list[Any]]] = {}
    for pk in selected:
        try:
            made.append(operation(pk))
            succeeded += 1
        except PgJobsError as exc:
            refusals.setdefault(_reason(exc, pk), (str(exc), []))[1].append(pk)
    if succeeded:
        said = f"{succeeded} {in_number(done, succeeded)}"
        if results is not None:
            said += (
                f" {in_number(results, len(made))} "
                + ", ".join(map(str, made[:5]))
                + (", …" if len(made) > 5 else "")
            )
        modeladmin.message_user(request, f"{said}.", messages.SUCCESS)
    for first, pks in refusals.values():
        if len(pks) == 1:
            message = first
        else:
            shown = ", ".join(map(str, pks[:5])) + (", …" if len(pks) > 5 else "")
            message = (
                f"{len(pks)} {in_number(noun, len(pks))} refused ({shown}), for example: {first}"
            )
        modeladmin.message_user(request, message, messages.WARNING)
    return True


def _reason(exc: PgJobsError, pk: Any) -> str:
    """The refusal with the row's id taken out, so one reason groups many rows. A quoted id
    (workflow ids and schedule names are free text: 'a' must not mangle "already") is replaced
    as a whole; a bare one only where it stands as a word of its own (id 5 must not touch
    "500")."""
    text = str(exc)
    if isinstance(pk, str) and repr(pk) in text:
        return text.replace(repr(pk), "'{id}'")
    # Not inside a longer word or number: no word character, '-' or '.digit' beside it.
    return re.sub(rf"(?<![\w-])(?<!\w\.){re.escape(str(pk))}(?![\w-]|\.\w)", "{id}", text)


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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        # Django titles the list "Select job to change" whenever actions are allowed; rows here
        # are only viewed (actions aside), so the title is the model's plural: "Jobs".
        model = self.model  # type: ignore[attr-defined]
        title = str(model._meta.verbose_name_plural).capitalize()
        context = {"title": title, **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)  # type: ignore[misc]

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
