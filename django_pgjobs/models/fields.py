"""What every table's columns share: JSON any stored value of which can be read, and times
inside the range Python can read back."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from django_pgjobs.jobs.validation import EARLIEST_TIME, LATEST_TIME
from django_pgjobs.stored_json import UndecodableJSON, why_undecodable


def times_in_range(prefix: str, *fields: str) -> tuple[models.CheckConstraint, ...]:
    """A CHECK per time column: ``EARLIEST_TIME <= column < LATEST_TIME`` (NULL passes).

    PostgreSQL stores ``infinity`` and years up to 294276, Python's ``datetime`` ends at 9999:
    one such row written by SQL broke the worker's claim (after it committed), the dashboard,
    the admin, the CLI and the scheduler (issue 13). Refused where it is written, so no reader
    needs to guard. Two comparisons with constants per column: cheap on the insert path.
    Added by migration 0014 (``NOT VALID``, then validated); named ``<prefix>_<column>_range``.
    """
    return tuple(
        models.CheckConstraint(
            condition=Q(**{f"{field}__gte": EARLIEST_TIME, f"{field}__lt": LATEST_TIME}),
            name=f"{prefix}_{field}_range",
        )
        for field in fields
    )


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
