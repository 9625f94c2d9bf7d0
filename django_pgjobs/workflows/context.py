"""A running workflow's context: where its code is (the next step index, the checkpoints to
replay), how it stops, and the cursor its bookkeeping runs on.

Control flow that must not be swallowed by a workflow's ``except Exception`` (suspending, losing
the lease, being cancelled) travels as ``BaseException`` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from django.db import DatabaseError

from django_pgjobs.conf import conf
from django_pgjobs.database import in_callers_transaction, queue_database
from django_pgjobs.exceptions import (
    NotInWorkflow,
    WorkflowError,
    WorkflowNonDeterminism,
)
from django_pgjobs.prepared import statement_cursor
from django_pgjobs.queries import Token
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.queries import workflow_steps as steps
from django_pgjobs.workflows import codec

# A durable sleep this close to its end waits in the worker thread instead of suspending.
IN_PROCESS_SLEEP = 1.0


class _ControlFlow(BaseException):
    pass


class _Suspended(_ControlFlow):
    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class _LeaseLost(_ControlFlow):
    """Another worker took the workflow over (this one was presumed dead): stop, write nothing."""


class _Cancelled(_ControlFlow):
    pass


class _BookkeepingFailed(_ControlFlow):
    """One of our own statements failed (the database went away, say), or a step lost its
    database connection. Not the workflow's failure: the runner re-raises the cause so the job
    is retried, and replay resumes it (a step that lost its connection runs again: an atomic
    step's transaction never committed)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass
class WorkflowContext:
    workflow_id: str
    token: Token
    wake_seq: int
    checkpoints: dict[int, runs.Checkpoint]
    next_index: int = 0
    in_step: bool = False
    cancelled: bool = False
    # A non-determinism error fails the workflow even if its code catches it.
    fatal: WorkflowError | None = field(default=None)
    # Set once the workflow must stop (suspended, cancelled, taken over): any step, wait or
    # send its code still reaches on the way out (a ``finally``, an ``except BaseException``)
    # raises this again instead of running.
    stopped: _ControlFlow | None = field(default=None)

    def halt(self, exc: _ControlFlow) -> NoReturn:
        self.stopped = exc
        raise exc

    def take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    def replay(self, index: int, name: str) -> runs.Checkpoint | None:
        """The checkpoint at ``index``, checked against the step being called there now."""
        found = self.checkpoints.get(index)
        if found is not None and found.name != name:
            self.fatal = WorkflowNonDeterminism(
                f"Workflow {self.workflow_id!r} called {name!r} as step {index}, but its "
                f"recorded history has {found.name!r} there. A workflow must call the same steps "
                "in the same order on every execution: its code changed under a running "
                "workflow, or it branches on something other than its inputs and step results."
            )
            raise self.fatal
        return found

    def begin_call(self, name: str, what: str) -> tuple[int, runs.Checkpoint | None]:
        """Start one of the checkpointed built-ins (a child start, send, set_event): stop if the
        workflow must, refuse inside atomic(), and take the next index with its checkpoint."""
        self.check_running()
        check_autocommit(what)
        index = self.take_index()
        return index, self.replay(index, name)

    def check_running(self) -> None:
        """Called before anything that runs or records: stop if the workflow must stop."""
        if self.stopped is not None:
            raise self.stopped
        if self.cancelled:
            self.halt(_Cancelled())

    def step_row(self, index: int, name: str) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id, "index": index, "name": name}

    def after_write(self, write: steps.StepWrite) -> None:
        """Act on what a checkpoint write saw: another worker holds the job (stop now), or the
        workflow was cancelled (stop at the next step, at no extra round trip)."""
        if not write.held:
            self.halt(_LeaseLost())
        if write.workflow_status == "cancelled":
            self.cancelled = True

    def record(
        self,
        index: int,
        name: str,
        *,
        status: str,
        started_at: datetime,
        attempts: int = 1,
        output: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> Any:
        """Write a checkpoint; returns the output as PostgreSQL stored it (jsonb normalises key
        order and numbers), which is what every replay will read."""
        with bookkeeping() as cur:
            recorded = steps.record_step(
                cur,
                token=self.token,
                step={
                    **self.step_row(index, name),
                    "status": status,
                    "output": output,
                    "error": None if error is None else codec.encode(error, "error"),
                    "attempts": attempts,
                    "started_at": started_at,
                },
            )
        self.after_write(recorded)
        return recorded.output

    def suspend(self, wake_at: datetime | None) -> None:
        """Give the job back until ``wake_at`` (or an earlier wake-up); never returns."""
        with bookkeeping() as cur:
            suspension = runs.suspend(
                cur,
                workflow_id=self.workflow_id,
                token=self.token,
                wake_seq=self.wake_seq,
                wake_at=wake_at,
            )
            if not suspension.held:
                if reads.status_of(cur, self.workflow_id) == "cancelled":
                    self.halt(_Cancelled())
                self.halt(_LeaseLost())
        self.halt(_Suspended(suspension.due_in))


_current: ContextVar[WorkflowContext | None] = ContextVar("pgjobs_workflow", default=None)


def current() -> WorkflowContext | None:
    return _current.get()


def in_workflow_body() -> bool:
    ctx = _current.get()
    return ctx is not None and not ctx.in_step


def require_context(what: str) -> WorkflowContext:
    ctx = _current.get()
    if ctx is None:
        raise NotInWorkflow(
            f"{what}() can only be called inside a workflow: in the body of a @workflow "
            "function, started with start_workflow() and run by a worker. From other code, "
            "reach a workflow by its id: send(workflow_id, ...), get_event(workflow_id, key), "
            "WorkflowHandle(workflow_id).get_result()."
        )
    if ctx.in_step:
        raise NotInWorkflow(f"{what}() cannot be called inside a step; call it from the workflow.")
    ctx.check_running()
    return ctx


def cursor(using: str | None = None) -> Any:
    """Our statements for workflows run on Django's connection (an atomic step's checkpoint
    commits with its writes), prepared on a kept one: a checkpoint is the same statement."""
    return statement_cursor(queue_database(using))


@contextmanager
def bookkeeping() -> Iterator[Any]:
    """A cursor for our statements made on behalf of running workflow code: their database
    errors travel past the workflow's own ``except`` clauses to the runner."""
    try:
        with cursor() as cur:
            yield cur
    except DatabaseError as exc:
        raise _stop_for(exc) from exc


def _stop_for(exc: Exception) -> _BookkeepingFailed:
    """What stops the workflow when the database failed under it: not its failure (see
    :class:`_BookkeepingFailed`); every step or wait its code still reaches stops too."""
    failed = _BookkeepingFailed(exc)
    if (ctx := _current.get()) is not None:
        ctx.stopped = failed
    return failed


def check_autocommit(what: str) -> None:
    if in_callers_transaction(conf.DATABASE):
        raise WorkflowError(
            f"{what} was called inside transaction.atomic() in a workflow: its checkpoint would "
            "only be durable when that transaction commits. Use @step(atomic=True) for a step "
            "whose writes must commit with its checkpoint."
        )
