"""The workflow API: start, wait for and inspect workflows; messages and events (an operator's
cancel, resume and fork are :mod:`.control`'s).

Everything here works both from ordinary code (a view, a shell, a job) and from inside a
workflow. Inside a workflow the calls that have effects or read changing state (starting a child,
sending, waiting for a result or an event) are themselves checkpointed, so a replay neither
repeats them nor sees a different answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.exceptions import (
    InvalidJobError,
    PayloadNotDecodable,
    WorkflowConflict,
    WorkflowNotFound,
    WorkflowSerializationError,
)
from django_pgjobs.jobs import validation
from django_pgjobs.models import WorkflowExecution, WorkflowStatus, WorkflowStep
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.queries import workflow_steps as steps
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.tracing import workflows as tracing
from django_pgjobs.workflows import codec, context, lifecycle, uncommitted, waits
from django_pgjobs.workflows.definitions import WorkflowDefinition
from django_pgjobs.workflows.definitions import app_version as current_app_version
from django_pgjobs.workflows.handles import (
    StepInfo,
    WorkflowHandle,
    WorkflowInfo,
    get_workflow,
    wait_outside,
)
from django_pgjobs.workflows.registry import workflows


def _definition(fn: WorkflowDefinition | str) -> WorkflowDefinition:
    if isinstance(fn, WorkflowDefinition):
        return fn
    if isinstance(fn, str):
        found = workflows.get(fn)
        if found is not None:
            return found
        raise InvalidJobError(f"No workflow named {fn!r} is registered.")
    raise InvalidJobError(
        f"start_workflow() needs a @workflow function or a workflow name, not {fn!r}."
    )


def start_workflow(
    fn: WorkflowDefinition | str,
    *args: Any,
    workflow_id: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    **kwargs: Any,
) -> WorkflowHandle:
    """Start a workflow (queue it for a worker) and return its handle.

    It joins the caller's transaction: inside ``atomic()`` the workflow exists only if that
    commits. Starting an id that exists returns its handle and runs nothing again; the same id
    for a different workflow raises :class:`WorkflowConflict`. Inside a workflow this starts a
    child workflow, checkpointed, with the id ``<parent id>-<step index>`` by default.
    """
    definition = _definition(fn)
    ctx = context.current()
    if ctx is not None and not ctx.in_step:
        return _start_child(ctx, definition, args, kwargs, workflow_id, queue, priority)
    return _start(definition, args, kwargs, workflow_id, queue, priority, parent=None)


def _start(
    definition: WorkflowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workflow_id: str | None,
    queue: str | None,
    priority: int | None,
    *,
    parent: str | None,
) -> WorkflowHandle:
    workflow_id = (
        str(uuid.uuid4())
        if workflow_id is None
        else validation.check_name(workflow_id, "workflow id")
    )
    queue = (definition.queue or "default") if queue is None else queue
    priority = (definition.priority or 0) if priority is None else priority
    row = {
        "workflow_id": workflow_id,
        "name": definition.name,
        "input": _limited(
            codec.encode(
                {"args": list(args), "kwargs": kwargs},
                f"The arguments of workflow {definition.name!r}",
            ),
            f"The arguments of workflow {definition.name!r}",
        ),
        "app_version": current_app_version(),
        "queue": validation.check_name(queue, "queue name"),
        "priority": validation.check_priority(priority),
        "max_recovery_attempts": definition.max_recovery_attempts,
        "parent": parent,
    }
    with tracing.start_span(row), context.cursor() as cur:
        started = runs.start(cur, row)
        name = started.name
        if not started.created and name is None:
            # Started concurrently by a transaction that committed after this statement began.
            name = reads.existing_name(cur, workflow_id)
    if not started.created and name != definition.name:
        raise WorkflowConflict(
            f"Workflow id {workflow_id!r} is already used by workflow {name!r}; "
            f"cannot start {definition.name!r} with it."
        )
    if started.created:
        lifecycle.started(workflow_id, definition.name, conf.DATABASE)
        uncommitted.noted(conf.DATABASE, workflow_id, "started")
    return WorkflowHandle(workflow_id)


def _start_child(
    ctx: context.WorkflowContext,
    definition: WorkflowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workflow_id: str | None,
    queue: str | None,
    priority: int | None,
) -> WorkflowHandle:
    name = "pgjobs.start_workflow"
    index, recorded = ctx.begin_call(name, "start_workflow()")
    if recorded is not None:
        return WorkflowHandle(str(recorded.output))
    child_id = workflow_id if workflow_id is not None else f"{ctx.workflow_id}-{index}"
    started_at = timezone.now()
    # The child's rows and this checkpoint commit together: a replay finds the checkpoint, so
    # the child is started exactly once.
    with transaction.atomic(using=conf.DATABASE):
        handle = _start(definition, args, kwargs, child_id, queue, priority, parent=ctx.workflow_id)
        ctx.record(
            index, name, status="completed", started_at=started_at,
            output=codec.encode(child_id, "child id"),
        )  # fmt: skip
    return handle


def run_workflow(fn: WorkflowDefinition | str, *args: Any, **kwargs: Any) -> Any:
    """Start a workflow and wait for its result (see :func:`start_workflow`)."""
    return start_workflow(fn, *args, **kwargs).get_result()


def list_workflows(
    *, status: str | None = None, name: str | None = None, limit: int = 50, using: str | None = None
) -> list[WorkflowInfo]:
    """Workflows newest first, optionally of one status and/or workflow name."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidJobError(f"limit must be an int >= 1; got {limit!r}.")
    if status is not None and status not in WorkflowStatus.values:
        raise InvalidJobError(
            f"Unknown status {status!r}; expected one of {', '.join(WorkflowStatus.values)}."
        )
    rows = WorkflowExecution.objects.using(queue_database(using)).order_by("-created_at")
    if status is not None:
        rows = rows.filter(status=status)
    if name is not None:
        rows = rows.filter(name=name)
    return [WorkflowInfo.from_model(row) for row in rows[:limit]]


def list_workflow_steps(workflow_id: str, *, using: str | None = None) -> list[StepInfo]:
    """A workflow's checkpoints in order (waits in progress included, status "waiting")."""
    get_workflow(workflow_id, using=using)
    rows = WorkflowStep.objects.using(queue_database(using)).filter(workflow_id=workflow_id)
    return [
        StepInfo(
            index=row.step_index,
            name=row.step_name,
            status=row.status,
            output=row.output,
            error=row.error,
            attempts=row.attempts,
            wake_at=row.wake_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            wait_key=row.wait_key,
        )
        for row in rows.order_by("step_index")
    ]


def send(workflow_id: str, message: Any, topic: str | None = None) -> None:
    """Send ``message`` to a workflow's ``recv(topic)``.

    From ordinary code it joins the caller's transaction; from a workflow it is checkpointed, so
    a recovered workflow does not send it twice. Raises :class:`WorkflowNotFound` for an
    unknown destination.
    """
    destination = validation.check_name(workflow_id, "workflow id")
    topic = waits.topic_of(topic)
    text = _limited(codec.encode(message, "The message"), "The message")
    ctx = context.current()
    if ctx is None or ctx.in_step:
        with context.cursor() as cur:
            sent = steps.send(cur, destination=destination, topic=topic, message=text)
        if sent:
            uncommitted.noted(conf.DATABASE, destination, "sent a message")
    else:
        sent = _send_from_workflow(ctx, destination, topic, text)
    if not sent:
        raise WorkflowNotFound(f"Cannot send to {destination!r}: no workflow has that id.")


def _limited(text: str, what: str) -> str:
    """``text``, unless it is more than ``MAX_PAYLOAD_BYTES`` of JSON: a workflow's arguments
    and its messages are read whole by every replay, like a job's payload by every claim."""
    validation.check_payload_size(len(text.encode("utf-8")), what, WorkflowSerializationError)
    return text


def _send_from_workflow(
    ctx: context.WorkflowContext, destination: str, topic: str, text: str
) -> bool:
    name = "pgjobs.send"
    index, recorded = ctx.begin_call(name, "send()")
    if recorded is not None:
        return bool(recorded.output)
    step = {
        **ctx.step_row(index, name),
        "destination": destination,
        "topic": topic,
        "message": text,
        "started_at": timezone.now(),
    }
    with context.bookkeeping() as cur:
        sent = steps.send_from_step(cur, token=ctx.token, step=step)
    ctx.after_write(sent)
    return sent.sent


def set_event(key: str, value: Any) -> None:
    """Publish ``value`` under ``key`` for this workflow (the latest value wins); checkpointed."""
    ctx = context.require_context("set_event")
    key = validation.check_name(key, "event key")
    text = codec.encode(value, "The event value")
    name = "pgjobs.set_event"
    index, recorded = ctx.begin_call(name, "set_event()")
    if recorded is not None:
        return
    step = {**ctx.step_row(index, name), "key": key, "value": text, "started_at": timezone.now()}
    with context.bookkeeping() as cur:
        ctx.after_write(steps.set_event_from_step(cur, token=ctx.token, step=step))


def get_event(workflow_id: str, key: str, timeout: float | None = 60) -> Any:
    """The value a workflow published under ``key``, waiting up to ``timeout`` seconds for it;
    None if it was not set in time. Raises :class:`WorkflowNotFound` for an unknown workflow.
    Inside a workflow the wait is durable and checkpointed."""
    workflow_id = validation.check_name(workflow_id, "workflow id")
    key = validation.check_name(key, "event key")
    seconds = waits.check_timeout(timeout, "timeout")
    if context.in_workflow_body():
        return waits.get_event_in_workflow(workflow_id, key, seconds)

    def check() -> tuple[bool, Any] | None:
        with context.cursor() as cur:
            event = steps.read_event(cur, workflow_id=workflow_id, key=key)
            if not event.found and reads.status_of(cur, workflow_id) is None:
                raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
        return (True, event.value) if event.found else None

    got = wait_outside(f"event:{workflow_id}:{key}", check, seconds, workflow_id=workflow_id)
    if got is not None and isinstance(got[1], UndecodableJSON):
        # Set by SQL: the caller must not take the stand-in for the value (a workflow waiting
        # on this event fails the same way: queries.finish_wait).
        raise PayloadNotDecodable(
            f"The event {key!r} of workflow {workflow_id!r} cannot be decoded: {got[1].error}"
        )
    return None if got is None else got[1]


def current_workflow_id() -> str | None:
    """The id of the workflow this code runs in (steps included), or None outside workflows."""
    ctx = context.current()
    return None if ctx is None else ctx.workflow_id
