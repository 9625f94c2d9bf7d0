"""``@workflow`` and ``@step``: what a workflow is, and the code version workflows are pinned to."""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import Discard, InvalidJobError, Retry
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.registry import qualname
from django_pgjobs.jobs.retry import backoff_delay
from django_pgjobs.workflows import context, runtime, steps
from django_pgjobs.workflows.registry import JOB_PREFIX, workflows

if TYPE_CHECKING:
    from django_pgjobs.workflows.handles import WorkflowHandle

DEFAULT_MAX_RECOVERY_ATTEMPTS = 10

Func = Callable[..., Any]


class WorkflowDefinition:
    """A registered workflow. ``.start(...)`` / ``.run(...)`` start it durably.

    Called directly it runs as a child workflow when inside a workflow (started and awaited,
    both checkpointed), and as the plain function elsewhere (handy in unit tests).
    """

    def __init__(
        self,
        name: str,
        func: Func,
        *,
        max_recovery_attempts: int,
        queue: str | None,
        priority: int | None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.name = name
        self.func = func
        self.max_recovery_attempts = max_recovery_attempts
        self.queue = queue
        self.priority = priority

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if context.in_workflow_body():
            return self.start(*args, **kwargs).get_result()
        return self.func(*args, **kwargs)

    # start() and run() are the handle-with-verbs shape of Django's Task.enqueue: the API they
    # call needs this class, so they import it when called (the one import circle we keep).
    def start(self, *args: Any, **kwargs: Any) -> WorkflowHandle:
        from django_pgjobs.workflows.api import start_workflow

        return start_workflow(self, *args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        from django_pgjobs.workflows.api import run_workflow

        return run_workflow(self, *args, **kwargs)


class StepDefinition:
    """A step: called inside a workflow, its result is checkpointed; elsewhere it is the
    plain function."""

    def __init__(
        self,
        name: str,
        func: Func,
        *,
        retries_allowed: bool,
        max_attempts: int,
        interval_seconds: float,
        backoff_rate: float,
        atomic: bool,
    ) -> None:
        functools.update_wrapper(self, func)
        self.name = name
        self.func = func
        self.retries_allowed = retries_allowed
        self.max_attempts = max_attempts
        self.interval_seconds = interval_seconds
        self.backoff_rate = backoff_rate
        self.atomic = atomic

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retrying failed ``attempt`` in place: capped at
        ``RETRY_DELAY_MAX`` like a job's retry delay, since the wait holds a handler thread."""
        return backoff_delay(
            attempt, base=self.interval_seconds, rate=self.backoff_rate, cap=conf.RETRY_DELAY_MAX
        )

    def retry_in(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before retrying failed ``attempt`` in place, None for no retry
        (retries not allowed, attempts spent, or the step raised ``Discard``). A ``Retry`` with
        a delay chooses it, capped the same way."""
        if not self.retries_allowed or attempt >= self.max_attempts or isinstance(exc, Discard):
            return None
        if isinstance(exc, Retry) and exc.delay is not None:
            return min(exc.delay, conf.RETRY_DELAY_MAX)
        return self.retry_delay(attempt)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return steps.call_step(self, args, kwargs)


@overload
def workflow(name: Func, /) -> WorkflowDefinition: ...
@overload
def workflow(
    name: str | None = None,
    /,
    *,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    queue: str | None = None,
    priority: int | None = None,
) -> Callable[[Func], WorkflowDefinition]: ...
def workflow(
    name: str | Func | None = None,
    /,
    *,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    queue: str | None = None,
    priority: int | None = None,
) -> WorkflowDefinition | Callable[[Func], WorkflowDefinition]:
    """Register a module-level function as a durable workflow.

    ``max_recovery_attempts``: how many times the workflow may crash its worker (and be picked
    up again) before it is declared dead and moved to the dead letters.
    """
    if callable(name):
        return workflow()(name)
    if (
        isinstance(max_recovery_attempts, bool)
        or not isinstance(max_recovery_attempts, int)
        # Its job gets max_recovery_attempts + 1 attempts, an integer column.
        or not 0 <= max_recovery_attempts < validation.MAX_INT
    ):
        raise InvalidJobError(
            f"max_recovery_attempts must be an int from 0 to {validation.MAX_INT - 1}; "
            f"got {max_recovery_attempts!r}."
        )

    def decorate(func: Func) -> WorkflowDefinition:
        _check_plain_function(func, "@workflow")
        definition = WorkflowDefinition(
            validation.check_name(name if name is not None else qualname(func), "workflow name"),
            func,
            max_recovery_attempts=max_recovery_attempts,
            queue=None if queue is None else validation.check_name(queue, "queue name"),
            priority=None if priority is None else validation.check_priority(priority),
        )
        return workflows.add(definition)

    return decorate


@overload
def step(name: Func, /) -> StepDefinition: ...
@overload
def step(
    name: str | None = None,
    /,
    *,
    retries_allowed: bool = False,
    max_attempts: int = 3,
    interval_seconds: float = 1.0,
    backoff_rate: float = 2.0,
    atomic: bool = False,
) -> Callable[[Func], StepDefinition]: ...
def step(
    name: str | Func | None = None,
    /,
    *,
    retries_allowed: bool = False,
    max_attempts: int = 3,
    interval_seconds: float = 1.0,
    backoff_rate: float = 2.0,
    atomic: bool = False,
) -> StepDefinition | Callable[[Func], StepDefinition]:
    """Make a function a workflow step: inside a workflow its result (or error) is recorded once
    and replayed on re-execution instead of running again.

    With ``retries_allowed`` a failing step is retried in place up to ``max_attempts`` times,
    waiting ``interval_seconds * backoff_rate ** (attempt - 1)`` in between, at most
    ``RETRY_DELAY_MAX`` (the wait holds a handler thread, like a job's own). ``atomic=True``
    runs the step in ``transaction.atomic()`` on ``PGJOBS["DATABASE"]`` together with its
    checkpoint, so its writes to the queue's database happen exactly once. Its writes to any
    other database are outside that transaction: at least once, as in a plain step.
    """
    if callable(name):
        return step()(name)
    validation.check_max_attempts(max_attempts)
    for label, value in (("interval_seconds", interval_seconds), ("backoff_rate", backoff_rate)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not value >= 0
        ):
            raise InvalidJobError(f"{label} must be a finite number >= 0; got {value!r}.")

    def decorate(func: Func) -> StepDefinition:
        _check_plain_function(func, "@step")
        return StepDefinition(
            validation.check_name(name if name is not None else qualname(func), "step name"),
            func,
            retries_allowed=bool(retries_allowed),
            max_attempts=max_attempts,
            interval_seconds=float(interval_seconds),
            backoff_rate=float(backoff_rate),
            atomic=bool(atomic),
        )

    return decorate


def transaction_step(func: Func) -> StepDefinition:
    """``@step(atomic=True)``: the step's writes to the queue's database (``PGJOBS["DATABASE"]``)
    commit with its checkpoint; writes to another database do not (see :func:`step`)."""
    return step(atomic=True)(func)


def _check_plain_function(func: Func, decorator: str) -> None:
    if not callable(func):
        raise InvalidJobError(f"{decorator} needs a function, not {func!r}.")
    if inspect.iscoroutinefunction(func):
        raise InvalidJobError(
            f"{decorator} does not support async functions yet: {qualname(func)} is async."
        )


@functools.cache
def _derived_version() -> str:
    """A digest of the source of every module that defines a workflow, as loaded at startup."""
    digest = hashlib.sha256()
    for module_name in sorted({d.func.__module__ for d in workflows.all()}):
        digest.update(module_name.encode())
        module = sys.modules.get(module_name)
        try:
            source = inspect.getsource(module) if module is not None else ""
        except (OSError, TypeError):
            source = ""
        digest.update(source.encode())
    return digest.hexdigest()[:12]


def app_version() -> str:
    """The code version new workflows are pinned to: ``PGJOBS["APP_VERSION"]`` (a release id,
    a git SHA) or, by default, a digest of the source of the modules that define workflows."""
    configured = conf.APP_VERSION
    return configured if configured else _derived_version()


def runner_job_name(version: str | None = None) -> str:
    return f"{JOB_PREFIX}{version or app_version()}"


def install() -> None:
    """Register the job handler that runs workflows of this process's version.

    Called once the apps are ready and every ``workflows`` and ``jobs`` module is imported, so
    the derived version covers them all. A worker claims only workflows of its own version.
    """
    from django_pgjobs.jobs.registry import register_library_job, registry

    name = runner_job_name()
    if registry.get(name) is None:
        register_library_job(name, runtime.run_workflow_job)
