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
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, transaction

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
    is written."""
    validation.check_name(job_name)
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


# The column default as PostgreSQL stores it; pgjobs_enqueue() reads it the same way (0009).
_CURRENT_DEFAULT = """
SELECT pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef AS d
JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = to_regclass('pgjobs_job_queue') AND a.attname = 'max_attempts'
"""


def sync_table_defaults(using: str) -> bool:
    """Make ``pgjobs_job_queue.max_attempts`` default to ``PGJOBS["MAX_ATTEMPTS"]`` on database
    ``using``, so jobs inserted from SQL get the configured attempts; True if it changed.

    Run after every ``migrate`` (the post_migrate signal). The ALTER TABLE takes the table's
    ACCESS EXCLUSIVE lock for an instant; it waits at most 5 s for it and otherwise leaves the
    old default with a warning, rather than stall a busy queue behind a long transaction.
    """
    wanted = conf.MAX_ATTEMPTS
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        return False  # pgjobs.E004 reports it
    connection = connections[using]
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('pgjobs_job_queue') IS NOT NULL")
        if not cur.fetchone()[0]:
            return False  # migrated to zero, or the tables live on another database
        cur.execute(_CURRENT_DEFAULT)
        row = cur.fetchone()
        if row is not None and row[0] == str(wanted):
            return False
    try:
        with transaction.atomic(using=using), connection.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '5s'")
            cur.execute(
                f"ALTER TABLE pgjobs_job_queue ALTER COLUMN max_attempts SET DEFAULT {wanted:d}"
            )
    except DatabaseError as exc:
        logger.warning(
            "Could not set pgjobs_job_queue.max_attempts to default to %s (MAX_ATTEMPTS): %s. "
            "Jobs inserted from SQL keep the old default until the next migrate.",
            wanted,
            exc,
        )
        return False
    return True


def on_post_migrate(sender: Any, using: str, **kwargs: Any) -> None:
    sync_table_defaults(using)
