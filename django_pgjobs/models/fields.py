"""The JSON column every table uses: Django's ``JSONField``, but any stored value can be read."""

from __future__ import annotations

from typing import Any

from django.db import models

from django_pgjobs.stored_json import UndecodableJSON, why_undecodable


class StoredJSONField(models.JSONField):
    """A ``jsonb`` column whose rows load whatever SQL stored in them.

    Django's ``JSONField`` raises on a value Python's ``json`` cannot decode (``1e5000``, deep
    nesting), so one such row written by SQL would break every page and listing that loads it.
    Here it loads as an :class:`~django_pgjobs.stored_json.UndecodableJSON` instead, and the
    field refuses to write that stand-in back over the stored value.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        try:
            return super().from_db_value(value, expression, connection)
        except (ValueError, RecursionError) as exc:
            return UndecodableJSON(value, why_undecodable(exc))

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UndecodableJSON):
            raise ValueError(
                f"{self.model.__name__}.{self.name} holds JSON Python cannot decode "
                f"({value.error}); it cannot be saved back. Change it with SQL."
            )
        return super().get_prep_value(value)
