"""What is waiting in the queue, for tests to assert on without running it.

"Enqueued" means a row in ``pgjobs_job_queue`` with status ``pending``: due now or scheduled for
later, and not yet run. Read on Django's connection, so a ``TestCase`` sees its own uncommitted
jobs. Jobs are matched by name (a job name, the ``JobHandler`` ``@job`` returned, or a Django
``Task``), by payload or by a task's ``args`` and ``kwargs`` (its payload is
``{"args": [...], "kwargs": {...}}``), and by queue.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from django_pgjobs.database import queue_database
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import Job, JobStatus


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET  # "not asked about": a payload of None is a real value ({} when stored)
_SHOWN = 200  # characters of a payload shown in a failure message


def job_name_of(target: str | JobHandler | Any) -> str:
    """The job name rows of ``target`` carry: a job name, a ``@job`` handler's name, or a Django
    task's ``module_path``."""
    if isinstance(target, str):
        return target
    if isinstance(target, JobHandler):
        return target.name
    module_path = getattr(target, "module_path", None)
    if isinstance(module_path, str):
        return module_path
    raise TypeError(
        f"Expected a job name, a @job handler or a task, not {type(target).__name__}: {target!r}."
    )


def enqueued(
    job: str | JobHandler | Any = None,
    *,
    payload: Any = UNSET,
    args: Any = UNSET,
    kwargs: Any = UNSET,
    queue: str | None = None,
    using: str | None = None,
) -> list[Job]:
    """The pending jobs matching every criterion given, in the order a worker would take them
    (priority, then due time). ``job`` is a job name, a ``@job`` handler or a Django task (None:
    any); ``payload`` must equal the job's whole payload; ``args`` and ``kwargs`` a task's
    (sequences compare as lists, as JSON stores them)."""
    name = None if job is None else job_name_of(job)
    return [row for row in _pending(using) if _matches(row, name, payload, args, kwargs, queue)]


def assert_enqueued(
    job: str | JobHandler | Any = None,
    *,
    payload: Any = UNSET,
    args: Any = UNSET,
    kwargs: Any = UNSET,
    queue: str | None = None,
    count: int | None = None,
    using: str | None = None,
) -> list[Job]:
    """Fail unless a pending job matches (exactly ``count`` of them, when given); returns the
    matches. The failure message lists every pending job, so a wrong payload shows at once."""
    found = enqueued(job, payload=payload, args=args, kwargs=kwargs, queue=queue, using=using)
    if (count is None and found) or len(found) == count:
        return found
    wanted = _describe_criteria(job, payload, args, kwargs, queue)
    expected = "at least one pending job" if count is None else f"{count} pending job(s)"
    raise AssertionError(
        f"Expected {expected} matching {wanted}; found {len(found)}.\n"
        + _listing(_pending(using), "Pending jobs")
    )


def assert_not_enqueued(
    job: str | JobHandler | Any = None,
    *,
    payload: Any = UNSET,
    args: Any = UNSET,
    kwargs: Any = UNSET,
    queue: str | None = None,
    using: str | None = None,
) -> None:
    """Fail if any pending job matches; the message lists those that do."""
    found = enqueued(job, payload=payload, args=args, kwargs=kwargs, queue=queue, using=using)
    if found:
        wanted = _describe_criteria(job, payload, args, kwargs, queue)
        raise AssertionError(
            f"Expected no pending job matching {wanted}; found {len(found)}.\n"
            + _listing(found, "Matching jobs")
        )


def _pending(using: str | None) -> list[Job]:
    return list(
        Job.objects.using(queue_database(using))
        .filter(status=JobStatus.PENDING)
        .order_by("-priority", "scheduled_for", "created_at", "id")
    )


def _matches(
    row: Job, name: str | None, payload: Any, args: Any, kwargs: Any, queue: str | None
) -> bool:
    if name is not None and row.job_name != name:
        return False
    if queue is not None and row.queue != queue:
        return False
    stored = row.payload
    if payload is not UNSET and stored != _as_stored({} if payload is None else payload):
        return False
    if args is not UNSET and _task_part(stored, "args") != _as_stored(list(args)):
        return False
    return kwargs is UNSET or _task_part(stored, "kwargs") == _as_stored(dict(kwargs))


def _task_part(payload: Any, part: str) -> Any:
    return payload.get(part, UNSET) if isinstance(payload, dict) else UNSET


def _as_stored(value: Any) -> Any:
    """``value`` as it comes back from the database (tuples become lists), so an expectation
    written with Python values compares equal to the stored JSON."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value  # not JSON: it can match nothing stored, and the message shows it as is


def _describe_criteria(job: Any, payload: Any, args: Any, kwargs: Any, queue: str | None) -> str:
    given = {
        "job_name": None if job is None else job_name_of(job),
        "payload": payload,
        "args": args,
        "kwargs": kwargs,
        "queue": queue,
    }
    shown = [f"{k}={v!r}" for k, v in given.items() if v is not None and v is not UNSET]
    return ", ".join(shown) or "anything"


def _listing(jobs: list[Job], title: str) -> str:
    if not jobs:
        return f"{title}: none."
    lines = [f"{title} ({len(jobs)}):"]
    for row in jobs:
        shown = repr(row.payload)
        if len(shown) > _SHOWN:
            shown = shown[: _SHOWN - 3] + "..."
        lines.append(f"  {row.job_name} queue={row.queue!r} payload={shown}")
    return "\n".join(lines)
