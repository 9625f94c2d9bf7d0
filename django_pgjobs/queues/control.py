"""What an operator does to a queue from Python: pause it, resume it, set or reset its limits.

The admin's actions and the ``pgjobs`` command call these; each is one statement of
:mod:`django_pgjobs.queries.queues` on the caller's connection (so it joins the caller's
transaction, and takes effect for every worker's next claim once committed).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections

from django_pgjobs import queries
from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation
from django_pgjobs.queues.declarations import (
    RATE_PERIOD_ALONE,
    declared_queues,
    limit_problems,
    normalised,
    rate_period_alone,
)

logger = logging.getLogger("django_pgjobs")


def _queue(name: object) -> str:
    return validation.check_name(name, "queue name")


def pause_queue(name: str, *, using: str | None = None) -> bool:
    """Pause queue ``name``: it accepts jobs and starts none until :func:`resume_queue`; jobs
    already running finish. Unless ``PGJOBS["QUEUES"]`` declares the queue paused, this
    overrides the settings until :func:`resume_queue` or :func:`reset_queue_limits`. Returns
    False if it was paused already."""
    with connections[queue_database(using)].cursor() as cur:
        return queries.pause_queue(cur, _queue(name))


def resume_queue(name: str, *, using: str | None = None) -> bool:
    """Resume queue ``name``: its idle workers are woken when this commits. A queue
    ``PGJOBS["QUEUES"]`` declares paused stays resumed (an override) until
    :func:`reset_queue_limits` or :func:`pause_queue`. Returns False if it was not paused."""
    with connections[queue_database(using)].cursor() as cur:
        return queries.resume_queue(cur, _queue(name))


def set_queue_limits(name: str, *, using: str | None = None, **limits: Any) -> bool:
    """Set queue ``name``'s limits (the options of ``PGJOBS["QUEUES"]``; one left out is
    unlimited), overriding the settings' until :func:`reset_queue_limits`. Limits equal to
    the settings' (this process's ``PGJOBS["QUEUES"]``; none for a queue not declared there)
    are no override: the queue is not marked overridden, and one that was is reset, as
    :func:`reset_queue_limits` does. This process's settings are compared, and written as the
    row's, in the statement that writes the limits: a worker of another deploy syncing its own
    settings meanwhile cannot change the outcome. Returns False when nothing changed (the queue
    already had these limits and that state). Raises InvalidJobError, naming the option, before
    anything is written."""
    problems = limit_problems(limits)
    if problems:
        raise InvalidJobError("; ".join(p.rstrip(".") for p in problems.values()) + ".")
    if rate_period_alone(limits):
        raise InvalidJobError(RATE_PERIOD_ALONE)
    queue = _queue(name)
    with connections[queue_database(using)].cursor() as cur:
        return queries.set_queue_limits(cur, queue, normalised(limits), declared_limits(queue))


def reset_queue_limits(name: str, *, using: str | None = None) -> bool:
    """Drop an operator's limits and pause or resume for ``name``: ``PGJOBS["QUEUES"]`` (this
    process's settings, given to the one statement that writes them) applies again, paused or
    not as it says. Returns False if the queue has no row."""
    queue = _queue(name)
    with connections[queue_database(using)].cursor() as cur:
        return queries.reset_queue_limits(cur, queue, declared_limits(queue))


def declared_limits(name: str) -> dict[str, Any] | None:
    """Queue ``name``'s options in this process's ``PGJOBS["QUEUES"]`` (normalised: every limit,
    and ``paused``), or None if the settings do not name it (or name it with a mistake, which
    pgjobs.E013 reports)."""
    return declared_queues()[0].get(name)


def sync_declared_queues(*, using: str | None = None) -> int:
    """Write this process's ``PGJOBS["QUEUES"]`` into the queue rows, as a worker does when it
    starts (an operator's overrides stay). The CLI does before it shows or changes limits, or
    pauses, so settings deployed before any worker restarted are what it shows, builds on and
    what ``--reset`` restores. Returns how many rows changed."""
    with connections[queue_database(using)].cursor() as cur:
        return write_declared(cur)


def write_declared(cur: Any) -> int:
    """Write this process's declarations on ``cur`` (a worker's own connection too); an invalid
    one is left out, and logged (the system check pgjobs.E013 reports it as well)."""
    declared, errors = declared_queues()
    for message in errors:
        logger.error("%s (left out; see the system check pgjobs.E013)", message)
    return queries.sync_declared_queues(cur, declared)
