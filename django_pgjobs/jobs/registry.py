"""Job name -> handler, with the options ``@job`` gives it."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, overload

from django_pgjobs.exceptions import HandlerAlreadyRegistered, InvalidJobError
from django_pgjobs.jobs import validation

HandlerFunc = Callable[..., Any]
# A handler's partition key: one for all its jobs, or computed from each job's payload at
# enqueue (None from it: that job has no partition).
PartitionKey = str | Callable[[Any], "str | None"]


@dataclass(frozen=True)
class JobHandler:
    """A registered handler. Calling it calls the function directly (handy in tests)."""

    name: str
    func: HandlerFunc
    max_attempts: int | None = None
    retry_delay: float | None = None
    queue: str | None = None
    priority: int | None = None
    # Seconds an attempt may run before it fails with a timeout (None: the queue's, then
    # PGJOBS["TIMEOUT"]); an enqueue's own timeout comes first.
    timeout: float | None = None
    # The partition key of the handler's jobs when the enqueue gives none (see PartitionKey).
    partition_key: PartitionKey | None = None
    # What is wrong with a payload for this handler (None: nothing), asked before one is
    # enqueued or scheduled: a Django task's job takes {"args", "kwargs"} only.
    payload_problem: Callable[[Any], str | None] | None = None

    def check_payload(self, payload: Any) -> None:
        """Raise InvalidJobError if this handler can never run ``payload``."""
        problem = None if self.payload_problem is None else self.payload_problem(payload)
        if problem is not None:
            raise InvalidJobError(f"Job {self.name!r}: {problem}")

    def partition_key_for(self, payload: Any) -> str | None:
        """The partition key of a job of ``payload``: the handler's str, or its callable's
        answer. Raises InvalidJobError naming the job when the callable raises or answers
        something other than a str or None (the caller then writes nothing)."""
        key: Any = self.partition_key
        if callable(key):
            try:
                key = key(payload)
            except Exception as exc:
                raise InvalidJobError(
                    f"Job {self.name!r}: its partition_key callable raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        try:
            return validation.check_partition_key(key)
        except InvalidJobError as exc:
            raise InvalidJobError(f"Job {self.name!r}: {exc}") from None

    # Cached: asked for every job a worker runs, and inspect.signature is not cheap.
    @functools.cached_property
    def wants_progress(self) -> bool:
        """True when the function takes a second positional parameter for report_progress."""
        return _positional_arity(self.func) >= 2

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    # The handle-with-verbs shape of Django's Task.enqueue(): enqueueing needs the registry for
    # a job's defaults, so these import it when called (an import circle we keep on purpose).
    def enqueue(self, payload: Any = None, **options: Any) -> uuid.UUID:
        from django_pgjobs.jobs.producer import enqueue

        return enqueue(self.name, payload, **options)

    def enqueue_on_commit(self, payload: Any = None, **options: Any) -> uuid.UUID:
        from django_pgjobs.jobs.producer import enqueue_on_commit

        return enqueue_on_commit(self.name, payload, **options)

    def enqueue_many(self, payloads: Sequence[Any], **options: Any) -> list[uuid.UUID]:
        from django_pgjobs.jobs.producer import enqueue_many

        return enqueue_many(self.name, payloads, **options)


def _positional_arity(func: HandlerFunc) -> int:
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}
        self._lock = threading.Lock()

    def add(self, handler: JobHandler) -> JobHandler:
        with self._lock:
            existing = self._handlers.get(handler.name)
            # Re-importing a module registers the same function again; only a different
            # function under the same name is a mistake.
            if existing is not None and not same_function(existing.func, handler.func):
                raise HandlerAlreadyRegistered(
                    f"Job name {handler.name!r} is already registered to "
                    f"{qualname(existing.func)}; cannot register {qualname(handler.func)}."
                )
            self._handlers[handler.name] = handler
        return handler

    def get(self, name: str) -> JobHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def remove(self, name: str) -> None:
        with self._lock:
            self._handlers.pop(name, None)


def qualname(func: HandlerFunc) -> str:
    """A function's dotted path: the default name of a job or workflow, and how a re-import is
    told apart from a second function under the same name."""
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def same_function(registered: HandlerFunc, given: HandlerFunc) -> bool:
    """Is ``given`` the handler registered already, or that function imported again (a module
    reloaded)? Told by the dotted path; a lambda or a function made inside another has no path of
    its own (two lambdas of a module share ``<lambda>``, a factory's functions its
    ``make.<locals>.handler``), so only the very same object is the same."""
    if registered is given:
        return True
    path = qualname(given)
    return path == qualname(registered) and "<" not in path


registry = Registry()


def register(
    name: str,
    func: HandlerFunc,
    *,
    max_attempts: int | None = None,
    retry_delay: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: PartitionKey | None = None,
    payload_problem: Callable[[Any], str | None] | None = None,
) -> JobHandler:
    """Register ``func`` as the handler of jobs named ``name``.

    The options become the defaults of ``enqueue(name, ...)``; ``retry_delay`` is the base of this
    job's backoff. ``partition_key`` is a str, or a callable ``payload -> str | None`` asked at
    each enqueue that gives no key. Invalid options raise :class:`InvalidJobError` at import
    time, not at run time. Names starting with ``pgjobs.`` are the library's own.
    """
    validation.check_job_name(name)
    handler = _handler(
        name,
        func,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        queue=queue,
        priority=priority,
        timeout=timeout,
        partition_key=partition_key,
    )
    if payload_problem is not None:
        handler = dataclasses.replace(handler, payload_problem=payload_problem)
    return registry.add(handler)


def register_library_job(name: str, func: HandlerFunc) -> JobHandler:
    """Register one of django-pgjobs's own handlers (the workflow runner) under its reserved
    ``pgjobs.`` name, which :func:`register` refuses."""
    if not validation.check_name(name).startswith(validation.RESERVED_PREFIX):
        raise InvalidJobError(f"{name!r} is not a reserved job name.")
    return registry.add(_handler(name, func))


def _handler(name: str, func: HandlerFunc, **options: Any) -> JobHandler:
    """The handler, its signature and options checked; errors name the job."""
    if not callable(func):
        raise InvalidJobError(f"The handler of {name!r} is not callable: {func!r}.")
    _check_signature(name, func)
    checks = {
        "max_attempts": validation.check_max_attempts,
        "retry_delay": validation.check_retry_delay,
        "queue": lambda v: validation.check_name(v, "queue name"),
        "priority": validation.check_priority,
        "timeout": validation.check_timeout,
        "partition_key": _check_partition_key_option,
    }
    checked: dict[str, Any] = {}
    for option, value in options.items():
        try:
            checked[option] = None if value is None else checks[option](value)
        except InvalidJobError as exc:
            raise InvalidJobError(f"Job {name!r}: {exc}") from None
    return JobHandler(name=name, func=func, **checked)


def _check_partition_key_option(value: object) -> PartitionKey | None:
    """A callable is asked at each enqueue (JobHandler.partition_key_for); a str is checked now."""
    if callable(value):
        return value
    return validation.check_partition_key(value)


def _check_signature(name: str, func: HandlerFunc) -> None:
    """A worker calls ``func(payload)``, or ``func(payload, report_progress)`` when it takes a
    second positional parameter: a signature needing anything else would fail every attempt."""
    params = list(inspect.signature(func).parameters.values())
    if _positional_arity(func) < 1:
        raise InvalidJobError(
            f"The handler of {name!r} must accept the payload as its first positional parameter."
        )
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in params if p.kind in positional and p.default is p.empty]
    keyword_only = [
        p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty
    ]
    if len(required) > 2 or keyword_only:
        needed = ", ".join(required + (["*", *keyword_only] if keyword_only else []))
        raise InvalidJobError(
            f"The handler of {name!r} needs ({needed}), but a worker calls it with the payload "
            "and, if it takes a second parameter, a report_progress callable: give the other "
            "parameters defaults, or read them from the payload."
        )


@overload
def job(name: HandlerFunc, /) -> JobHandler: ...
@overload
def job(
    name: str | None = None,
    /,
    *,
    max_attempts: int | None = None,
    retry_delay: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: PartitionKey | None = None,
) -> Callable[[HandlerFunc], JobHandler]: ...
def job(
    name: str | HandlerFunc | None = None,
    /,
    *,
    max_attempts: int | None = None,
    retry_delay: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    partition_key: PartitionKey | None = None,
) -> JobHandler | Callable[[HandlerFunc], JobHandler]:
    """Register the decorated function as a job handler.

    ``@job("send-welcome-email", max_attempts=5)``; bare ``@job`` names the job after the
    function's dotted path. ``partition_key`` puts every job of the handler in one partition
    (a str) or computes each job's from its payload (``lambda p: f"account:{p['account']}"``).
    The result is a :class:`JobHandler`: call it like the function, or ``.enqueue(payload)``
    it.
    """
    if callable(name):
        return register(qualname(name), name)

    def decorate(func: HandlerFunc) -> JobHandler:
        return register(
            name if name is not None else qualname(func),
            func,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            queue=queue,
            priority=priority,
            timeout=timeout,
            partition_key=partition_key,
        )

    return decorate
