"""Running a workflow: replaying checkpoints, recording steps, suspending, finishing.

A workflow runs as a job. Its runner loads the workflow and all its checkpoints in one round trip,
then calls the workflow function; every step call takes the next step index, and either returns
the checkpoint recorded at that index or runs the step and records one (one round trip). So a
workflow re-executed after a crash passes through its finished steps without running them and
carries on from the first step that has no checkpoint.

Control flow that must not be swallowed by a workflow's ``except Exception`` (suspending, losing
the lease, being cancelled) travels as ``BaseException`` subclasses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from django.db import DatabaseError, transaction
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.database import connection_lost, in_callers_transaction
from django_pgjobs.exceptions import (
    NotInWorkflow,
    PayloadNotDecodable,
    WorkflowError,
    WorkflowNonDeterminism,
    WorkflowSerializationError,
)
from django_pgjobs.jobs.context import JobHandedBack, current_job
from django_pgjobs.prepared import statement_cursor
from django_pgjobs.queries import ClaimedJob, Token
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.queries import workflow_steps as steps
from django_pgjobs.tracing import workflows as tracing
from django_pgjobs.workflows import codec, lifecycle
from django_pgjobs.workflows.registry import workflows

if TYPE_CHECKING:
    from django_pgjobs.workflows.definitions import StepDefinition

logger = logging.getLogger("django_pgjobs.workflows")

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
    return statement_cursor(using or conf.DATABASE)


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


def call_step(definition: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = _current.get()
    if ctx is None or ctx.in_step:
        # Outside a workflow, or a step calling a step: a plain call.
        return definition.func(*args, **kwargs)
    ctx.check_running()
    index = ctx.take_index()
    recorded = ctx.replay(index, definition.name)
    if recorded is not None:
        if recorded.status == "failed":
            raise codec.rebuild(recorded.error)
        return recorded.output
    check_autocommit(f"Step {definition.name!r}")
    codec.encode({"args": list(args), "kwargs": kwargs}, f"The inputs of step {definition.name!r}")
    started_at, attempt = timezone.now(), 0
    with tracing.step_span(ctx.workflow_id, index, definition.name):
        while True:
            attempt += 1
            try:
                return _attempt_step(ctx, definition, index, args, kwargs, started_at, attempt)
            except (_ControlFlow, WorkflowSerializationError):
                raise
            except Exception as exc:
                if connection_lost(exc):
                    # The worker's problem, not the step's: nothing the step did committed (an
                    # atomic step's transaction died with the connection), so recording a
                    # failure now, on a new connection, would fail the workflow for good.
                    raise _stop_for(exc) from exc
                delay = definition.retry_in(attempt, exc)
                if delay is not None:
                    logger.warning(
                        "Step %s of workflow %s failed (attempt %s/%s, %s); retrying in %.1fs",
                        definition.name, ctx.workflow_id, attempt, definition.max_attempts,
                        type(exc).__name__, delay,
                    )  # fmt: skip
                    time.sleep(delay)
                    continue
                ctx.record(
                    index,
                    definition.name,
                    status="failed",
                    started_at=started_at,
                    attempts=attempt,
                    error=codec.describe(exc),
                )
                raise


def _attempt_step(
    ctx: WorkflowContext,
    definition: StepDefinition,
    index: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    started_at: datetime,
    attempt: int,
) -> Any:
    what = f"The return value of step {definition.name!r}"
    ctx.in_step = True
    try:
        if definition.atomic:
            with transaction.atomic(using=conf.DATABASE):
                result = definition.func(*args, **kwargs)
                text = codec.encode(result, what)
                ctx.in_step = False
                stored = ctx.record(
                    index, definition.name, status="completed", started_at=started_at,
                    attempts=attempt, output=text,
                )  # fmt: skip
            return stored
        result = definition.func(*args, **kwargs)
    finally:
        ctx.in_step = False
    try:
        text = codec.encode(result, what)
    except WorkflowSerializationError as exc:
        # The step ran; record the failure so a replay raises it again instead of re-running.
        ctx.record(
            index, definition.name, status="failed", started_at=started_at, attempts=attempt,
            error=codec.describe(exc),
        )  # fmt: skip
        raise
    return ctx.record(
        index, definition.name, status="completed", started_at=started_at, attempts=attempt,
        output=text,
    )  # fmt: skip


def _load_own_workflow(payload: Any, job: ClaimedJob) -> tuple[str, runs.LoadedWorkflow | None]:
    """The workflow this job runs, loaded; None when there is nothing to run. Raises for a job
    that is not the workflow's own (a stray row under a workflow's name, written by SQL): it
    fails at once, before any step runs, and goes to the dead letters."""
    found = payload.get("workflow_id") if isinstance(payload, dict) else None
    workflow_id = found if isinstance(found, str) else None
    with cursor() as cur:
        loaded = None
        if workflow_id is not None:
            loaded = runs.load(cur, workflow_id=workflow_id, token=job.token)
        if loaded is None and runs.refuse_stray_job(cur, workflow_id=workflow_id, token=job.token):
            raise WorkflowError(
                f"Job {job.id} ({job.job_name}) is not the job of workflow {workflow_id!r}: only "
                "the job keyed 'pgjobs.workflow:<id>' runs a workflow. It was refused without "
                "running a step and goes to the dead letters."
            )
        if loaded is None or workflow_id is None:
            logger.info(
                "Workflow %s has nothing to run (status %s)",
                workflow_id, reads.status_of(cur, str(workflow_id)),
            )  # fmt: skip
            return str(workflow_id), None
    return workflow_id, loaded


def run_workflow_job(payload: Any) -> None:
    """The handler of ``pgjobs.workflow:<version>`` jobs: run (or resume) one workflow."""
    if (job := current_job.get()) is None:
        raise WorkflowError("Workflow jobs can only be run by a worker.")
    workflow_id, loaded = _load_own_workflow(payload, job)
    if loaded is None:
        return
    definition = workflows.get(loaded.name)
    if definition is None:
        # The job is retried and, if this never changes, the workflow ends dead.
        raise LookupError(f"No workflow named {loaded.name!r} is registered in this process.")
    ctx = WorkflowContext(workflow_id, job.token, loaded.wake_seq, loaded.checkpoints)
    status, output, error = "completed", None, None
    why: str | None = None  # the failure, for workflow_finished
    reset = _current.set(ctx)
    try:
        with tracing.workflow_span(workflow_id, loaded.name):
            try:
                if (undecodable := loaded.undecodable()) is not None:
                    raise PayloadNotDecodable(undecodable)
                result = definition.func(
                    *loaded.input.get("args", []), **loaded.input.get("kwargs", {})
                )
            finally:
                # The workflow's code may have swallowed how it had to stop; it still stops so.
                if ctx.stopped is not None:
                    raise ctx.stopped
            if ctx.fatal is not None:
                raise ctx.fatal
            output = codec.encode(result, f"The return value of workflow {loaded.name!r}")
    except _Suspended as suspended:
        raise JobHandedBack(suspended.delay) from None
    except _Cancelled:
        logger.info("Workflow %s stopped: it was cancelled", workflow_id)
        return
    except _LeaseLost:
        logger.warning("Workflow %s stopped: another worker took it over", workflow_id)
        return
    except _BookkeepingFailed as failed:
        raise failed.cause from None
    except BaseException as exc:
        if ctx.fatal is None and connection_lost(exc):
            raise  # the workflow's own code lost its connection: retry the job, as above
        failure = ctx.fatal or exc
        status, error = "failed", codec.encode(codec.describe(failure), "error")
        why = f"{type(failure).__name__}: {failure}"
        logger.info("Workflow %s failed: %s", workflow_id, type(failure).__name__)
    finally:
        _current.reset(reset)
    with cursor() as cur:
        if not runs.finish(
            cur, workflow_id=workflow_id, token=job.token, status=status, output=output,
            error=error,
        ):  # fmt: skip
            logger.warning("Result of workflow %s dropped: taken over or cancelled", workflow_id)
            return
    lifecycle.finish_after_write(workflow_id, loaded.name, status, why)
