"""Checks on caller input, run before anything is written.

Each raises a precise error naming the argument, so a bad call fails at its call site and never
aborts the caller's transaction with a database error.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable

MAX_NAME_LENGTH = 200
# The largest integer PostgreSQL's integer columns hold (attempts, for one).
MAX_INT = 2**31 - 1
# Higher runs first, as in Django's Tasks framework.
MIN_PRIORITY = -100
MAX_PRIORITY = 100


def check_name(value: object, what: str = "job name") -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"The {what} must be a str, not {type(value).__name__}.")
    if not value.strip():
        raise InvalidJobError(f"The {what} must not be empty.")
    if "\x00" in value:
        raise InvalidJobError(
            f"The {what} contains a NUL character, which PostgreSQL cannot store."
        )
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJobError(
            f"The {what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}."
        )
    return value


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"priority must be an int, not {type(value).__name__}.")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidJobError(
            f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY} (higher runs first); "
            f"got {value}."
        )
    return value


def check_max_attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"max_attempts must be an int, not {type(value).__name__}.")
    if not 1 <= value <= MAX_INT:
        raise InvalidJobError(f"max_attempts must be between 1 and {MAX_INT}; got {value}.")
    return value


def check_retry_delay(value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidJobError(f"retry_delay must be a number of seconds >= 0; got {value!r}.")
    return float(value)


def check_scheduled_for(value: object) -> datetime | timedelta | None:
    """An aware datetime, a delay from now, or None for "now"."""
    if value is None or isinstance(value, timedelta):
        return value
    if not isinstance(value, datetime):
        raise InvalidJobError(
            f"scheduled_for must be a datetime or a timedelta, not {type(value).__name__}."
        )
    if settings.USE_TZ and timezone.is_naive(value):
        raise InvalidJobError(
            "scheduled_for is a naive datetime while USE_TZ is True; pass an aware datetime "
            "(django.utils.timezone.now() + ...) so the run time is not a guess."
        )
    return value


def check_key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidJobError(f"key must be a non-empty str without NUL, or None; got {value!r}.")
    return value


def dump_payload(payload: Any) -> str:
    """Serialise a payload to the JSON text PostgreSQL will store, or raise.

    Strict on purpose: a handler receives exactly what was enqueued, so dates, decimals and
    model instances must be converted by the caller rather than silently turned into strings.
    """
    if payload is None:
        return "{}"
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")  # lone surrogates: PostgreSQL would reject them after the fact
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise PayloadNotSerializable(
            f"The payload is not JSON serialisable: {exc}. Pass plain dicts, lists, str, int, "
            "float, bool and None (convert dates with .isoformat(), decimals with str())."
        ) from exc
    # jsonb cannot hold NUL; catching it here keeps the caller's transaction usable.
    if "\\u0000" in text:
        raise PayloadNotSerializable(
            "The payload contains a NUL character, which jsonb cannot store."
        )
    return text
