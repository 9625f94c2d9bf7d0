"""Running a task in the worker: each task is registered as the handler of jobs named after its
module path, and its handler is a :class:`TaskRunner`.

For each attempt, in the handler thread: read the task's state (one read by primary key),
send ``task_started``, call the function with the job's arguments (and a context), keep its
return value as JSON, and on failure decide the retry (the task's ``backoff``). Once the
worker has committed the outcome, ``task_finished`` is sent from the worker's after-write
thread (:mod:`django_pgjobs.worker.after_write`), so a receiver that reads the result sees it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import (
    Cancel,
    Discard,
    InvalidJobError,
    PayloadNotSerializable,
    ResultNotStorable,
    Retry,
    Snooze,
)
from django_pgjobs.jobs import registry as jobs_registry
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.context import AttemptNotes, ProgressReporter, current_job, current_notes
from django_pgjobs.jobs.error_text import describe_error
from django_pgjobs.jobs.retry import backoff_delay
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTaskContext, PgJobsTaskResult
from django_pgjobs.tasks.framework import TaskError, TaskResultStatus, signals
from django_pgjobs.tasks.results import task_arguments, traceback_of
from django_pgjobs.worker.attempt import class_path

if TYPE_CHECKING:
    from django_pgjobs.backend import PgJobsBackend

logger = logging.getLogger("django_pgjobs.tasks")


class TaskPayloadError(InvalidJobError):
    """A task's job holds a payload that is not ``{"args": [...], "kwargs": {...}}`` (written by
    SQL or by hand): no attempt can run it, so it fails at once, without retries."""


class TaskRunner:
    """The job handler of one task. Named like the task's function, so a module imported
    twice registers the same handler again rather than clashing with itself."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.__module__ = task.func.__module__
        self.__qualname__ = task.func.__qualname__

    def payload_problem(self, payload: Any) -> str | None:
        """Why a job of this task could never run ``payload`` (one enqueued by name, from the
        command line or a schedule), or None."""
        if task_arguments(payload) is not None:
            return None
        return (
            f'a task\'s payload is {{"args": [...], "kwargs": {{...}}}} (either may be left '
            f"out), not {payload!r:.200}."
        )

    def __call__(self, payload: Any, report_progress: ProgressReporter) -> None:
        job, notes = current_job.get(), current_notes.get()
        if job is None or notes is None:
            raise RuntimeError("A task's job handler runs only in a worker.")
        backend = _backend(self.task, payload)
        running = backend.running_result(self.task, job)
        try:
            args, kwargs = _arguments(self.task, payload, notes)
            send_signal(signals.task_started, backend, running)
            context = PgJobsTaskContext(
                task_result=running,
                lease=job.token,
                database=backend.database,
                progress=report_progress,
            )
            if self.task.takes_context:
                value = self.task.call(context, *args, **kwargs)
            else:
                value = self.task.call(*args, **kwargs)
            notes.result = _stored(self.task, value, notes)
        except Snooze:
            raise  # no outcome: the task runs again later as if this attempt had not started
        except BaseException as exc:
            error = TaskError(
                exception_class_path=class_path(exc) or "builtins.BaseException",
                traceback=traceback_of(describe_error(exc)),
            )
            failing = dataclasses.replace(running, errors=[*running.errors, error])
            _decide_retry(notes, self.task, backend, job, exc, failing)
            notes.on_written = functools.partial(_finished, backend, failing, exc=exc)
            raise
        notes.on_written = functools.partial(_finished, backend, running, value=value)


def register_task(
    task: Any,
    *,
    max_attempts: int | None = None,
    timeout: float | None = None,
    backoff: Any = None,
) -> None:
    """Make ``task`` runnable by workers: the handler of jobs named ``task.module_path``. The
    first registration of a path wins (copies made by ``using()`` share it); its options (the
    task's ``max_attempts`` and ``timeout``, else the backend's ``MAX_ATTEMPTS`` and ``TIMEOUT``
    given here) are the defaults of a schedule or ``enqueue()`` naming the task, and so is its
    ``partition_key``.

    A backoff in seconds (the task's, else the backend's ``BACKOFF`` given here) is also the
    handler's ``retry_delay``: the worker retries an attempt that timed out by it, since no
    task code runs to decide (a callable backoff cannot be asked: the worker's policy applies)."""
    name = task.module_path
    existing = jobs_registry.registry.get(name)
    runner = None if existing is None else existing.func
    if isinstance(runner, TaskRunner) and runner.task.func is task.func:
        return
    runner = TaskRunner(task)
    if getattr(task, "backoff", None) is not None:
        backoff = task.backoff
    jobs_registry.register(
        name,
        runner,
        max_attempts=getattr(task, "max_attempts", None) or max_attempts,
        queue=task.queue_name,
        priority=task.priority,
        timeout=getattr(task, "timeout", None) or timeout,
        retry_delay=None if backoff is None or callable(backoff) else backoff,
        partition_key=_payload_partition_key(getattr(task, "partition_key", None)),
        payload_problem=runner.payload_problem,
    )


def _payload_partition_key(key: Any) -> Any:
    """The task's partition key as a job handler's: a callable over the task's arguments becomes
    one over the job's payload ({"args", "kwargs"}), for a schedule's ticks and an
    ``enqueue()`` by the task's name. (The backend asks the task's own callable itself.)"""
    if not callable(key):
        return key

    def from_payload(payload: Any) -> Any:
        arguments = task_arguments(payload)
        if arguments is None:
            raise ValueError('the payload is not {"args": [...], "kwargs": {...}}')
        return key(*arguments[0], **arguments[1])

    return from_payload


def _backend(task: Any, payload: Any) -> PgJobsBackend:
    """The backend that enqueued the job (its payload names it), else the task's own."""
    alias = payload.get("backend") if isinstance(payload, dict) else None
    if not isinstance(alias, str):
        alias = task.backend
    backend: Any = framework.task_backends[alias]
    if not hasattr(backend, "running_result"):
        raise framework.InvalidTask(
            f"Task {task.module_path} has a job in django-pgjobs, but its backend {alias!r} "
            f"here is {type(backend).__name__}: TASKS must name PgJobsBackend in the worker as "
            "where it was enqueued."
        )
    found: PgJobsBackend = backend
    return found


def _arguments(task: Any, payload: Any, notes: AttemptNotes) -> tuple[list[Any], dict[str, Any]]:
    arguments = task_arguments(payload)
    if arguments is None:
        notes.give_up = True  # no attempt can run it
        raise TaskPayloadError(
            f"The payload of task {task.module_path} must be "
            f'{{"args": [...], "kwargs": {{...}}}}, not {payload!r:.200}.'
        )
    return arguments


def _stored(task: Any, value: Any, notes: AttemptNotes) -> str | None:
    """The return value as the JSON text kept on the job (None for None)."""
    what = f"The return value of task {task.module_path}"
    try:
        normal = framework.normalize_json(value)
        if normal is None:
            return None
        text = validation.dump_payload(normal, what)
        validation.check_kept_size(len(text.encode("utf-8")), what)  # beside its batch's others
        return text
    except (TypeError, ValueError, PayloadNotSerializable, RecursionError) as exc:
        notes.give_up = True  # the same code returns the same value: no retry helps
        raise ResultNotStorable(f"{what} cannot be stored as JSON: {exc}") from exc


def _decide_retry(
    notes: AttemptNotes,
    task: Any,
    backend: PgJobsBackend,
    job: ClaimedJob,
    exc: BaseException,
    failing: PgJobsTaskResult,
) -> None:
    """Set the attempt's retry: the task's ``backoff`` (or the backend's ``BACKOFF``) as the
    base of an exponential backoff, or a callable's answer; None from it: no retry. Without
    either, the worker's retry policy. Jittered by ``RETRY_JITTER`` and capped either way. A
    task that raised Discard or Cancel, or Retry with a delay, has decided already."""
    if notes.give_up or job.attempt >= job.max_attempts or _decided(exc):
        return
    backoff = getattr(task, "backoff", None)
    if backoff is None:
        backoff = backend.backoff
    if backoff is None:
        return
    if callable(backoff):
        try:
            answer = backoff(exc, failing)
        except Exception:
            logger.exception("The backoff of task %s raised; using the default", task.module_path)
            return
        if answer is None:
            notes.give_up = True
            return
        try:
            seconds = validation.check_retry_delay(answer)
        except InvalidJobError as error:
            logger.error(
                "The backoff of task %s returned %r, not seconds >= 0, a timedelta or None (%s); "
                "the default retry delay applies",
                task.module_path, answer, str(error).replace("retry_delay", "backoff"),
            )  # fmt: skip
            return
        notes.retry_in = backoff_delay(
            1, base=seconds, cap=conf.RETRY_DELAY_MAX, jitter=conf.RETRY_JITTER
        )
        return
    notes.retry_in = backoff_delay(
        job.attempt,
        base=validation.check_retry_delay(backoff),
        cap=conf.RETRY_DELAY_MAX,
        jitter=conf.RETRY_JITTER,
    )


def _decided(exc: BaseException) -> bool:
    return isinstance(exc, Discard | Cancel) or (isinstance(exc, Retry) and exc.delay is not None)


_FINISHED_STATUS = {
    "completed": TaskResultStatus.SUCCESSFUL,
    "retried": TaskResultStatus.READY,
    "buried": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,  # the task raised Cancel
}


def _finished(
    backend: PgJobsBackend,
    result: PgJobsTaskResult,
    outcome: str,
    *,
    exc: BaseException | None = None,
    value: Any = None,
) -> None:
    """Send ``task_finished`` for a committed outcome: SUCCESSFUL, FAILED (no attempts left, no
    retry wanted, or cancelled by the task) or READY (it will be retried), in the after-write
    thread."""
    status = _FINISHED_STATUS[outcome]
    final = dataclasses.replace(
        result,
        status=status,
        finished_at=None if status is TaskResultStatus.READY else timezone.now(),
    )
    if status is TaskResultStatus.SUCCESSFUL:
        object.__setattr__(final, "_return_value", framework.normalize_json(value))
    if exc is None:
        send_signal(signals.task_finished, backend, final)
        return
    # Django's receiver logs a failure with sys.exc_info(), as its own backends send it from
    # inside the handler of the task's exception: raise it again to give receivers the same.
    traceback = exc.__traceback__
    try:
        raise exc
    except BaseException:
        send_signal(signals.task_finished, backend, final)
    finally:
        exc.__traceback__ = traceback


def send_signal(signal: Any, backend: PgJobsBackend, result: PgJobsTaskResult) -> None:
    """Send a framework signal; a receiver that raises is logged and never fails the task or
    stops the others."""
    for receiver, response in signal.send_robust(sender=type(backend), task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "A receiver of %s for task %s raised: %r", receiver, result.id, response,
                exc_info=response,
            )  # fmt: skip
