"""The queue's tables.

Every column has a database-level default, so a plain ``INSERT INTO pgjobs_job_queue (job_name,
payload) VALUES (...)`` from SQL, a trigger or another language creates a runnable job exactly as
``enqueue()`` does. Hot state changes never go through these models: they are single statements
in :mod:`django_pgjobs.queries`. The ORM serves the cold paths (admin, listing, pruning by hand).

Job states::

    pending --claim--> running --success--> completed --(RETENTION)--> pruned
       ^                  |
       |   attempts left  |  attempts exhausted
       +--- (error set) --+------------------------> pgjobs_failed_jobs (dead letters)
    pending/running --cancel--> cancelled
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.functions import RandomUUID
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Now

from django_pgjobs.validation import MAX_NAME_LENGTH, MAX_PRIORITY, MIN_PRIORITY


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


def _empty_object() -> Value:
    return Value({}, output_field=models.JSONField())


class JobQuerySet(models.QuerySet["Job"]):
    def due(self) -> JobQuerySet:
        return self.filter(status=JobStatus.PENDING, scheduled_for__lte=Now())

    def awaiting_retry(self) -> JobQuerySet:
        return self.filter(status=JobStatus.PENDING, error__isnull=False)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=[JobStatus.COMPLETED, JobStatus.CANCELLED])


class Job(models.Model):
    id = models.UUIDField(primary_key=True, db_default=RandomUUID(), editable=False)
    job_name = models.CharField(max_length=MAX_NAME_LENGTH)
    payload = models.JSONField(db_default=_empty_object())
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
    locked_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A fresh random value per claim: the fencing token a worker must present to complete, fail,
    # heartbeat or report progress on the attempt it holds. Unlike ``attempt`` it never repeats,
    # even when an operator resets the attempt budget.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)

    objects = JobQuerySet.as_manager()

    class Meta:
        db_table = "pgjobs_job_queue"
        ordering = ("-created_at",)
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
            models.UniqueConstraint(
                fields=("key",),
                condition=Q(key__isnull=False, status__in=("pending", "running")),
                name="pgjobs_job_key_active",
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
            # Serves "when is the next job due?" for an idle worker and queue lag for `status`.
            models.Index(
                fields=("scheduled_for",), condition=Q(status="pending"), name="pgjobs_job_next_due"
            ),
            # Serves the rescue sweep: running jobs whose lease ran out.
            models.Index(
                fields=("lease_expires_at",),
                condition=Q(status="running"),
                name="pgjobs_job_lease",
            ),
            # Serves the admin's newest-first list and the dashboard's arrivals per minute.
            models.Index(fields=("created_at",), name="pgjobs_job_created"),
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
    payload = models.JSONField(db_default=_empty_object())
    queue = models.CharField(max_length=MAX_NAME_LENGTH, db_default=Value("default"))
    priority = models.SmallIntegerField(db_default=Value(0))
    attempt = models.IntegerField(db_default=Value(0))
    max_attempts = models.IntegerField(db_default=Value(3))
    error = models.TextField(null=True, blank=True)  # noqa: DJ001 - copied from the job as is
    original_created_at = models.DateTimeField(db_default=Now())
    failed_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_failed_jobs"
        ordering = ("-failed_at",)
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
    queues = models.JSONField(db_default=Value([], output_field=models.JSONField()))
    concurrency = models.IntegerField(db_default=Value(1))
    started_at = models.DateTimeField(db_default=Now())
    last_heartbeat_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_workers"
        ordering = ("started_at",)

    def __str__(self) -> str:
        return self.id

    def serves(self, queue: str) -> bool:
        queues: list[Any] = list(self.queues)
        return not queues or queue in queues


class CatchUp(models.TextChoices):
    SKIP = "skip", "Skip missed ticks"
    LATEST = "latest", "Run the latest missed tick once"
    ALL = "all", "Run all missed ticks (up to the limit)"


class ScheduleSource(models.TextChoices):
    CODE = "code", "Code (@cron / schedule())"
    SETTINGS = "settings", "Settings (PGJOBS['SCHEDULES'])"
    DATABASE = "database", "Database (admin or SQL)"


class Schedule(models.Model):
    """A recurring job. Code and settings declarations are synced here when a scheduler starts;
    rows created in the admin or with SQL live only here.

    ``next_run_at`` is the next tick to fire. A trigger clears it whenever the timing changes
    (expression, timezone, window) or the schedule is re-enabled, and schedulers recompute it
    from the database clock, so edits take effect without a restart.
    """

    name = models.CharField(max_length=MAX_NAME_LENGTH, unique=True)
    cron = models.CharField(
        max_length=200,
        help_text="5 cron fields (minute hour day month weekday), 6 with seconds first, an "
        "alias such as @daily, or an interval such as 'every 10 minutes'.",
    )
    job_name = models.CharField(max_length=MAX_NAME_LENGTH)
    payload = models.JSONField(db_default=_empty_object(), default=dict, blank=True)
    queue = models.CharField(max_length=MAX_NAME_LENGTH, null=True, blank=True)  # noqa: DJ001 - NULL: the job's default
    priority = models.SmallIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, db_default=Value("UTC"), default="UTC")
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(db_default=Value(True), default=True)
    catch_up = models.CharField(
        max_length=8, choices=CatchUp.choices, db_default=Value("skip"), default=CatchUp.SKIP
    )
    catch_up_limit = models.IntegerField(db_default=Value(10), default=10)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    source = models.CharField(
        max_length=8,
        choices=ScheduleSource.choices,
        db_default=Value("database"),
        default=ScheduleSource.DATABASE,
        editable=False,
    )
    # The code or settings declaration was removed; the row stays for its history.
    orphaned = models.BooleanField(db_default=Value(False), default=False, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "pgjobs_schedules"
        ordering = ("name",)
        constraints = (
            models.CheckConstraint(
                condition=Q(end_at__isnull=True)
                | Q(start_at__isnull=True)
                | Q(end_at__gt=F("start_at")),
                name="pgjobs_schedule_window",
            ),
            models.CheckConstraint(
                condition=Q(catch_up__in=CatchUp.values), name="pgjobs_schedule_catch_up_valid"
            ),
            models.CheckConstraint(
                condition=Q(catch_up_limit__gte=1), name="pgjobs_schedule_catch_up_limit"
            ),
            models.CheckConstraint(
                condition=Q(priority__isnull=True)
                | Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="pgjobs_schedule_priority_range",
            ),
        )
        indexes = (
            models.Index(
                fields=("next_run_at",), condition=Q(enabled=True), name="pgjobs_schedule_due"
            ),
        )

    def __str__(self) -> str:
        return self.name

    # Written only by schedulers. A form or ``save()`` after a read must never bring back an
    # old next tick (which would fire it again), so saves of existing rows leave them alone.
    SCHEDULER_FIELDS = frozenset({"next_run_at", "last_run_at"})

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.SCHEDULER_FIELDS
            ]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from django_pgjobs.schedules import declaration_problems, option_problems

        if self.source != ScheduleSource.DATABASE:
            # Declared in code or settings: checked there (pgjobs.E010); here only the
            # operator's `enabled` can change, and that needs no validation.
            return
        problems = option_problems(name=self.name, queue=self.queue, priority=self.priority)
        problems |= declaration_problems(
            cron=self.cron,
            timezone=self.timezone,
            start=self.start_at,
            end=self.end_at,
            job_name=self.job_name,
            payload=self.payload,
        )
        if problems:
            raise ValidationError(problems)


class WorkflowStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # queued, or waiting (sleep, recv, get_event, a child)
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Crashed its worker more than max_recovery_attempts times; its job is in the dead letters.
    DEAD = "dead", "Dead"


WORKFLOW_FINAL_STATUSES = ("completed", "failed", "cancelled", "dead")


class WorkflowExecution(models.Model):
    """One durable workflow. It runs as a job named ``pgjobs.workflow:<app version>`` with the key
    ``workflow:<id>``; the checkpoints of its steps are rows of :class:`WorkflowStep`."""

    workflow_id = models.CharField(max_length=MAX_NAME_LENGTH, primary_key=True)
    name = models.CharField(max_length=MAX_NAME_LENGTH)
    status = models.CharField(
        max_length=16, choices=WorkflowStatus.choices, db_default=Value("pending")
    )
    # {"args": [...], "kwargs": {...}}, as JSON.
    input = models.JSONField(db_default=_empty_object())
    output = models.JSONField(null=True, blank=True)
    # {"type": "module.Class", "message": ..., "args": [...], "traceback": ...}
    error = models.JSONField(null=True, blank=True)
    app_version = models.CharField(max_length=64)
    queue = models.CharField(max_length=MAX_NAME_LENGTH, db_default=Value("default"))
    priority = models.SmallIntegerField(db_default=Value(0))
    max_recovery_attempts = models.IntegerField(db_default=Value(10))
    parent_workflow_id = models.CharField(max_length=MAX_NAME_LENGTH, null=True, blank=True)  # noqa: DJ001
    forked_from = models.CharField(max_length=MAX_NAME_LENGTH, null=True, blank=True)  # noqa: DJ001
    # Bumped by whatever a waiting workflow may be waiting for (a message, an event, a result),
    # so a workflow about to suspend can tell that its wake-up already happened.
    wake_seq = models.BigIntegerField(db_default=Value(0))
    created_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pgjobs_workflow_executions"
        ordering = ("-created_at",)
        verbose_name = "workflow"
        constraints = (
            models.CheckConstraint(
                condition=Q(status__in=WorkflowStatus.values), name="pgjobs_workflow_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(max_recovery_attempts__gte=0),
                name="pgjobs_workflow_max_recovery_attempts",
            ),
        )
        indexes = (
            models.Index(fields=("created_at",), name="pgjobs_workflow_created"),
            models.Index(fields=("status", "created_at"), name="pgjobs_workflow_status"),
            models.Index(fields=("name", "created_at"), name="pgjobs_workflow_name"),
            models.Index(
                fields=("parent_workflow_id",),
                condition=Q(parent_workflow_id__isnull=False),
                name="pgjobs_workflow_parent",
            ),
            # Serves pruning finished workflows past WORKFLOW_RETENTION.
            models.Index(
                fields=("completed_at",),
                condition=Q(status__in=WORKFLOW_FINAL_STATUSES),
                name="pgjobs_workflow_finished",
            ),
        )

    def __str__(self) -> str:
        return f"{self.name} {self.workflow_id} ({self.status})"


class WorkflowStepStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    # A durable wait in progress (sleep, recv, get_event, a child's result): wake_at is its
    # deadline, wait_key what wakes it early.
    WAITING = "waiting", "Waiting"


class WorkflowStep(models.Model):
    """The checkpoint of one step call: written once when the step finishes, and returned
    instead of running the step again when the workflow is re-executed."""

    id = models.BigAutoField(primary_key=True)
    workflow = models.ForeignKey(
        WorkflowExecution,
        on_delete=models.CASCADE,
        db_column="workflow_id",
        related_name="steps",
        db_constraint=True,
    )
    step_index = models.IntegerField()
    step_name = models.CharField(max_length=MAX_NAME_LENGTH)
    status = models.CharField(max_length=16, choices=WorkflowStepStatus.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.IntegerField(db_default=Value(1))
    wait_key = models.TextField(null=True, blank=True)  # noqa: DJ001
    wake_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pgjobs_workflow_steps"
        ordering = ("workflow", "step_index")
        constraints = (
            models.UniqueConstraint(
                fields=("workflow", "step_index"), name="pgjobs_workflow_step_unique"
            ),
            models.CheckConstraint(
                condition=Q(status__in=WorkflowStepStatus.values),
                name="pgjobs_workflow_step_status_valid",
            ),
        )
        indexes = (
            # Serves the wake-up of waiting workflows by what they wait for.
            models.Index(
                fields=("wait_key",), condition=Q(status="waiting"), name="pgjobs_step_waiting"
            ),
        )

    def __str__(self) -> str:
        return f"{self.workflow_id} #{self.step_index} {self.step_name}"


class WorkflowMessage(models.Model):
    """A message sent to a workflow, consumed (deleted) by the recv() that checkpoints it."""

    id = models.BigAutoField(primary_key=True)
    workflow = models.ForeignKey(
        WorkflowExecution, on_delete=models.CASCADE, db_column="workflow_id", related_name="+"
    )
    topic = models.TextField(db_default=Value(""))
    message = models.JSONField(null=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_workflow_messages"
        indexes = (models.Index(fields=("workflow", "topic", "id"), name="pgjobs_message_inbox"),)

    def __str__(self) -> str:
        return f"message {self.id} to {self.workflow_id}"


class WorkflowEvent(models.Model):
    """A key/value a workflow published with set_event(); the latest value wins."""

    id = models.BigAutoField(primary_key=True)
    workflow = models.ForeignKey(
        WorkflowExecution, on_delete=models.CASCADE, db_column="workflow_id", related_name="+"
    )
    key = models.CharField(max_length=MAX_NAME_LENGTH)
    value = models.JSONField(null=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_workflow_events"
        constraints = (
            models.UniqueConstraint(fields=("workflow", "key"), name="pgjobs_workflow_event_key"),
        )

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.key}"
