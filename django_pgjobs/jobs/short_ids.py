"""A job named by a short id: the end of its UUID (or its dead letter's), as the admin shows
the last 8 hex digits, or its start; ``explain_job`` and the CLI's ``explain``, ``retry`` and
``cancel`` take one; the library's other functions take whole ids only.

Job ids begin with the time they were made (version 7: django_pgjobs.jobs.ids), so the jobs
of one minute share their first digits, and their random end tells them apart. Digits are
looked up as both, an id's start (a range of each primary key) and its end (every id read: a
slower look-up on a large table, for an operator's command): digits one id starts with and
another ends with name neither, since the admin's short id of one job can be the start of another's
(a job of the minute those digits spell, or one enqueued before ids were ordered by time)."""

from __future__ import annotations

import uuid

from django.db import connections

from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import JobNotFound
from django_pgjobs.queries import explain_rows as rows
from django_pgjobs.queries.base import Cursor

# The fewest digits looked up: fewer name too many jobs to be worth a read.
MIN_DIGITS = 4
# The hex digits of a short id, as the admin shows them: the end of the UUID.
SHORT_ID_LENGTH = 8


def short_id(job_id: uuid.UUID) -> str:
    """The id the admin's lists show for a job or dead letter: its last 8 hex digits."""
    return job_id.hex[-SHORT_ID_LENGTH:]


def find_job_id(cur: Cursor, job_id: uuid.UUID | str) -> uuid.UUID:
    """The id ``job_id`` names: a UUID, or at least MIN_DIGITS hex digits (dashes ignored)
    that exactly one job's or dead letter's id starts or ends with. Raises JobNotFound for a
    malformed one, one nothing has, or one more than one id starts or ends with. Reads each
    primary key's range and every id; locks nothing."""
    if isinstance(job_id, uuid.UUID):
        return job_id
    text = str(job_id).strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    digits = text.replace("-", "")
    if not (MIN_DIGITS <= len(digits) < 32 and all(c in "0123456789abcdef" for c in digits)):
        raise JobNotFound(
            f"{job_id!r} is not a job id: give the UUID, or at least {MIN_DIGITS} of its "
            "first or last hex digits (the admin shows the last 8)."
        )
    found = rows.ids_starting_or_ending(cur, digits=digits)
    if not found:
        raise JobNotFound(f"No job or dead letter has an id starting or ending with {text!r}.")
    if len(found) > 1:
        raise JobNotFound(
            f"More than one job or dead letter has an id starting or ending with {text!r} "
            f"({found[0]} and {found[1]}, at least): "
            "give more of the id."
        )
    return found[0]


def job_id_named(job_id: uuid.UUID | str, *, using: str | None = None) -> uuid.UUID:
    """:func:`find_job_id` on a connection of its own (``using``: the jobs database)."""
    with connections[queue_database(using)].cursor() as cur:
        return find_job_id(cur, job_id)
