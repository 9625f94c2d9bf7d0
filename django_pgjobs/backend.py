"""The Django Tasks backend: ``@task`` functions run as django-pgjobs jobs.

    TASKS = {
        "default": {
            "BACKEND": "django_pgjobs.backend.PgJobsBackend",
            "QUEUES": ["default", "emails"],   # optional; [] allows any queue name
            "OPTIONS": {"MAX_ATTEMPTS": 3, "BACKOFF": 5, "TIMEOUT": 600},
        }
    }

A task is an ordinary job row named after the task's module path, with payload ``{"args":
[...], "kwargs": {...}}`` and the job's id as the result id. Enqueueing inserts it on Django's
connection, so inside ``transaction.atomic()`` the task exists only if the transaction commits.
The worker runs it (:mod:`django_pgjobs.tasks.runner`); retries, leases and rescue, dead
letters, the admin and the CLI apply as to any job. Importing this module, building the backend
and ``manage.py check`` never touch the database or the models.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from django.core import checks
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTask, PgJobsTaskResult
from django_pgjobs.tasks.framework import TaskResultStatus
from django_pgjobs.tasks.results import read_result
from django_pgjobs.tasks.runner import register_task, send_signal


class PgJobsBackend(framework.BaseTaskBackend):
    task_class = PgJobsTask

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    supports_metadata = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        framework.BaseTaskBackend.__init__(self, alias, params)
        # Read, not checked: a bad option is reported by check() (pgjobs.E030), never by an
        # import of a module that declares a task.
        self.options = dict(self.options)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its alias: the process that unpickles it uses its own backend of that name
        (a handler's child process sends a task's result back to the worker this way)."""
        return (_backend_named, (self.alias,))

    @property
    def database(self) -> str:
        """The database alias the backend's jobs live in: ``OPTIONS["DATABASE"]``, else
        ``PGJOBS["DATABASE"]``; InvalidJobError if it is not PostgreSQL."""
        return queue_database(self.options.get("DATABASE"))

    # The options as task handlers take them. A malformed value counts as not given here:
    # importing tasks must not fail every manage.py command before the system checks
    # (pgjobs.E031, E032, E036) can say what is wrong.

    @property
    def max_attempts(self) -> int | None:
        value = self.options.get("MAX_ATTEMPTS")
        return None if value is None else _valid("check_max_attempts", value)

    @property
    def timeout(self) -> float | None:
        """``OPTIONS["TIMEOUT"]``: seconds a task's attempt may run when the task sets none."""
        value = self.options.get("TIMEOUT")
        return None if value is None else _valid("check_timeout", value)

    @property
    def backoff(self) -> Any:
        """``OPTIONS["BACKOFF"]``: seconds, a timedelta, a callable, or a callable's dotted path."""
        value = self.options.get("BACKOFF")
        if isinstance(value, str):
            try:
                return import_string(value)
            except ImportError:
                return None
        if value is None or callable(value):
            return value
        return _valid("check_retry_delay", value)

    # Validation

    def validate_task(self, task: Any) -> None:
        """Django's checks, plus: ``run_after`` may be a delay (a ``timedelta``); times, queue
        names, ``max_attempts``, ``backoff``, ``metadata`` and a ``partition_key`` str as the
        queue accepts them (a callable is asked at enqueue)."""
        priority = task.priority
        if isinstance(priority, bool) or not isinstance(priority, int | float):
            # Django's own check would compare it first, and raise a bare TypeError.
            raise framework.InvalidTask(
                f"priority must be a whole number between {framework.TASK_MIN_PRIORITY} and "
                f"{framework.TASK_MAX_PRIORITY}, not {type(priority).__name__}."
            )
        framework.BaseTaskBackend.validate_task(self, _WithoutDelay(task))  # type: ignore[arg-type]
        try:
            _check_options(task)
        except (InvalidJobError, PayloadNotSerializable) as exc:
            message = (
                str(exc).replace("scheduled_for", "run_after").replace("retry_delay", "backoff")
            )
            raise framework.InvalidTask(message) from None
        # Valid: a worker here can run it.
        register_task(
            task, max_attempts=self.max_attempts, timeout=self.timeout, backoff=self.backoff
        )

    # Enqueueing

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> PgJobsTaskResult:
        from django_pgjobs.jobs.producer import enqueue_stamped

        self.validate_task(task)
        # enqueued_at is the stored time (the row's created_at: its statement's start), not
        # this process's clock, so get_result(result.id) reads back what this returns.
        job_id, enqueued_at = enqueue_stamped(task.module_path, **self._job(task, args, kwargs))
        result = self._enqueued(task, str(job_id), args, kwargs, enqueued_at=enqueued_at)
        _send_enqueued(self, result)
        return result

    def enqueue_on_commit(self, task: Any, args: Any, kwargs: Any) -> PgJobsTaskResult:
        """See :meth:`PgJobsTask.enqueue_on_commit`; ``task_enqueued`` is sent after the insert."""
        from django_pgjobs.jobs.producer import enqueue_on_commit

        self.validate_task(task)
        job_id = enqueue_on_commit(task.module_path, **self._job(task, args, kwargs))
        # Not inserted yet: the time is known once it is (refresh() reads it).
        result = self._enqueued(task, str(job_id), args, kwargs, enqueued_at=None)
        transaction.on_commit(lambda: _send_enqueued(self, result), using=self.database)
        return result

    def _job(self, task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
        """enqueue()'s arguments for a task; arguments JSON cannot hold are refused here,
        naming the task (Django's own check names neither the task nor the argument)."""
        try:
            arguments = framework.normalize_json(list(args)), framework.normalize_json(dict(kwargs))
        except (TypeError, ValueError) as exc:
            raise PayloadNotSerializable(
                f"The arguments of task {task.module_path} are not JSON: {exc}. Pass plain "
                "dicts, lists, str, int, float, bool and None (a model instance by its pk)."
            ) from exc
        max_attempts = getattr(task, "max_attempts", None) or self.max_attempts
        # From the arguments as the worker will pass them (JSON's): the same key a schedule's
        # tick of the task gets from its payload.
        partition_key = _partition_key(task, *arguments)
        payload = {
            "args": arguments[0],
            "kwargs": arguments[1],
            # Which backend the worker runs it with (its database, its BACKOFF): the task's
            # declaration may name another (task.using(backend=...)).
            "backend": self.alias,
        }
        return {
            "payload": payload,
            "scheduled_for": task.run_after,
            "max_attempts": max_attempts,
            "queue": task.queue_name,
            "priority": int(task.priority),
            "using": self.database,
            "metadata": getattr(task, "metadata", None),
            "timeout": getattr(task, "timeout", None) or self.timeout,
            "partition_key": partition_key,
        }

    def _enqueued(
        self, task: Any, job_id: str, args: Any, kwargs: Any, *, enqueued_at: datetime | None
    ) -> PgJobsTaskResult:
        return PgJobsTaskResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
            # A copy: the task's (perhaps module-level) metadata must not change with it.
            metadata=copy.deepcopy(getattr(task, "metadata", None) or {}),
            attempt_count=0,
        )

    # Results

    def get_result(self, result_id: str) -> PgJobsTaskResult:
        return read_result(result_id, backend=self.alias, using=self.database)

    def running_result(self, task: Any, job: Any) -> PgJobsTaskResult:
        """The state a worker's attempt starts from: as stored (its metadata without the
        progress shown beside it, so saving it stores only what the task wrote), with this
        attempt's start when the claim did not record it (the job was claimed ahead)."""
        result = read_result(str(job.id), backend=self.alias, using=self.database, progress=False)
        now = timezone.now()
        object.__setattr__(result, "status", TaskResultStatus.RUNNING)
        object.__setattr__(result, "started_at", result.started_at or now)
        object.__setattr__(result, "last_attempted_at", result.last_attempted_at or now)
        object.__setattr__(result, "attempt_count", job.attempt)
        return result

    # System checks

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        from django_pgjobs.tasks.checks import check_backend

        return check_backend(self)


class _WithoutDelay:
    """The task as Django's base validation sees it when ``run_after`` is a delay: that check
    (an aware datetime) cannot apply to a ``timedelta``, which ``_check_options`` checked."""

    def __init__(self, task: Any) -> None:
        self._task = task
        self.run_after = None if isinstance(task.run_after, timedelta) else task.run_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def _check_options(task: Any) -> None:
    """What the queue accepts beyond Django's checks; raises InvalidJobError."""
    from django_pgjobs.jobs import validation

    validation.check_job_name(task.module_path)
    validation.check_name(task.queue_name, "queue name")
    if task.run_after is not None:
        validation.check_scheduled_for(task.run_after)
    if getattr(task, "max_attempts", None) is not None:
        validation.check_max_attempts(task.max_attempts)
    backoff = getattr(task, "backoff", None)
    if backoff is not None and not callable(backoff):
        validation.check_retry_delay(backoff)
    if getattr(task, "metadata", None) is not None:
        validation.dump_metadata(task.metadata, "task metadata")
    if getattr(task, "timeout", None) is not None:
        validation.check_timeout(task.timeout)
    key = getattr(task, "partition_key", None)
    if key is not None and not callable(key):
        validation.check_partition_key(key)


def _valid(check: str, value: Any) -> Any:
    """``validation.<check>(value)``, or None if it refuses the value."""
    from django_pgjobs.jobs import validation

    try:
        return getattr(validation, check)(value)
    except (InvalidJobError, TypeError, ValueError):
        return None


def _backend_named(alias: str) -> Any:
    return framework.task_backends[alias]


def _partition_key(task: Any, args: Any, kwargs: Any) -> str | None:
    """The task's partition key for these arguments: its str, or what its callable answers
    when given them as the task function is. Raises InvalidTask naming the task, before
    anything is written, when the callable raises or answers no str. (When it answers None,
    the enqueue asks the task's job handler, which asks the same callable again: it should be
    a pure function of the arguments.)"""
    from django_pgjobs.jobs import validation

    key = getattr(task, "partition_key", None)
    if callable(key):
        try:
            key = key(*args, **kwargs)
        except Exception as exc:
            raise framework.InvalidTask(
                f"Task {task.module_path}: its partition_key callable raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    try:
        return validation.check_partition_key(key)
    except InvalidJobError as exc:
        raise framework.InvalidTask(f"Task {task.module_path}: {exc}") from None


def _send_enqueued(backend: PgJobsBackend, result: PgJobsTaskResult) -> None:
    send_signal(framework.signals.task_enqueued, backend, result)
