"""The producer side: putting jobs in the queue, on the caller's own database connection.

Because the insert runs on Django's connection, inside ``transaction.atomic()`` the job exists
only if the surrounding transaction commits, and the trigger's NOTIFY wakes workers only then.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from django_pgjobs import queries, signals
from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import InvalidJobError, PgJobsError
from django_pgjobs.jobs import job_log, validation
from django_pgjobs.jobs.ids import new_job_id, new_job_ids
from django_pgjobs.jobs.options import (
    resolve_options,
    resolve_partition_key,
    shared_partition_key,
)
from django_pgjobs.jobs.registry import registry
from django_pgjobs.prepared import statement_cursor
from django_pgjobs.tracing import jobs as tracing

# A key can be freed by a finishing job between our insert and our look-up; a few fresh
# statements (each with a new snapshot) always see one side or the other.
_KEY_RACE_ATTEMPTS = 5


def _prepare(
    job_name: str,
    *,
    scheduled_for: datetime | timedelta | None,
    max_attempts: int | None,
    queue: str | None,
    priority: int | None,
    timeout: float | timedelta | None = None,
) -> dict[str, Any]:
    """The row's checked columns but the payload's and the partition key (see
    :func:`resolve_options` for the defaults). A handler's timeout is not copied into the row:
    the worker applies the handler's current one."""
    options = resolve_options(job_name, queue=queue, priority=priority, max_attempts=max_attempts)
    when = validation.check_scheduled_for(scheduled_for)
    return {
        "timeout": None if timeout is None else validation.check_timeout(timeout),
        "job_name": job_name,
        "queue": options.queue,
        "priority": options.priority,
        "max_attempts": options.max_attempts,
        "at": when if isinstance(when, datetime) else None,
        "delay": when.total_seconds() if isinstance(when, timedelta) else 0.0,
    }


def _check_payload(job_name: str, payload: Any) -> None:
    handler = registry.get(job_name)
    if handler is not None:
        handler.check_payload(payload)


def _prepare_one(
    job_name: str,
    payload: Any,
    key: str | None,
    *,
    replace: bool,
    metadata: dict[str, Any] | None = None,
    partition_key: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    if replace and key is None:
        raise InvalidJobError("replace=True needs a key: it replaces the job holding that key.")
    row = _prepare(job_name, **options)
    _check_payload(job_name, payload)
    row.update(
        partition_key=resolve_partition_key(job_name, payload, partition_key),
        id=new_job_id(),
        payload=validation.dump_payload(payload),
        key=validation.check_key(key),
        metadata=None if metadata is None else validation.dump_metadata(metadata),
    )
    return row


def _write(row: dict[str, Any], *, replace: bool, using: str, payload: Any) -> uuid.UUID:
    """Insert the job (or, with ``replace``, update the pending holder of its key) and send
    ``job_enqueued``; a key held already writes nothing and returns the holder's id."""
    with tracing.enqueue_span(row) as span:
        job_id, written = _written_row(row, replace=replace, using=using)
        tracing.enqueued(span, job_id, written=written)
    if written:
        _enqueued(row, job_id, payload, using)
    return job_id


def _written_row(row: dict[str, Any], *, replace: bool, using: str) -> tuple[uuid.UUID, bool]:
    with statement_cursor(using) as cur:
        if row["key"] is None:
            queries.insert_job(cur, row, returning=False)
            return row["id"], True
        if not replace:
            for _ in range(_KEY_RACE_ATTEMPTS):
                inserted = queries.insert_job(cur, row)
                if inserted is not None:
                    return inserted, True
                existing = queries.find_active_job_by_key(cur, row["key"])
                if existing is not None:
                    return existing, False
        else:
            # Detaching the key and inserting must be one unit, or a crash between them would
            # leave the old job without its key and no new job.
            with transaction.atomic(using=using):
                for _ in range(_KEY_RACE_ATTEMPTS):
                    upserted = queries.upsert_pending_job(cur, row)
                    if upserted is not None:
                        return upserted, True
                    queries.detach_key_from_running_job(cur, row["key"])
    raise PgJobsError(f"Could not settle the job key {row['key']!r}: it kept changing hands.")


def _enqueued(row: dict[str, Any], job_id: uuid.UUID, payload: Any, using: str) -> None:
    """The job was written: its DEBUG line, if logged, and ``job_enqueued``."""
    if job_log.logs_enqueues():
        job_log.enqueued(job_id, row["job_name"], row["queue"])
    signals.send_job(
        signals.job_enqueued,
        job_id=job_id,
        job_name=row["job_name"],
        queue=row["queue"],
        payload=payload,
        priority=row["priority"],
        partition_key=row["partition_key"],
        using=using,
    )


def enqueue(
    job_name: str,
    payload: Any = None,
    *,
    scheduled_for: datetime | timedelta | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: str | None = None,
    key: str | None = None,
    replace: bool = False,
    using: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Add a job and return its id.

    Runs on Django's connection ``using`` (default ``PGJOBS["DATABASE"]``), so it joins the
    caller's transaction. ``scheduled_for`` is an aware datetime or a delay. Options left as None
    come from the ``@job`` registration, then from settings. ``partition_key`` puts the job in
    a partition of its queue (see docs/howto/queues.md); without one, the handler's
    ``@job(partition_key=...)`` applies (a callable is asked with ``payload``).

    With ``key``, at most one pending-or-running job holds it: if one does, its id is returned
    and nothing is written. With ``replace=True`` a still-pending holder is updated in place
    (new payload and options, attempts reset); a running holder gives the key up to a new job.
    ``metadata`` is a JSON object kept on the job beside the payload (see the job's
    ``metadata``; Django tasks read and write it).
    """
    row = _prepare_one(
        job_name,
        payload,
        key,
        replace=replace,
        metadata=metadata,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        timeout=timeout,
        partition_key=partition_key,
    )
    return _write(row, replace=replace, using=queue_database(using), payload=payload)


def enqueue_stamped(
    job_name: str,
    payload: Any = None,
    *,
    scheduled_for: datetime | timedelta | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: str | None = None,
    using: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, datetime]:
    """:func:`enqueue` without a key, returning the job's id and the time the queue recorded
    for it (its ``created_at``), read back by the insert itself: what a Django task's
    ``enqueued_at`` says, equal to what any process reads later."""
    row = _prepare_one(
        job_name,
        payload,
        None,
        replace=False,
        metadata=metadata,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        timeout=timeout,
        partition_key=partition_key,
    )
    alias = queue_database(using)
    with tracing.enqueue_span(row) as span, statement_cursor(alias) as cur:
        stamped = queries.insert_job_stamped(cur, row)
        tracing.enqueued(span, row["id"])
    _enqueued(row, row["id"], payload, alias)
    return row["id"], stamped


def enqueue_on_commit(
    job_name: str,
    payload: Any = None,
    *,
    scheduled_for: datetime | timedelta | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: str | None = None,
    key: str | None = None,
    replace: bool = False,
    using: str | None = None,
    commit_of: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Like :func:`enqueue`, but insert only once the current transaction commits.

    ``commit_of`` names the database whose commit releases the job (default: ``using``, the
    queue's database), for a job that must not exist before another database's commit, e.g.
    ``enqueue_on_commit("ship-order", {...}, commit_of="orders")``. If that transaction rolls
    back, nothing is inserted. Everything is validated now, so bad input still fails at the call
    site. Returns the id the job will have; with ``key``, if an active job already holds the
    key, no job gets that id.
    """
    alias = queue_database(using)
    row = _prepare_one(
        job_name,
        payload,
        key,
        replace=replace,
        metadata=metadata,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        timeout=timeout,
        partition_key=partition_key,
    )
    transaction.on_commit(
        lambda: _write(row, replace=replace, using=alias, payload=payload),
        using=commit_of or alias,
    )
    return row["id"]  # type: ignore[no-any-return]


def _key_at(job_name: str, payload: Any, index: int) -> str | None:
    """The handler's partition key for the payload at ``index`` of an enqueue_many, its
    error naming that payload as the payload checks do."""
    try:
        return resolve_partition_key(job_name, payload)
    except InvalidJobError as exc:
        raise InvalidJobError(f"The payload at index {index}: {exc}") from exc.__cause__


def enqueue_many(
    job_name: str,
    payloads: Sequence[Any],
    *,
    scheduled_for: datetime | timedelta | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: str | None = None,
    using: str | None = None,
) -> list[uuid.UUID]:
    """Add one job per payload in a single statement; ids come back in payload order.

    Every payload is serialised (and, with a handler's ``partition_key`` callable, given its
    key) before anything is sent, so one bad payload writes nothing.
    """
    if isinstance(payloads, dict | str | bytes) or not isinstance(payloads, Sequence):
        raise InvalidJobError(
            f"enqueue_many needs a sequence of payloads, not {type(payloads).__name__}."
        )
    rows = _prepare(
        job_name,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        timeout=timeout,
    )
    for payload in payloads:
        _check_payload(job_name, payload)
    shared, key = shared_partition_key(job_name, partition_key)
    # A handler's callable is asked once per payload, before anything is sent.
    keys = None if shared else [_key_at(job_name, p, i) for i, p in enumerate(payloads)]
    texts = [
        validation.dump_payload(p, f"The payload at index {i}") for i, p in enumerate(payloads)
    ]
    if not texts:
        return []
    ids = new_job_ids(len(texts))
    alias = queue_database(using)
    with tracing.enqueue_span(rows, count=len(ids)), statement_cursor(alias) as cur:
        queries.insert_jobs(
            cur,
            {**rows, "partition_key": key, "partition_keys": keys, "ids": ids, "payloads": texts},
        )
    if signals.listened(signals.job_enqueued) or job_log.logs_enqueues():
        for index, (job_id, payload) in enumerate(zip(ids, payloads, strict=True)):
            row = {**rows, "partition_key": key if keys is None else keys[index]}
            _enqueued(row, job_id, payload, alias)
    return ids
