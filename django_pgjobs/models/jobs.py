"""The queue's tables: jobs, dead letters, live workers.

Every column has a database-level default, so a plain ``INSERT INTO pgjobs_job_queue (job_name,
payload) VALUES (...)`` from SQL, a trigger or another language creates a runnable job exactly as
``enqueue()`` does. Hot state changes never go through these models: they are single statements
in :mod:`django_pgjobs.queries` (whose package docstring has the state table). The ORM serves
the cold paths (admin, listing, pruning by hand).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.postgres.functions import RandomUUID
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Now

from django_pgjobs.jobs.validation import MAX_NAME_LENGTH, MAX_PRIORITY, MIN_PRIORITY
from django_pgjobs.models.fields import StoredJSONField, times_in_range


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


def empty_object() -> Value:
    return Value({}, output_field=models.JSONField())


def empty_array() -> Value:
    return Value([], output_field=models.JSONField())


class _ColumnDefault(models.Func):
    """A column's database default written as SQL (``template``), with no arguments; its
    migrations name the subclass by its path."""

    def __init__(self) -> None:
        super().__init__()

    def deconstruct(self) -> tuple[str, tuple[object, ...], dict[str, object]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", (), {})


class NewJobId(_ColumnDefault):
    """``pgjobs_uuid7()``: a new job id, a UUID of version 7 (time-ordered), for a row inserted
    without one (migration 0030; the library's own ids: :mod:`django_pgjobs.jobs.ids`)."""

    template = "pgjobs_uuid7()"
    output_field = models.UUIDField()


class NextJobSeq(_ColumnDefault):
    """``nextval`` of the job sequence: the order jobs were enqueued in, even within one
    transaction (whose rows share ``created_at`` and ``scheduled_for``)."""

    template = "nextval('pgjobs_job_seq'::regclass)"
    output_field = models.BigIntegerField()


class JobQuerySet(models.QuerySet["Job"]):
    def due(self) -> JobQuerySet:
        return self.filter(status=JobStatus.PENDING, scheduled_for__lte=Now())

    def awaiting_retry(self) -> JobQuerySet:
        return self.filter(status=JobStatus.PENDING, error__isnull=False)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=[JobStatus.COMPLETED, JobStatus.CANCELLED])


class Job(models.Model):
    id = models.UUIDField(primary_key=True, db_default=NewJobId(), editable=False)
    job_name = models.CharField(max_length=MAX_NAME_LENGTH)
    payload = StoredJSONField(db_default=empty_object())
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, db_default=Value(JobStatus.PENDING.value)
    )
    queue = models.CharField(max_length=MAX_NAME_LENGTH, db_default=Value("default"))
    # Higher runs first, -100..100, as in Django's Tasks framework.
    priority = models.SmallIntegerField(db_default=Value(0))
    # Attempts started so far (incremented by the claim); compared with max_attempts.
    attempt = models.IntegerField(db_default=Value(0))
    max_attempts = models.IntegerField(db_default=Value(3))
    progress = models.SmallIntegerField(null=True, blank=True)
    progress_message = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL means "none reported", as in the seed
    created_at = models.DateTimeField(db_default=Now())
    scheduled_for = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL means "never failed", as in the seed
    # At most one pending-or-running job has a given key (enqueue's dedup / upsert).
    key = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL means "no key"; '' would collide
    locked_by = models.TextField(null=True, blank=True)  # noqa: DJ001
    # When the current (or last) attempt started. NULL on a running row: claimed ahead
    # (prefetched) and not known to have started; the rescue then does not count the attempt.
    locked_at = models.DateTimeField(null=True, blank=True)
    # One attempt of this job was not counted: the rescue gave it back unstarted (claimed
    # ahead, its worker stopped before the start was recorded), or it failed because its
    # database connection was lost. Granted once: later attempts always count (claims count at
    # once), so a job that kills its worker or its connection still ends in the dead letters.
    attempt_spared = models.BooleanField(db_default=Value(False))
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A fresh random value per claim: the fencing token a worker must present to complete, fail,
    # heartbeat or report progress on the attempt it holds. Unlike ``attempt`` it never repeats,
    # even when an operator resets the attempt budget.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    # When the first attempt started; ``locked_at`` is the start of the latest one.
    started_at = models.DateTimeField(null=True, blank=True)
    # The handler's return value, for handlers that keep it (Django tasks); NULL: none kept.
    result = StoredJSONField(null=True, blank=True)
    # Free-form JSON the producer and the running handler attach (Django Tasks' metadata).
    metadata = StoredJSONField(db_default=empty_object())
    # The failed attempts, oldest first, the newest ERROR_HISTORY_LIMIT of them (see
    # queries.base.append_failure): attempt, worker, started_at, failed_at, exception, error.
    # ``error`` keeps the full text of the latest failure.
    error_history = StoredJSONField(db_default=empty_array())
    # Jobs of one key run in claim order, at most the queue's partition_concurrency at once
    # (see models.queues.Queue); NULL: the job belongs to no partition.
    partition_key = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL means "no partition"; '' is a key
    # Longer than this running and the attempt fails with a timeout; NULL: the handler's, the
    # queue's or PGJOBS["TIMEOUT"].
    timeout = models.DurationField(null=True, blank=True)
    # Enqueue order (NULL for jobs enqueued before migration 0017): ties on scheduled_for within
    # a partition key are broken by it, so one transaction's jobs of a key run in order.
    seq = models.BigIntegerField(null=True, blank=True, db_default=NextJobSeq(), editable=False)
    # The trace the job was enqueued in, as OpenTelemetry's W3C propagator wrote it
    # (``traceparent`` and ``tracestate``, never baggage); its runs are spans of that trace. NULL:
    # enqueued outside a span, without OpenTelemetry, or by SQL (see django_pgjobs.tracing).
    trace_context = StoredJSONField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        db_table = "pgjobs_job_queue"
        # Newest first by id: ids are time-ordered (jobs.ids), and the key serves the order.
        ordering = ("-id",)
        constraints = (
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="pgjobs_job_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="pgjobs_job_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="pgjobs_job_max_attempts"
            ),
            # Python refuses these too; the constraint covers SQL inserts and pgjobs_enqueue().
            models.CheckConstraint(
                condition=~Q(job_name="") & ~Q(queue=""), name="pgjobs_job_names_not_empty"
            ),
            models.CheckConstraint(
                condition=Q(progress__isnull=True) | Q(progress__gte=0, progress__lte=100),
                name="pgjobs_job_progress_range",
            ),
            models.CheckConstraint(
                condition=Q(timeout__isnull=True)
                | Q(timeout__gt=timedelta(0), timeout__lte=timedelta(days=366)),
                name="pgjobs_job_timeout_positive",
            ),
            models.UniqueConstraint(
                fields=("key",),
                condition=Q(key__isnull=False, status__in=("pending", "running")),
                name="pgjobs_job_key_active",
            ),
            *times_in_range(
                "pgjobs_job",
                "created_at",
                "scheduled_for",
                "completed_at",
                "locked_at",
                "lease_expires_at",
                "started_at",
            ),
        )
        indexes = (
            # Serves the claim: walk due jobs in (priority DESC, scheduled_for, id) order and stop
            # after LIMIT rows, so claim cost does not grow with the backlog.
            models.Index(
                models.F("priority").desc(),
                "scheduled_for",
                "id",
                condition=Q(status="pending"),
                name="pgjobs_job_claim",
            ),
            # Serves the claim of a worker limited to one queue (--queues mail), in order.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "scheduled_for",
                "id",
                condition=Q(status="pending"),
                name="pgjobs_job_queue_claim",
            ),
            # Serves the rescue sweep: running jobs whose lease ran out.
            models.Index(
                fields=("lease_expires_at",),
                condition=Q(status="running"),
                name="pgjobs_job_lease",
            ),
            # Serves the flow-controlled claim (queries.flow): jobs running per queue and per
            # partition key, counted after the queue's claim lock is taken.
            models.Index(
                "queue", "partition_key", condition=Q(status="running"), name="pgjobs_job_running"
            ),
            # Serves worker_concurrency (pgjobs_queue_counts): one worker's running jobs of a
            # queue, not all the queue's running jobs.
            models.Index(
                "locked_by",
                "queue",
                condition=Q(status="running"),
                name="pgjobs_job_running_worker",
            ),
            # Serves the claim of a partitioned queue: its keys (a skip scan), then each key's
            # due jobs in claim order; jobs without a key (NULL, sorted last) are one more
            # partition, found by the same index.
            models.Index(
                "queue",
                "partition_key",
                models.F("priority").desc(),
                "scheduled_for",
                models.F("seq").asc(nulls_first=True),
                condition=Q(status="pending"),
                name="pgjobs_job_partition_claim",
            ),
            # Serves the dashboard's arrivals per minute: pending jobs due before the window but
            # created in it. An index of every row took an entry at each claim and completion too
            # (migration 0031); the newest-first lists read the key (ids are time-ordered). Due
            # before created: no claim or look-up can use it (their conditions do not imply it),
            # so statistics that expect no pending job never make it their smallest way in.
            models.Index(
                fields=("created_at",),
                condition=Q(status="pending", scheduled_for__lt=models.F("created_at")),
                name="pgjobs_job_pending_created",
            ),
            # Serves pruning and the completed-per-minute throughput query.
            models.Index(
                fields=("completed_at",),
                condition=Q(status__in=("completed", "cancelled")),
                name="pgjobs_job_finished",
            ),
        )

    def __str__(self) -> str:
        return f"{self.job_name} {self.id} ({self.status})"

    @property
    def is_awaiting_retry(self) -> bool:
        return self.status == JobStatus.PENDING and self.error is not None


class Dashboard(Job):
    """No table of its own: puts the dashboard in the admin index, next to the models."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class FailedJob(models.Model):
    """A dead letter: a job that used up its attempts, moved here by the statement that failed
    its last attempt."""

    id = models.UUIDField(primary_key=True, db_default=RandomUUID(), editable=False)
    job_name = models.CharField(max_length=MAX_NAME_LENGTH)
    payload = StoredJSONField(db_default=empty_object())
    queue = models.CharField(max_length=MAX_NAME_LENGTH, db_default=Value("default"))
    priority = models.SmallIntegerField(db_default=Value(0))
    attempt = models.IntegerField(db_default=Value(0))
    max_attempts = models.IntegerField(db_default=Value(3))
    error = models.TextField(null=True, blank=True)  # noqa: DJ001 - copied from the job as is
    original_created_at = models.DateTimeField(db_default=Now())
    failed_at = models.DateTimeField(db_default=Now())
    # Carried over from the job (see Job).
    started_at = models.DateTimeField(null=True, blank=True)
    metadata = StoredJSONField(db_default=empty_object())
    error_history = StoredJSONField(db_default=empty_array())
    trace_context = StoredJSONField(null=True, blank=True)
    # The job's (migration 0026), given back by a requeue: it runs in its partition again,
    # with its own timeout. NULL in dead letters written before it.
    partition_key = models.TextField(null=True, blank=True)  # noqa: DJ001 - as the job's
    timeout = models.DurationField(null=True, blank=True)

    class Meta:
        db_table = "pgjobs_failed_jobs"
        ordering = ("-failed_at",)
        # One name everywhere (admin, messages, docs): a job that used up its attempts is a
        # dead letter, whatever its table is called.
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
        constraints = (
            *times_in_range("pgjobs_failed_job", "original_created_at", "failed_at", "started_at"),
            # As the job's: a row written by SQL with a timeout no job may have is refused when
            # it is written, not when it is requeued.
            models.CheckConstraint(
                condition=Q(timeout__isnull=True)
                | Q(timeout__gt=timedelta(0), timeout__lte=timedelta(days=366)),
                name="pgjobs_failed_job_timeout_positive",
            ),
        )
        indexes = (models.Index(fields=("-failed_at",), name="pgjobs_failed_at"),)

    def __str__(self) -> str:
        return f"{self.job_name} {self.id} (dead)"


class Worker(models.Model):
    """One row per live worker process, renewed by its heartbeat and removed when it stops."""

    id = models.TextField(primary_key=True)
    hostname = models.TextField(db_default=Value(""))
    pid = models.IntegerField(db_default=Value(0))
    # A JSON array of queue names; empty means "every queue". (jsonb, not ArrayField, so the
    # app does not require django.contrib.postgres in INSTALLED_APPS.)
    queues = StoredJSONField(db_default=empty_array())
    concurrency = models.IntegerField(db_default=Value(1))
    started_at = models.DateTimeField(db_default=Now())
    last_heartbeat_at = models.DateTimeField(db_default=Now())
    # Made at random by the process that holds the row: its heartbeat and deregistration touch
    # only the row with its own token (host and pid cannot tell containers apart). NULL: a row
    # written before migration 0015, taken over only once silent.
    instance_token = models.UUIDField(null=True, blank=True, editable=False)
    # A JSON array of the job names the worker claims (its handlers; a workflow's runner is
    # ``pgjobs.workflow:<code version>``), written when it registers. NULL: not known (a worker
    # started before migration 0019, or a row written by SQL). Read by explain_job and the
    # dashboard: "no live worker has its handler".
    handlers = StoredJSONField(null=True, blank=True, editable=False)
    # A JSON array of the lease tokens of attempts this worker holds whose rows its last
    # heartbeat could not renew: another transaction held them. The rescue leaves those to the
    # worker while its heartbeat is recent (queries.rescue_expired_leases).
    unrenewed = StoredJSONField(db_default=empty_array(), editable=False)

    class Meta:
        db_table = "pgjobs_workers"
        ordering = ("started_at",)
        constraints = times_in_range("pgjobs_worker", "started_at", "last_heartbeat_at")

    def __str__(self) -> str:
        return self.id

    def serves(self, queue: str) -> bool:
        queues: list[Any] = list(self.queues)
        return not queues or queue in queues
