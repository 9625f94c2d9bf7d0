"""Workflows: one row per workflow, the checkpoints of its steps, its messages and events."""

from __future__ import annotations

from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Now

from django_pgjobs.jobs.validation import MAX_NAME_LENGTH
from django_pgjobs.models.fields import StoredJSONField, times_in_range
from django_pgjobs.models.jobs import empty_object


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
    input = StoredJSONField(db_default=empty_object())
    output = StoredJSONField(null=True, blank=True)
    # {"type": "module.Class", "message": ..., "args": [...], "traceback": ...}
    error = StoredJSONField(null=True, blank=True)
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
            *times_in_range(
                "pgjobs_workflow", "created_at", "started_at", "updated_at", "completed_at"
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
    # No index of its own: pgjobs_workflow_step_unique leads with it. Django's two (the column,
    # and its varchar_pattern_ops copy) cost every checkpoint two more entries (migration 0032).
    workflow = models.ForeignKey(
        WorkflowExecution,
        on_delete=models.CASCADE,
        db_column="workflow_id",
        related_name="steps",
        db_constraint=True,
        db_index=False,
    )
    step_index = models.IntegerField()
    step_name = models.CharField(max_length=MAX_NAME_LENGTH)
    status = models.CharField(max_length=16, choices=WorkflowStepStatus.choices)
    output = StoredJSONField(null=True, blank=True)
    error = StoredJSONField(null=True, blank=True)
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
            *times_in_range("pgjobs_workflow_step", "wake_at", "started_at", "completed_at"),
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
    # Indexed by pgjobs_message_inbox, which leads with it (migration 0032).
    workflow = models.ForeignKey(
        WorkflowExecution,
        on_delete=models.CASCADE,
        db_column="workflow_id",
        related_name="+",
        db_index=False,
    )
    topic = models.TextField(db_default=Value(""))
    message = StoredJSONField(null=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_workflow_messages"
        constraints = times_in_range("pgjobs_workflow_message", "created_at")
        indexes = (models.Index(fields=("workflow", "topic", "id"), name="pgjobs_message_inbox"),)

    def __str__(self) -> str:
        return f"message {self.id} to {self.workflow_id}"


class WorkflowEvent(models.Model):
    """A key/value a workflow published with set_event(); the latest value wins."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by pgjobs_workflow_event_key, which leads with it (migration 0032).
    workflow = models.ForeignKey(
        WorkflowExecution,
        on_delete=models.CASCADE,
        db_column="workflow_id",
        related_name="+",
        db_index=False,
    )
    key = models.CharField(max_length=MAX_NAME_LENGTH)
    value = StoredJSONField(null=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgjobs_workflow_events"
        constraints = (
            models.UniqueConstraint(fields=("workflow", "key"), name="pgjobs_workflow_event_key"),
            *times_in_range("pgjobs_workflow_event", "updated_at"),
        )

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.key}"
