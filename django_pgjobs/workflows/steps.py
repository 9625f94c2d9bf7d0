"""Calling a step inside a workflow: replay its checkpoint, or run it (retrying as its definition
says) and record one, in one round trip; an atomic step's checkpoint commits with its writes."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.database import connection_lost
from django_pgjobs.exceptions import (
    WorkflowSerializationError,
)
from django_pgjobs.tracing import workflows as tracing
from django_pgjobs.workflows import codec
from django_pgjobs.workflows.context import (
    WorkflowContext,
    _ControlFlow,
    _current,
    _stop_for,
    check_autocommit,
)

if TYPE_CHECKING:
    from django_pgjobs.workflows.definitions import StepDefinition

logger = logging.getLogger("django_pgjobs.workflows")


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
            # The queue's database only: the step's writes through another alias commit on
            # their own and are repeated with the step (docs/howto/workflows.md, "Steps").
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
