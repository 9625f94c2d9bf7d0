"""Large values (payloads, errors, workflow inputs, outputs) in the admin: never loaded or
rendered in full on a page.

A payload can be megabytes (or JSON Python cannot decode). Lists defer these columns and read a
short head computed by PostgreSQL; detail pages read a bounded preview and the value's size, and
link to a raw view that returns the whole value as it is stored, for anyone who may view the row.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Func, IntegerField, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Left
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from django_pgjobs.admin.common import _pre
from django_pgjobs.stored_json import UndecodableJSON, decode_json

# What a detail page shows of one value; the rest is behind the raw view's link.
PREVIEW_CHARS = 10_000
# What a list cell reads of one value (its excerpt shows 80 characters of the first line).
LIST_CHARS = 200


def as_text(column: str, *, json_column: bool) -> Any:
    return Cast(column, TextField()) if json_column else F(column)


def bounded(name: str, text: Any, length: int) -> dict[str, Any]:
    """``<name>_head``: the first ``length`` characters; ``<name>_size``: the size in bytes."""
    return {
        f"{name}_head": Left(text, length),
        f"{name}_size": Func(text, function="OCTET_LENGTH", output_field=IntegerField()),
    }


def traceback_of(column: str, length: int) -> dict[str, Any]:
    """A recorded workflow error ({"type", "message", "traceback"}): its parts, bounded."""
    return {
        f"{column}_type": Left(KeyTextTransform("type", column), 300),
        f"{column}_message": Left(KeyTextTransform("message", column), 1000),
        **bounded(f"{column}_traceback", KeyTextTransform("traceback", column), length),
    }


def pretty_json(text: str) -> str:
    """Indented JSON; when Python cannot decode it (1e5000, deep nesting), why, and the stored
    text as is."""
    value = decode_json(text)
    if isinstance(value, UndecodableJSON):
        return f"(cannot be decoded: {value.error})\nAs stored:\n{text}"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def whole_or_head(obj: Any, name: str, *, json_value: bool, raw_url: str, limit: int) -> str:
    """The value pretty-printed when it fits ``limit``; else its head, its size and a link to
    all of it."""
    head: str | None = getattr(obj, f"{name}_head", None)
    if head is None:
        return "—"
    size = int(getattr(obj, f"{name}_size", 0) or 0)
    if len(head) < limit or len(head.encode()) >= size:  # the head is the whole value
        return _pre(pretty_json(head) if json_value else head)
    return format_html(
        '{}<p class="help">The first {} characters of {}. <a href="{}">See all of it</a> '
        "(raw, as stored).</p>",
        _pre(head + "…"),
        f"{len(head):,}",
        human_size(size),
        raw_url,
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:,.1f} KB"
    return f"{size / (1024 * 1024):,.1f} MB"


class _BoundedChangeList(ChangeList):
    """A list that defers the model admin's large columns and reads their heads instead."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request, exclude_parameters)
        admin: Any = self.model_admin
        bounded_list: QuerySet[Any] = queryset.defer(*admin.list_defer)
        listed: QuerySet[Any] = bounded_list.annotate(**admin.list_heads())
        return listed


class LargeValuesMixin:
    """Lists defer ``list_defer`` and read ``list_heads()``; detail pages defer the
    ``raw_fields`` and read ``detail_heads()``; ``<id>/raw/<field>/`` returns one whole value."""

    # Column name -> True for a JSON column, False for text.
    raw_fields: ClassVar[dict[str, bool]] = {}
    list_defer: tuple[str, ...] = ()

    def list_heads(self) -> dict[str, Any]:
        return {}

    def detail_heads(self) -> dict[str, Any]:
        heads: dict[str, Any] = {}
        for field, json_column in self.raw_fields.items():
            heads |= bounded(field, as_text(field, json_column=json_column), PREVIEW_CHARS)
        return heads

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _BoundedChangeList

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        queryset = self.get_queryset(request)  # type: ignore[attr-defined]
        queryset = queryset.defer(*self.raw_fields).annotate(**self.detail_heads())
        model = queryset.model
        field = model._meta.pk if from_field is None else model._meta.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})
        except (model.DoesNotExist, ValidationError, ValueError):
            return None

    def raw_url(self, obj: Any, field: str) -> str:
        meta = obj._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_raw", args=[quote(obj.pk), field])

    def get_urls(self) -> list[URLPattern]:
        meta = self.model._meta  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.raw_view)  # type: ignore[attr-defined]
        raw = path(
            "<path:object_id>/raw/<str:field>/",
            view,
            name=f"{meta.app_label}_{meta.model_name}_raw",
        )
        return [raw, *super().get_urls()]  # type: ignore[misc]

    def raw_view(self, request: HttpRequest, object_id: str, field: str) -> HttpResponse:
        """One whole stored value, as text. Served inert: a payload is data from anyone."""
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        if field not in self.raw_fields:
            raise Http404(f"No raw view of {field!r}.")
        json_column = self.raw_fields[field]
        queryset = self.get_queryset(request)  # type: ignore[attr-defined]
        pk_field = queryset.model._meta.pk
        try:
            pk = pk_field.to_python(unquote(object_id))
        except ValidationError:
            raise Http404("No such row.") from None
        found = (
            queryset.filter(pk=pk)
            .annotate(raw_text=as_text(field, json_column=json_column))
            .values_list("raw_text", flat=True)
        )
        if not found:
            raise Http404("No such row.")
        return inert_response(found[0] or "", json_value=json_column)


def inert_response(text: str, *, json_value: bool) -> HttpResponse:
    content_type = "application/json" if json_value else "text/plain"
    response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
