"""A task's state, read from its job (or dead letter): the mapping of job states to Django's
task states, in one place.

    pending (due, scheduled, or awaiting a retry)  -> READY
    running                                        -> RUNNING
    completed                                      -> SUCCESSFUL
    cancelled, or moved to the dead letters        -> FAILED

``errors`` has one ``TaskError`` per failed attempt the job's ``error_history`` keeps;
``worker_ids`` the worker of each of those attempts, then the worker of the running or last
(completed or cancelled) attempt. A cold path: one read by primary key through the ORM.
"""

from __future__ import annotations

import copy
import sys
import uuid
from datetime import datetime
from typing import Any

from django_pgjobs.jobs.registry import registry
from django_pgjobs.schedules.validation import FIRE_TIME_KEY
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTaskResult
from django_pgjobs.tasks.framework import TaskError, TaskResultDoesNotExist, TaskResultStatus

_STATUS = {
    "pending": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "cancelled": TaskResultStatus.FAILED,
}

_JOB_FIELDS = (
    "id", "job_name", "payload", "status", "queue", "priority", "attempt", "created_at",
    "started_at", "locked_at", "locked_by", "completed_at", "result", "metadata",
    "error_history", "progress", "progress_message",
)  # fmt: skip
_DEAD_FIELDS = (
    "id", "job_name", "payload", "queue", "priority", "attempt", "original_created_at",
    "started_at", "failed_at", "metadata", "error_history",
)  # fmt: skip


def read_result(
    result_id: object, *, backend: str, using: str, progress: bool = True
) -> PgJobsTaskResult:
    """The state of the task whose job has id ``result_id``; raises the framework's
    ``TaskResultDoesNotExist`` for an id that is malformed, unknown, pruned, or a job that is
    not a task. ``progress``: show the job's progress in ``metadata`` (``progress``,
    ``progress_message``); a running attempt's context gets the stored metadata alone."""
    # Here, not at import: the backend is built before the app registry may be ready.
    from django_pgjobs.models import FailedJob, Job

    try:
        pk = uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(f"{result_id!r} is not a task result id.") from None
    row = Job.objects.using(using).filter(id=pk).values(*_JOB_FIELDS).first()
    if row is not None:
        return _from_job(row, backend=backend, progress=progress)
    dead = FailedJob.objects.using(using).filter(id=pk).values(*_DEAD_FIELDS).first()
    if dead is not None:
        return _from_dead_letter(dead, backend=backend)
    raise TaskResultDoesNotExist(f"No task result with id {result_id}.")


def find_task(job_name: str) -> Any:
    """The task of jobs named ``job_name`` (its module path), or None if it names no task.

    A task registers when its module is imported (the app imports every app's ``tasks``). A
    task whose module this process imported by another way is found there too; a row never
    makes this process import anything (its name is anyone's to write)."""
    handler = registry.get(job_name)
    if handler is not None:
        # A task's handler is a runner.TaskRunner, which holds the task.
        task = getattr(handler.func, "task", None)
        return task if isinstance(task, framework.Task) else None
    module_name, _, attribute = job_name.rpartition(".")
    found = getattr(sys.modules.get(module_name), attribute, None) if module_name else None
    return found if isinstance(found, framework.Task) else None


# The keys of a task job's payload: its arguments, the backend alias that enqueued it, and what
# a schedule's tick or manual run adds (which the function does not get).
PAYLOAD_KEYS = frozenset({"args", "kwargs", "backend", FIRE_TIME_KEY, "manual"})


def task_arguments(payload: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """A task job's (args, kwargs) from its payload ``{"args": [...], "kwargs": {...},
    "backend": alias}``; any key may be missing. None when the payload has another shape."""
    if not isinstance(payload, dict) or set(payload) - PAYLOAD_KEYS:
        return None
    if not isinstance(payload.get("backend", ""), str):
        return None
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return None
    return args, kwargs


def _common(row: dict[str, Any], *, backend: str) -> dict[str, Any]:
    task = find_task(row["job_name"])
    if task is None:
        raise TaskResultDoesNotExist(
            f"Job {row['id']} is not a task this process knows (not a task's job, or its "
            "module was not imported here)."
        )
    arguments = task_arguments(row["payload"]) or ([], {})
    history = _history(row["error_history"])
    metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
    return {
        "task": _as_enqueued(task, queue=row["queue"], priority=row["priority"], backend=backend),
        "id": str(row["id"]),
        "args": arguments[0],
        "kwargs": arguments[1],
        "backend": backend,
        "errors": [_task_error(entry) for entry in history],
        "worker_ids": [str(e["worker"]) for e in history if e.get("worker")],
        "metadata": copy.deepcopy(metadata),
        "attempt_count": row["attempt"],
    }


def _from_job(row: dict[str, Any], *, backend: str, progress: bool) -> PgJobsTaskResult:
    fields = _common(row, backend=backend)
    history = _history(row["error_history"])
    status = row["status"]
    last_in_history = bool(history) and history[-1].get("attempt") == row["attempt"]
    if row["locked_by"] and status != "pending" and not last_in_history:
        fields["worker_ids"].append(row["locked_by"])  # the running or last attempt's
    if progress and row["progress"] is not None:
        fields["metadata"].update(
            progress=row["progress"], progress_message=row["progress_message"]
        )
    result = PgJobsTaskResult(
        status=_STATUS[status],
        enqueued_at=row["created_at"],
        started_at=row["started_at"] or row["locked_at"],
        last_attempted_at=row["locked_at"],
        finished_at=row["completed_at"] if status != "running" else None,
        **fields,
    )
    if status == "completed":
        object.__setattr__(result, "_return_value", row["result"])
    return result


def _from_dead_letter(row: dict[str, Any], *, backend: str) -> PgJobsTaskResult:
    history = _history(row["error_history"])
    last_start = _time(history[-1].get("started_at")) if history else None
    return PgJobsTaskResult(
        status=TaskResultStatus.FAILED,
        enqueued_at=row["original_created_at"],
        started_at=row["started_at"] or last_start,
        last_attempted_at=last_start,
        finished_at=row["failed_at"],
        **_common(row, backend=backend),
    )


def _as_enqueued(task: Any, *, queue: str, priority: int, backend: str) -> Any:
    """The task as its job was enqueued (queue, priority and backend may differ from the
    declaration's), or as declared if the backend refuses those now (an operator moved the job,
    say)."""
    if (task.queue_name, task.priority, task.backend) == (queue, priority, backend):
        return task
    try:
        return task.using(queue_name=queue, priority=priority, backend=backend)
    except framework.InvalidTask:
        return task


def _history(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, UndecodableJSON) or not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def _task_error(entry: dict[str, Any]) -> TaskError:
    text = str(entry.get("error") or "")
    return TaskError(
        exception_class_path=str(entry.get("exception") or "builtins.Exception"),
        traceback=traceback_of(text),
    )


def traceback_of(error: str) -> str:
    """The traceback part of a stored error (``summary`` + blank line + traceback, see
    ``describe_error``), as Django's ``TaskError.traceback`` holds it; the whole text when it
    has no traceback (a rescue's "Lease expired ..."). A traceback ends with its newline, as
    Python formats it (and Django's backends keep it); the stored text is stripped."""
    _, blank, rest = error.partition("\n\n")
    return rest + "\n" if blank and rest.startswith("Traceback") else error


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
