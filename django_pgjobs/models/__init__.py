"""The tables, by what they hold: the queue, schedules, workflows. Django finds the models here.

Job states (the statements that move them are listed in :mod:`django_pgjobs.queries`)::

    pending --claim--> running --success--> completed --(RETENTION)--> pruned
       ^                  |
       |   attempts left  |  attempts exhausted
       +--- (error set) --+------------------------> pgjobs_failed_jobs (dead letters)
    pending/running --cancel--> cancelled
"""

from django_pgjobs.models.jobs import Dashboard, FailedJob, Job, JobQuerySet, JobStatus, Worker
from django_pgjobs.models.queues import LIMIT_FIELDS, Queue, QueueQuerySet, QueueStart
from django_pgjobs.models.schedules import CatchUp, Schedule, ScheduleSource
from django_pgjobs.models.workflows import (
    WORKFLOW_FINAL_STATUSES,
    WorkflowEvent,
    WorkflowExecution,
    WorkflowMessage,
    WorkflowStatus,
    WorkflowStep,
    WorkflowStepStatus,
)

__all__ = [
    "LIMIT_FIELDS",
    "WORKFLOW_FINAL_STATUSES",
    "CatchUp",
    "Dashboard",
    "FailedJob",
    "Job",
    "JobQuerySet",
    "JobStatus",
    "Queue",
    "QueueQuerySet",
    "QueueStart",
    "Schedule",
    "ScheduleSource",
    "Worker",
    "WorkflowEvent",
    "WorkflowExecution",
    "WorkflowMessage",
    "WorkflowStatus",
    "WorkflowStep",
    "WorkflowStepStatus",
]
