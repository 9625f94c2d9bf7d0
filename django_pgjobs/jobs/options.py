"""A job's options, worked out in one place: the explicit argument, then the handler's
(``@job(queue=..., priority=..., max_attempts=...)``), then settings.

``enqueue``, ``enqueue_many`` and the scheduler's ticks all ask :func:`resolve_options`. SQL
cannot see Python settings, so the one setting a plain ``INSERT`` or ``pgjobs_enqueue()`` needs,
``MAX_ATTEMPTS``, reaches it as the table's column default, which :func:`sync_table_defaults`
sets from the settings each time ``migrate`` runs. (A handler's own options stay Python-only:
pass them explicitly from SQL.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, router, transaction

from django_pgjobs.conf import conf
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.registry import registry

logger = logging.getLogger("django_pgjobs")

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 0


@dataclass(frozen=True)
class JobOptions:
    queue: str
    priority: int
    max_attempts: int


def resolve_options(
    job_name: str,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> JobOptions:
    """The options a job of ``job_name`` gets, checked; raises InvalidJobError before anything
    is written. A name starting with ``pgjobs.`` is the library's own and refused."""
    validation.check_job_name(job_name)
    handler = registry.get(job_name)
    if handler is not None:
        queue = handler.queue if queue is None else queue
        priority = handler.priority if priority is None else priority
        max_attempts = handler.max_attempts if max_attempts is None else max_attempts
    return JobOptions(
        queue=validation.check_name(DEFAULT_QUEUE if queue is None else queue, "queue name"),
        priority=validation.check_priority(DEFAULT_PRIORITY if priority is None else priority),
        max_attempts=validation.check_max_attempts(
            conf.MAX_ATTEMPTS if max_attempts is None else max_attempts
        ),
    )


def resolve_partition_key(
    job_name: str, payload: Any, partition_key: str | None = None
) -> str | None:
    """A job's partition key: the explicit one, else its handler's (a str, or what the
    handler's callable answers for ``payload``). Raises InvalidJobError, naming the job, before
    anything is written."""
    if partition_key is not None:
        return validation.check_partition_key(partition_key)
    handler = registry.get(job_name)
    return None if handler is None else handler.partition_key_for(payload)


def shared_partition_key(job_name: str, partition_key: str | None = None) -> tuple[bool, Any]:
    """(True, key) when every job of one enqueue_many gets the same key (an explicit one, or a
    handler's str, or none), so the payloads need not be asked one by one; (False, None) when
    the handler computes each job's."""
    handler = registry.get(job_name)
    if partition_key is not None or handler is None or not callable(handler.partition_key):
        return True, resolve_partition_key(job_name, None, partition_key)
    return False, None


# The column default as PostgreSQL stores it (a plain integer literal, as we set it).
_CURRENT_DEFAULT = """
SELECT pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef AS d
JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = to_regclass('pgjobs_job_queue') AND a.attname = 'max_attempts'
"""
# While the ALTER waits for its lock, every statement on the table queues behind it: wait only
# this long, a few times, and leave the old default rather than stall a busy queue.
_LOCK_WAITS = ("200ms", "200ms", "500ms")
_RETRY_PAUSE = 0.5


def configured_max_attempts() -> int | None:
    """``PGJOBS["MAX_ATTEMPTS"]`` if it is one PostgreSQL can store; None when it is not (the
    system check pgjobs.E004 reports it)."""
    value = conf.get("MAX_ATTEMPTS")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= validation.MAX_INT else None


def sync_table_defaults(using: str) -> bool:
    """Make ``pgjobs_job_queue.max_attempts`` default to ``PGJOBS["MAX_ATTEMPTS"]`` on database
    ``using``, so jobs inserted from SQL get the configured attempts; True if it changed.

    Run after every ``migrate`` (the post_migrate signal). The ALTER TABLE needs the table's
    ACCESS EXCLUSIVE lock, and while it waits for it (behind any open transaction that read the
    table) enqueues, claims and heartbeats wait behind it: so it waits at most 200-500 ms a try,
    three tries, then leaves the old default with a warning. The caller's own ``lock_timeout``
    is put back afterwards, inside a transaction too.
    """
    wanted = configured_max_attempts()
    if wanted is None:
        return False
    connection = connections[using]
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('pgjobs_job_queue') IS NOT NULL")
        if not cur.fetchone()[0]:
            return False  # migrated to zero, or the tables live on another database
        cur.execute(_CURRENT_DEFAULT)
        row = cur.fetchone()
        if row is not None and row[0] == str(wanted):
            return False
    failure: DatabaseError | None = None
    for attempt, wait in enumerate(_LOCK_WAITS):
        if attempt:
            time.sleep(_RETRY_PAUSE)
        try:
            with transaction.atomic(using=using), connection.cursor() as cur:
                cur.execute("SELECT current_setting('lock_timeout')")
                previous = cur.fetchone()[0]
                cur.execute("SELECT set_config('lock_timeout', %s, true)", [wait])
                cur.execute(
                    f"ALTER TABLE pgjobs_job_queue ALTER COLUMN max_attempts SET DEFAULT {wanted:d}"
                )
                # set_config(..., true) lasts to the end of the outer transaction, if any.
                cur.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
            return True
        except DatabaseError as exc:  # a lock timeout, or no privilege to ALTER the table
            failure = exc
    logger.warning(
        "Could not set pgjobs_job_queue.max_attempts to default to %s (MAX_ATTEMPTS): %s. "
        "Jobs inserted from SQL keep the old default until the next migrate.",
        wanted,
        failure,
    )
    return False


def on_post_migrate(sender: Any, using: str, **kwargs: Any) -> None:
    """After ``migrate`` (which passes its ``plan``), not after ``flush``, which sends the same
    signal after every TransactionTestCase.

    Django sends the signal for every database it migrates, ours or not: only one the routers
    let the queue's migrations run on, and only PostgreSQL, is asked anything (a ``default`` on
    SQLite beside a queue of its own knows no ``to_regclass``)."""
    if "plan" not in kwargs or connections[using].vendor != "postgresql":
        return
    if router.allow_migrate(using, sender.label) is False:
        return
    sync_table_defaults(using)
