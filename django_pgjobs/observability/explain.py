"""Why is this job not running? :func:`explain_job` names what holds a job back, in words and
in fields a program can read; ``manage.py pgjobs explain``, the admin's job page and the
dashboard show what it says.

A due job is judged by the classification in :mod:`django_pgjobs.queries.explain`, which reads
what the claim reads, so the answer is the claim's: "claimable" means the next claim of a live
worker that has its handler may take it, and every other answer names a reason the claim passes
it over. Everything is read in one snapshot, with the database's clock.
"""

from __future__ import annotations

import uuid

from django.db import connections, transaction

from django_pgjobs.database import opens_own_transaction, queue_database
from django_pgjobs.exceptions import JobNotFound, JobStateError
from django_pgjobs.jobs.short_ids import find_job_id
from django_pgjobs.observability import explain_messages as say
from django_pgjobs.observability.explanation import (
    COUNT_CAP,
    Blocker,
    Explanation,
    rescue_hold_seconds,
    silent_seconds,
)
from django_pgjobs.queries import explain as sql
from django_pgjobs.queries import explain_details as details
from django_pgjobs.queries import explain_rows as rows

__all__ = ["Blocker", "Explanation", "explain_job"]


def explain_job(job_id: uuid.UUID | str, *, using: str | None = None) -> Explanation:
    """Why the job (or dead letter) ``job_id`` is not running; raises :class:`JobNotFound` for
    an id that is neither. ``job_id`` may be at least 4 hex digits that exactly one
    id starts or ends with (the admin's 8-character short id is the end; ``pgjobs list`` prints
    whole UUIDs): an ambiguous or unknown one raises :class:`JobNotFound`.
    Read-only: a handful of small reads in one ``REPEATABLE READ`` snapshot."""
    alias = queue_database(using)
    connection = connections[alias]
    outermost = opens_own_transaction(alias)
    with transaction.atomic(using=alias), connection.cursor() as cur:
        if outermost:  # (inside a caller's transaction its isolation level stands)
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        pk = find_job_id(cur, job_id)
        # One snapshot sees the job due in both reads; a caller's READ COMMITTED transaction
        # may see a claim take it in between: then the job is read again.
        for _ in range(3):
            job = rows.find_job(cur, job_id=pk)
            if job is None:
                dead = rows.find_dead_letter(cur, job_id=pk)
                if dead is None:
                    raise JobNotFound(f"No job or dead letter has the id {pk}.")
                return say.dead_letter(pk, dead)
            if job.status in ("completed", "cancelled"):
                return say.finished(cur, pk, job)
            if job.status == "running":
                count, _ = details.live_workers(cur, silent_seconds=silent_seconds(), limit=0)
                rescue = rows.rescue_from(
                    cur, silent_seconds=silent_seconds(), hold_seconds=rescue_hold_seconds()
                )
                return say.running(
                    pk, job, silent=silent_seconds(), live_workers=count, rescue_from=rescue
                )
            if job.scheduled_for > job.now:
                return say.not_due(cur, pk, job)
            facts = sql.classify_job(cur, job_id=pk, silent_seconds=silent_seconds(), cap=COUNT_CAP)
            if facts is not None:
                return say.due(cur, pk, job, facts)
    raise JobStateError(f"Job {pk} kept changing while it was being explained; ask again.")
