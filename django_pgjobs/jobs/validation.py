"""Checks on caller input, run before anything is written.

Each raises a precise error naming the argument, so a bad call fails at its call site and never
aborts the caller's transaction with a database error.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable

MAX_NAME_LENGTH = 200
# The largest integer PostgreSQL's integer columns hold (attempts, for one).
MAX_INT = 2**31 - 1
# A key lives in a unique btree index, whose entries must fit in a third of a page (2,704
# bytes): 500 characters of UTF-8 always do.
MAX_KEY_LENGTH = 500
# Higher runs first, as in Django's Tasks framework.
MIN_PRIORITY = -100
MAX_PRIORITY = 100
# Names and keys starting with this belong to the library (a workflow runs as the job
# ``pgjobs.workflow:<version>`` keyed ``pgjobs.workflow:<id>``, a schedule's tick is keyed
# ``pgjobs.cron:<name>:<time>``): a user's job or key taking one could run a workflow twice,
# swallow a tick or block a workflow id. Refused wherever a user names a job or a key.
RESERVED_PREFIX = "pgjobs."
# The run times we accept: PostgreSQL stores far more, but every time is read back by Python
# (the admin shows it in the viewer's time zone, a schedule steps its next ticks from it), and
# Python's datetime ends at 9999-12-31. Year 9000 leaves room for both; year 2 for time zones.
# The database enforces the same range on every time column and in pgjobs_enqueue() (migration
# 0014 writes it out; tests/test_times_in_range.py checks the two agree).
EARLIEST_TIME = datetime(2, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
_RANGE = f"outside the supported range {EARLIEST_TIME.date()} to {LATEST_TIME.date()} (UTC)"
# A delay or timeout is added to now twice: here on this clock, then in SQL on the database's
# clock at float precision. One ending within this margin of LATEST_TIME is refused here, so the
# database's CHECK never refuses what Python accepted (which would abort the caller's transaction).
DELAY_MARGIN = timedelta(days=1)


def check_name(value: object, what: str = "job name") -> str:
    """A name to store (a job's, a queue's, a workflow id): :func:`check_sendable`, not blank,
    at most MAX_NAME_LENGTH characters."""
    value = check_sendable(value, what)
    if not value.strip():
        raise InvalidJobError(f"The {what} must not be empty.")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJobError(
            f"The {what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}."
        )
    return value


def check_sendable(value: object, what: str) -> str:
    """A value to look a row up by (a workflow id a caller names): a str PostgreSQL can be sent,
    nothing more. A blank or overlong one is looked up (a row SQL wrote may have it; none found
    is said as such); a NUL, an int or a lone surrogate reached the driver as its own error."""
    if not isinstance(value, str):
        raise InvalidJobError(f"The {what} must be a str, not {type(value).__name__}.")
    if "\x00" in value:
        raise InvalidJobError(
            f"The {what} contains a NUL character, which PostgreSQL cannot store."
        )
    check_encodable(value, what)
    return value


def check_encodable(value: str, what: str) -> None:
    """Refuse a lone surrogate (text decoded with ``surrogateescape``, a broken emoji half):
    psycopg would raise UnicodeEncodeError only while sending, mid-statement."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJobError(
            f"The {what} is not valid Unicode text: {exc.reason} at position {exc.start}."
        ) from None


def check_job_name(value: object) -> str:
    """A job name a user may enqueue, register or schedule: not one of the library's own."""
    name = check_name(value)
    if name.startswith(RESERVED_PREFIX):
        raise InvalidJobError(
            f"The job name {name!r} starts with {RESERVED_PREFIX!r}, which is reserved for "
            "django-pgjobs's own jobs (workflows run as 'pgjobs.workflow:<version>'); "
            "choose another name."
        )
    return name


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
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidJobError(
            f"retry_delay must be a finite number of seconds >= 0; got {value!r}."
        )
    return float(value)


# A job timeout's upper bound: a year is far past any job that should still count as running.
MAX_TIMEOUT = timedelta(days=366).total_seconds()
# PostgreSQL keeps intervals to the microsecond and rounds below it: a timeout under half a
# microsecond would be stored as 0 and refused by a CHECK (an IntegrityError, not a message).
# A millisecond is the least a timeout can mean to a worker that polls and claims in
# milliseconds; queue timeouts and rate periods have the same floor.
MIN_TIMEOUT = 0.001


def shown_duration(value: object) -> str:
    """A duration as an error message shows what it got: a timedelta as people write one (the
    admin's form gives one for what was typed), anything else as its repr."""
    if isinstance(value, timedelta):
        return f"{value} ({value.total_seconds():.10g} s)"
    return repr(value)


def check_timeout(value: object, what: str = "timeout") -> float:
    """Seconds a job may run: a number or a timedelta, from a millisecond to a year."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT
    ):
        raise InvalidJobError(
            f"{what} must be a number of seconds or a timedelta, from {MIN_TIMEOUT} to "
            f"{MAX_TIMEOUT:.0f} (a year); got {shown_duration(value)}."
        )
    return float(seconds)


def check_partition_key(value: object) -> str | None:
    """A job's partition key: text an index entry can hold, or None (no partition)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidJobError(
            f"partition_key must be a non-empty str without NUL, or None; got {value!r}."
        )
    check_encodable(value, "partition_key")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidJobError(
            f"partition_key is {len(value)} characters long; the limit is {MAX_KEY_LENGTH} "
            "(hash a longer natural key)."
        )
    return value


def check_scheduled_for(value: object) -> datetime | timedelta | None:
    """An aware datetime, a delay from now, or None for "now"; before :data:`LATEST_TIME`."""
    if value is None:
        return value
    if isinstance(value, timedelta):
        try:
            when: datetime | None = datetime.now(UTC) + value
        except OverflowError:
            when = None
        if when is None or not EARLIEST_TIME <= when < LATEST_TIME - DELAY_MARGIN:
            raise InvalidJobError(
                f"scheduled_for is a delay of {value}, which runs the job {_RANGE} or within "
                f"{DELAY_MARGIN.days} day of its end (the database adds it to its own clock)."
            )
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
    check_time_range(value, "scheduled_for")
    return value


def check_time_range(value: datetime, what: str) -> datetime:
    """Refuse a time Python could not show or step from once it is stored (see LATEST_TIME)."""
    moment = value if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise InvalidJobError(f"{what} is {value.isoformat()}, {_RANGE}.")
    return value


def check_key(value: object) -> str | None:
    """A user's idempotency key: text the unique index can hold, outside the library's keys."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidJobError(f"key must be a non-empty str without NUL, or None; got {value!r}.")
    check_encodable(value, "key")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidJobError(
            f"key is {len(value)} characters long; the limit is {MAX_KEY_LENGTH} "
            "(hash a longer natural key)."
        )
    if value.startswith(RESERVED_PREFIX):
        raise InvalidJobError(
            f"key {value!r} starts with {RESERVED_PREFIX!r}, which is reserved for "
            "django-pgjobs's own keys (schedule ticks, workflows); choose another key."
        )
    return value


def dump_payload(payload: Any, what: str = "The payload") -> str:
    """Serialise a payload to the JSON text PostgreSQL will store, or raise.

    Strict on purpose: a handler receives exactly what was enqueued, so dates, decimals and
    model instances must be converted by the caller rather than silently turned into strings.
    ``what`` names the payload in the error (``enqueue_many`` gives its index).
    """
    if payload is None:
        return "{}"
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))  # lone surrogates: PostgreSQL would reject them late
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise PayloadNotSerializable(
            f"{what} is not JSON serialisable: {exc}. Pass plain dicts, lists, str, int, "
            "float, bool and None (convert dates with .isoformat(), decimals with str())."
        ) from exc
    except RecursionError:
        raise PayloadNotSerializable(
            f"{what} is nested too deeply to serialise; pass a flatter structure."
        ) from None
    # jsonb cannot hold NUL; catching it here keeps the caller's transaction usable.
    if "\\u0000" in text:
        raise PayloadNotSerializable(f"{what} contains a NUL character, which jsonb cannot store.")
    check_payload_size(size, what)
    return text


def dump_metadata(metadata: Any, what: str = "metadata") -> str:
    """Serialise a job's metadata (a JSON object) as :func:`dump_payload` does a payload."""
    if not isinstance(metadata, dict):
        raise InvalidJobError(
            f"{what} must be a dict (a JSON object), not {type(metadata).__name__}."
        )
    return dump_payload(metadata, f"The {what}")


def check_payload_size(
    size: int, what: str, error: type[PayloadNotSerializable] = PayloadNotSerializable
) -> None:
    """Raise ``error`` if ``size`` bytes of JSON exceed ``MAX_PAYLOAD_BYTES``: a job's payload,
    a workflow's arguments, a message sent to a workflow."""
    limit = conf.MAX_PAYLOAD_BYTES
    if limit is not None and size > limit:
        raise error(
            f"{what} is {size:,} bytes of JSON; the limit is {limit:,} (PGJOBS"
            '["MAX_PAYLOAD_BYTES"]). Store large data in a table or a file and pass its id.'
        )


# The largest value kept with a job's completion (a task's result, a workflow's return value),
# whatever MAX_PAYLOAD_BYTES says: the worker writes it in one statement with its batch's others
# (worker.finished.BATCH_BYTES), where one value past what jsonb holds would fail them all.
MAX_KEPT_BYTES = 16 * 1024 * 1024


def check_kept_size(
    size: int, what: str, error: type[PayloadNotSerializable] = PayloadNotSerializable
) -> None:
    """:func:`check_payload_size` for a value kept with a job's completion, also held to
    MAX_KEPT_BYTES."""
    check_payload_size(size, what, error)
    if size > MAX_KEPT_BYTES:
        raise error(
            f"{what} is {size:,} bytes of JSON; a value kept with a job's completion is at most "
            f"{MAX_KEPT_BYTES:,} bytes, whatever MAX_PAYLOAD_BYTES says. Store large data in a "
            "table or a file and return its id."
        )
