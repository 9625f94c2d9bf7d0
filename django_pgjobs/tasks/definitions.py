"""The task, result and context classes of :class:`~django_pgjobs.backend.PgJobsBackend`: the
framework's own, with what Django's open proposals add (retries: django/new-features#142,
metadata: #141, ``enqueue_on_commit``: #161) under their proposed names.

They are the framework's dataclasses (frozen, slotted), so everything written for Django's
types works on them. (Slotted dataclasses cannot use ``super()`` without arguments: the
methods call their base class by name.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.utils.module_loading import import_string

from django_pgjobs.exceptions import PayloadNotDecodable
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.context import ProgressReporter
from django_pgjobs.queries import lease
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.framework import TaskContext, TaskResult

if TYPE_CHECKING:
    from django_pgjobs.queries import Token

    _Task = framework.Task[Any, Any]
    _TaskResult = TaskResult[Any, Any]
    _TaskContext = TaskContext[Any, Any]
else:
    _Task, _TaskResult, _TaskContext = framework.Task, TaskResult, TaskContext

# ``backoff``: seconds or a timedelta (the base of an exponential backoff), or a callable
# ``(exception, task_result) -> seconds | timedelta | None`` (None: do not retry).
Backoff = float | timedelta | Callable[[BaseException, Any], "float | timedelta | None"]

# ``partition_key``: a str, or a callable given the task's arguments (``(*args, **kwargs)``, as
# the task function is) that answers a str or None (no partition).
PartitionKey = str | Callable[..., "str | None"]

# What result.refresh() reloads: Django's list, and ours.
REFRESHED = (
    "errors",
    "_return_value",
    "finished_at",
    "started_at",
    "last_attempted_at",
    "status",
    "enqueued_at",
    "worker_ids",
    "metadata",
    "attempt_count",
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PgJobsTask(_Task):
    """A task run by django-pgjobs: ``@task(max_attempts=5, backoff=10)`` on Django 6.1 and the
    backport (they pass extra ``@task`` arguments to the backend's task class), or
    ``task.using(max_attempts=..., metadata=...)`` anywhere.

    ``max_attempts``, ``backoff`` and ``timeout`` default to the backend's ``OPTIONS``
    (``MAX_ATTEMPTS``, ``BACKOFF``, ``TIMEOUT``), then to ``PGJOBS`` settings (a timeout: to the
    queue's first). ``metadata`` and ``timeout`` are stored on the job at enqueue.
    ``partition_key`` puts the task's jobs in a partition of their queue: a str, or a callable
    asked at each enqueue with the task's arguments (``lambda account_id, **kw:
    f"account:{account_id}"``).
    """

    max_attempts: int | None = None
    backoff: Backoff | None = None
    metadata: dict[str, Any] | None = None
    # Seconds (or a timedelta) an attempt may run before it fails with JobTimeout.
    timeout: float | timedelta | None = None
    partition_key: PartitionKey | None = None

    def __post_init__(self) -> None:
        # The backend validates the task and, if it is valid, registers it with the workers.
        framework.Task.__post_init__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its module path and its options: its function cannot be pickled (its
        module's attribute of that name is the task). A handler's child process (``--pool
        process``) sends the task's result back to the worker this way, for task_finished."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del options["func"]
        return (_task_at, (self.module_path, options))

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | timedelta | None = None,
        backend: str | None = None,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        partition_key: str | None = None,
    ) -> PgJobsTask:
        """A copy with other defaults for one enqueue; ``run_after`` may be a delay, and
        ``partition_key`` is that enqueue's key (a str)."""
        if callable(partition_key):
            # The task's callable is also its job handler's (for schedules); another one here
            # could disagree with it.
            raise framework.InvalidTask(
                "using(partition_key=...) takes one enqueue's key, a str; declare a callable "
                "on @task(partition_key=...)."
            )
        changes: dict[str, Any] = {}
        for name, value in (
            ("priority", priority),
            ("queue_name", queue_name),
            ("run_after", run_after),
            ("backend", backend),
            ("max_attempts", max_attempts),
            ("metadata", metadata),
            ("timeout", timeout),
            ("partition_key", partition_key),
        ):
            if value is not None:
                changes[name] = value
        return dataclasses.replace(self, **changes)

    def enqueue_on_commit(self, *args: Any, **kwargs: Any) -> PgJobsTaskResult:
        """Enqueue once the current transaction on the queue's database commits (nothing if it
        rolls back), validated now. The result's id is the job's; it exists after the commit."""
        enqueue_on_commit = getattr(self.get_backend(), "enqueue_on_commit", None)
        if enqueue_on_commit is None:
            raise framework.InvalidTask(
                f"Task backend {self.backend!r} is not PgJobsBackend: it has no enqueue_on_commit."
            )
        result: PgJobsTaskResult = enqueue_on_commit(self, list(args), kwargs)
        return result

    async def aenqueue_on_commit(self, *args: Any, **kwargs: Any) -> PgJobsTaskResult:
        return await sync_to_async(self.enqueue_on_commit, thread_sensitive=True)(*args, **kwargs)


def _task_at(module_path: str, options: dict[str, Any]) -> PgJobsTask:
    task: PgJobsTask = import_string(module_path)
    return dataclasses.replace(task, **options)


# Frozen at run time, like the framework's; its stubs declare it unfrozen.
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PgJobsTaskResult(_TaskResult):  # type: ignore[misc]
    """A task's state, read from its job. Beside Django's fields: ``metadata`` (the job's, with
    the progress it reported as ``progress`` / ``progress_message``) and ``attempt_count``
    (the attempts started, which ``attempts`` returns: ``worker_ids`` keeps the newest
    workers only, as the job's error history does)."""

    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempt_count: int | None = None

    @property
    def attempts(self) -> int:
        if self.attempt_count is not None:
            return self.attempt_count
        return len(self.worker_ids)

    @property
    def return_value(self) -> Any:
        """Django's, except that a stored value Python cannot decode (``1e5000``, deep nesting:
        SQL can write one) raises ``PayloadNotDecodable`` instead of being handed out."""
        value = framework.TaskResult.return_value.fget(self)  # type: ignore[attr-defined]
        if isinstance(value, UndecodableJSON):
            raise PayloadNotDecodable(f"The task's stored return value: {value.error}")
        return value

    def refresh(self) -> None:
        self._refresh_from(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._refresh_from(await self.task.get_backend().aget_result(self.id))

    def _refresh_from(self, fresh: Any) -> None:
        for attr in REFRESHED:
            if hasattr(fresh, attr):
                object.__setattr__(self, attr, getattr(fresh, attr))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PgJobsTaskContext(_TaskContext):  # type: ignore[misc]
    """What a ``takes_context=True`` task gets: Django's context (``task_result``, ``attempt``:
    the attempt running now, 1 for the first) plus ``metadata``, a dict to change while running
    and save with :meth:`save_metadata`, :meth:`report_progress`, and whether to stop early:
    :meth:`is_cancelled` and :attr:`stopping`."""

    lease: Token | None = None
    database: str = "default"
    progress: ProgressReporter | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = self.task_result.metadata  # type: ignore[attr-defined]
        return metadata

    def save_metadata(self) -> bool:
        """Write ``metadata`` to the job now, fenced to this attempt; False (and nothing
        written) once the attempt no longer holds its job (it was cancelled or rescued)."""
        if self.lease is None:
            return False
        text = validation.dump_metadata(self.metadata, "task metadata")
        with connections[self.database].cursor() as cur:
            return lease.save_metadata(cur, token=self.lease, metadata=text)

    async def asave_metadata(self) -> bool:
        return await sync_to_async(self.save_metadata, thread_sensitive=True)()

    def report_progress(self, progress: float, message: str | None = None) -> bool:
        """The job's progress, 0..100, shown in the admin and as ``metadata["progress"]`` of
        the task's result; best effort (never raises), written by the worker shortly after.
        False (and nothing written) once the attempt no longer owns its job."""
        if self.progress is None:
            return True
        return self.progress(progress, message)

    def is_cancelled(self) -> bool:
        """True once this attempt no longer owns its job: the task was cancelled, or its lease
        expired and it was taken over (``django_pgjobs.current_attempt()`` says the same)."""
        return self.progress is not None and self.progress.is_cancelled()

    @property
    def stopping(self) -> bool:
        """True once the worker was asked to stop (SIGTERM): ``raise Snooze(0)`` hands the task
        back to run again at once elsewhere, its attempt not counted."""
        return self.progress is not None and self.progress.stopping
