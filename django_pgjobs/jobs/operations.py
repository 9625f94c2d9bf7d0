"""Looking jobs up and acting on them: the operator's side of the queue.

Reads go through the ORM; each state change is still a single statement from :mod:`queries`,
the same ones the CLI and the admin call.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Func, Q, QuerySet, TextField, Value

from django_pgjobs import exceptions, queries, signals
from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import JobNotFound, JobStateError
from django_pgjobs.jobs import job_log
from django_pgjobs.models import FailedJob, Job, JobStatus, WorkflowExecution
from django_pgjobs.observability.display import shell_word
from django_pgjobs.queries import workflow_control
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX, WORKFLOW_KEY_PREFIX
from django_pgjobs.setting_errors import MAX_STORED_SECONDS
from django_pgjobs.workflows import lifecycle

_PRUNE_BATCH = 5000


def _as_uuid(job_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(f"{job_id!r} is not a job id (a UUID).") from None


def _alias(using: str | None) -> str:
    return queue_database(using)


def _missing(job_id: uuid.UUID, alias: str) -> JobNotFound:
    dead = FailedJob.objects.using(alias).filter(id=job_id)
    letter = dead.values("attempt", "max_attempts").first()
    if letter is not None:
        # Attempts left: its handler sent it there (Discard), its retry policy gave up on its
        # error (a backoff that returned None), or its payload could not be read.
        why = (
            "it used up its attempts and is in the dead letters"
            if letter["attempt"] >= letter["max_attempts"]
            else f"it went to the dead letters after attempt {letter['attempt']} of "
            f"{letter['max_attempts']}, its other attempts unused (its handler raised Discard, "
            "its backoff gave no retry for its error, or its payload could not be read)"
        )
        return JobNotFound(
            f"Job {job_id} is not in the queue: {why} (see list_dead_letter_jobs / "
            "retry_dead_letter_job; pgjobs explain says which).",
            dead_lettered=True,
        )
    return JobNotFound(f"No job with id {job_id}.")


def get_job(job_id: uuid.UUID | str, *, using: str | None = None) -> Job:
    """The job with this id; raises :class:`JobNotFound` (saying so if it was dead-lettered)."""
    alias = _alias(using)
    pk = _as_uuid(job_id)
    try:
        return Job.objects.using(alias).get(id=pk)
    except Job.DoesNotExist:
        raise _missing(pk, alias) from None


def list_jobs(
    *,
    status: str | None = None,
    queue: str | None = None,
    job_name: str | None = None,
    limit: int = 50,
    using: str | None = None,
) -> list[Job]:
    """Newest first (by id: ids are time-ordered, and the key serves the order). ``status`` is
    one of pending, running, completed, cancelled."""
    if status is not None and status not in JobStatus.values:
        raise ValueError(
            f"Unknown status {status!r}; expected one of {', '.join(JobStatus.values)}."
        )
    filters: dict[str, Any] = {}
    if status is not None:
        filters["status"] = status
    if queue is not None:
        filters["queue"] = queue
    if job_name is not None:
        filters["job_name"] = job_name
    return list(Job.objects.using(_alias(using)).filter(**filters).order_by("-id")[:limit])


def list_dead_letter_jobs(
    *,
    queue: str | None = None,
    job_name: str | None = None,
    exception: str | None = None,
    limit: int = 50,
    using: str | None = None,
) -> list[FailedJob]:
    """Dead-lettered jobs, most recently failed first, filtered like
    :func:`requeue_dead_letter_jobs`."""
    return list(
        dead_letters(queue=queue, job_name=job_name, exception=exception, using=using)[:limit]
    )


def dead_letters(
    *,
    queue: str | None = None,
    job_name: str | None = None,
    exception: str | None = None,
    using: str | None = None,
) -> QuerySet[FailedJob]:
    """The dead letters in ``queue``, named ``job_name``, whose last error was an ``exception``
    (its class name as the error text's first line gives it: ``ValueError`` or
    ``builtins.ValueError``, or for a class outside the builtins, ``PaymentError`` or
    ``shop.errors.PaymentError``); None: any."""
    rows = FailedJob.objects.using(_alias(using)).order_by("-failed_at")
    if queue is not None:
        rows = rows.filter(queue=queue)
    if job_name is not None:
        rows = rows.filter(job_name=job_name)
    if exception is not None:
        bare = _stored_bare(exception)
        named = (
            Q(error_class=bare)
            if bare is not None
            else Q(error_class=exception) | Q(error_class__endswith=f".{exception}")
        )
        rows = rows.annotate(error_class=error_class()).filter(named)
    return rows


def _stored_bare(exception: str) -> str | None:
    """The name a stored error gives ``exception`` when that is bare: a builtin's
    (``builtins.KeyError`` is stored ``KeyError: ...``) and the library's own timeouts and
    shutdowns (``django_pgjobs.exceptions.JobTimeout``), as signals, spans and the error history
    name them qualified. None for any other class (stored qualified)."""
    for module, prefix in ((builtins, "builtins."), (exceptions, "django_pgjobs.exceptions.")):
        name = exception.removeprefix(prefix)
        if name != exception and isinstance(getattr(module, name, None), type):
            return name
    return None


def error_class() -> Func:
    """The exception class of a stored error: the text before the first ':' of its first line
    (see :func:`~django_pgjobs.jobs.error_text.describe_error`)."""
    first_line = Func(
        "error", Value("\n"), Value(1), function="split_part", output_field=TextField()
    )
    return Func(first_line, Value(":"), Value(1), function="split_part", output_field=TextField())


def requeue_dead_letter_jobs(
    *,
    queue: str | None = None,
    job_name: str | None = None,
    exception: str | None = None,
    dry_run: bool = False,
    using: str | None = None,
) -> queries.Requeued:
    """Move the dead letters that match (see :func:`dead_letters`; no filter: all of them) back
    to the queue (each under its own id), however many, in one statement. Returns how many moved
    and the first few ids; with ``dry_run``, how many would move (and no ids)."""
    rows = dead_letters(queue=queue, job_name=job_name, exception=exception, using=using)
    if dry_run:
        return queries.Requeued(count=rows.count(), job_ids=[])
    return requeue_dead_letters_in(rows)


def requeue_dead_letters_in(rows: QuerySet[FailedJob]) -> queries.Requeued:
    """Move the dead letters of a queryset (an admin change list's selection, with its filters)
    back to the queue in one statement, without reading their ids first."""
    selected, params = rows.values("id").order_by().query.get_compiler(using=rows.db).as_sql()
    try:
        # The savepoint keeps a caller's transaction usable if a workflow's key is taken.
        with transaction.atomic(using=rows.db), connections[rows.db].cursor() as cur:
            done = queries.requeue_dead_letters(cur, selected=selected, params=params)
    except IntegrityError:
        raise JobStateError(
            "Nothing was requeued: among these dead letters is the job of a workflow that "
            "already has an active job (requeue the others with a narrower filter, and resume "
            "that workflow with `pgjobs_workflows resume`)."
        ) from None
    job_log.requeued_many(done)
    return done


def retry_dead_letter_job(job_id: uuid.UUID | str, *, using: str | None = None) -> uuid.UUID:
    """Move a dead letter back to the queue, under its own id, and return it.

    The delete and the insert are one statement, so either both happen or neither. Dead letters
    do not keep the job's ``key``: the replayed job has none.
    """
    alias = _alias(using)
    pk = _as_uuid(job_id)
    with connections[alias].cursor() as cur:
        requeued = queries.requeue_dead_letter(cur, job_id=pk)
    if requeued is None:
        raise JobNotFound(f"No dead-lettered job with id {pk}.")
    job_log.requeued(pk, requeued)
    return pk


def retry_job(job_id: uuid.UUID | str, *, using: str | None = None) -> None:
    """Run a pending (waiting or awaiting retry) or cancelled job again now.

    A cancelled job gets a fresh attempt budget; one awaiting retry keeps its count.
    """
    alias = _alias(using)
    pk = _as_uuid(job_id)
    _refuse_cancelled_workflow(pk, alias)
    try:
        # The savepoint keeps a caller's transaction usable if the key is taken.
        with transaction.atomic(using=alias), connections[alias].cursor() as cur:
            retried = queries.retry_job(cur, job_id=pk)
    except IntegrityError:
        raise JobStateError(
            f"Job {pk} cannot run again: another active job now holds its key."
        ) from None
    if retried is None:
        _raise_state(pk, alias, "retried", "pending or cancelled")
        return
    job_log.retried(pk, retried)


def cancel_job(job_id: uuid.UUID | str, *, using: str | None = None) -> None:
    """Cancel a pending or running job.

    A running handler is not interrupted: its ``is_cancelled()`` turns true (within
    milliseconds through a NOTIFY, else at its worker's next heartbeat), and whatever it does
    next is discarded, its outcome included.
    """
    alias = _alias(using)
    pk = _as_uuid(job_id)
    workflow_id = _workflow_run_by(pk, alias)
    if workflow_id is not None:
        # The job runs a workflow: cancel the workflow, which cancels its job (a running one
        # stops at its next step), rather than leave a workflow whose job is gone. One that
        # already ended (a requeued dead letter) or was pruned has nothing to cancel but the job.
        with connections[alias].cursor() as cur:
            found = workflow_control.cancel(cur, workflow_id)
        if found is not None and found.ended:
            lifecycle.cancelled(workflow_id, found.name, found.before)
        if found is not None and found.before in ("pending", "running", "cancelled"):
            return
    with connections[alias].cursor() as cur:
        cancelled = queries.cancel_job(cur, job_id=pk)
    if cancelled is None:
        _raise_state(pk, alias, "cancelled", "pending or running")
        return
    job_log.cancelled(pk, cancelled)
    signals.send(
        signals.job_cancelled, Job, job_id=pk, job_name=cancelled.job_name,
        queue=cancelled.queue, reason=None, worker_id=None, within=alias,
    )  # fmt: skip


def _refuse_cancelled_workflow(pk: uuid.UUID, alias: str) -> None:
    """The job of a cancelled workflow is not retried: run again alone it finds its workflow
    cancelled and does nothing, and on an old code version it waits for ever. Resuming the
    workflow is what runs it again."""
    workflow_id = _workflow_run_by(pk, alias)
    if workflow_id is None:
        return
    status = (
        WorkflowExecution.objects.using(alias)
        .filter(workflow_id=workflow_id)
        .values_list("status", flat=True)
        .first()
    )
    if status == "cancelled":
        raise JobStateError(
            f"Job {pk} runs workflow {workflow_id!r}, which is cancelled: retrying the job alone "
            "would run nothing. Resume the workflow instead: `manage.py pgjobs_workflows resume "
            f"{shell_word(workflow_id)}` (resume_workflow())."
        )


def _workflow_run_by(pk: uuid.UUID, alias: str) -> str | None:
    """The workflow this job runs, if it is that workflow's job: named for a workflow version
    and holding the workflow's key. A row written by SQL under a workflow's name but without the
    key is only a job, whatever its payload says."""
    found = Job.objects.using(alias).filter(id=pk).values_list("job_name", "payload", "key").first()
    if found is None or not found[0].startswith(WORKFLOW_JOB_PREFIX):
        return None
    payload, key = found[1], found[2]
    workflow_id = payload.get("workflow_id") if isinstance(payload, dict) else None
    if not isinstance(workflow_id, str) or key != f"{WORKFLOW_KEY_PREFIX}{workflow_id}":
        return None
    return workflow_id


def _raise_state(pk: uuid.UUID, alias: str, verb: str, allowed: str) -> None:
    status = Job.objects.using(alias).filter(id=pk).values_list("status", flat=True).first()
    if status is None:
        raise _missing(pk, alias)
    raise JobStateError(f"Job {pk} is {status}; only a {allowed} job can be {verb}.")


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    more: bool  # stopped at max_batches with rows still to delete


def prune_finished(
    cur: queries.Cursor, *, retention: float, max_batches: int | None = None
) -> PruneResult:
    """Delete completed and cancelled jobs that finished over ``retention`` seconds ago.

    Works in short batches so a large backlog never becomes one long transaction; with
    ``max_batches`` it stops early so a caller (the worker loop) can do other work in between.
    """
    total = batches = 0
    while max_batches is None or batches < max_batches:
        deleted = queries.prune_finished_jobs(cur, older_than_seconds=retention, batch=_PRUNE_BATCH)
        total += deleted
        batches += 1
        if deleted < _PRUNE_BATCH:
            return PruneResult(total, more=False)
    return PruneResult(total, more=True)


def prune_jobs(*, retention: float | timedelta | None = None, using: str | None = None) -> int:
    """Delete finished jobs older than ``retention`` (default RETENTION) now; returns how many.

    The worker also prunes every PRUNE_INTERVAL.
    """
    if isinstance(retention, timedelta):
        retention = retention.total_seconds()
    # At most a century, as the RETENTION setting: now() less more is out of PostgreSQL's range.
    if retention is not None and not 0 <= retention <= MAX_STORED_SECONDS:
        raise ValueError(
            f"retention must be a number of seconds from 0 to 100 years; got {retention!r}."
        )
    with connections[_alias(using)].cursor() as cur:
        result = prune_finished(cur, retention=conf.RETENTION if retention is None else retention)
    return result.deleted
