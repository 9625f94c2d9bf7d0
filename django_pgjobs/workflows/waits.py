"""What a workflow waits for durably: time, messages, events and other workflows' results.

Each wait is a step: its start is recorded with its deadline (so a restart does not restart the
clock), and its end is recorded with what it got (so a replay gets the same). While nothing has
arrived, the workflow suspends: its job goes back to the queue until the deadline, and whoever
sends the message, sets the event or finishes the workflow makes it due at once
(``pgjobs_workflow_wake``). A suspended workflow holds no worker slot.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.jobs import validation
from django_pgjobs.queries import workflow_steps as steps
from django_pgjobs.workflows import codec
from django_pgjobs.workflows.context import (
    IN_PROCESS_SLEEP,
    WorkflowContext,
    bookkeeping,
    check_autocommit,
    current,
    require_context,
)

DEFAULT_TOPIC = ""


def check_timeout(timeout: float | None, what: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ValueError(f"{what} must be a number of seconds >= 0 or None; got {timeout!r}.")
    return float(timeout)


def check_deadline(timeout: float | None, what: str) -> None:
    """A durable wait's deadline is stored (``wake_at``) and read back by Python: it must fall
    before :data:`~django_pgjobs.jobs.validation.LATEST_TIME`, as every stored time does."""
    if timeout is None:
        return
    try:
        deadline: datetime | None = timezone.now() + timedelta(seconds=timeout)
    except OverflowError:  # infinity, or beyond Python's datetime
        deadline = None
    # The margin: the database adds the timeout to its own clock (validation.DELAY_MARGIN).
    if deadline is None or deadline >= validation.LATEST_TIME - validation.DELAY_MARGIN:
        raise ValueError(
            f"{what} of {timeout!r} seconds would end after {validation.LATEST_TIME.date()}, "
            f"the latest time django-pgjobs stores, or within {validation.DELAY_MARGIN.days} "
            "day of it; wait for less."
        )


def topic_of(topic: str | None) -> str:
    if topic is None:
        return DEFAULT_TOPIC
    return validation.check_name(topic, "topic")


def durable_wait(
    ctx: WorkflowContext,
    kind: str,
    name: str,
    *,
    wait_key: str | None,
    timeout: float | None,
    params: dict[str, Any],
) -> Any:
    """Run one wait step to its end; returns what it recorded (None when it timed out)."""
    index = ctx.take_index()
    recorded = ctx.replay(index, name)
    if recorded is not None and recorded.status != "waiting":
        if recorded.status == "failed":
            raise codec.rebuild(recorded.error)
        return recorded.output
    check_autocommit(f"{name}()")
    step = ctx.step_row(index, name)
    if recorded is None:
        check_deadline(timeout, f"{name}()'s timeout")
        with bookkeeping() as cur:
            started = steps.register_wait(
                cur,
                token=ctx.token,
                step={**step, "started_at": timezone.now()},
                wait_key=wait_key,
                timeout=timeout,
            )
        ctx.after_write(started)
        deadline = started.deadline
    else:
        deadline = recorded.wake_at
    while True:
        with bookkeeping() as cur:
            checked = steps.finish_wait(cur, kind, token=ctx.token, params={**step, **params})
        # A cancel seen here stops the workflow before its next step.
        ctx.after_write(checked)
        if checked.done:
            return checked.output
        remaining = _seconds_until(deadline)
        # Inside a test's transaction (drain() in a TestCase) the database's now() is the
        # transaction's start and never moves, so an in-process wait would never end: suspend
        # instead, and the test moves the clock (django_pgjobs.testing.advance).
        frozen = connections[conf.DATABASE].in_atomic_block
        soon = kind == "sleep" and remaining is not None and remaining <= IN_PROCESS_SLEEP
        if soon and not frozen:
            time.sleep(max(remaining or 0.0, 0.01))
            continue
        ctx.suspend(deadline)


def _seconds_until(deadline: datetime | None) -> float | None:
    return None if deadline is None else (deadline - timezone.now()).total_seconds()


def sleep(seconds: float) -> None:
    """Sleep durably: the wake-up time is recorded, so a restart does not restart the wait.

    Outside a workflow it is ``time.sleep``. A long sleep frees the worker slot meanwhile.
    """
    duration = check_timeout(seconds, "sleep()'s seconds")
    assert duration is not None
    ctx = current()
    if ctx is None or ctx.in_step:
        time.sleep(duration)
        return
    ctx.check_running()
    durable_wait(ctx, "sleep", "pgjobs.sleep", wait_key=None, timeout=duration, params={})


def recv(topic: str | None = None, timeout: float | None = 60) -> Any:
    """Receive the oldest message sent to this workflow on ``topic``, waiting up to ``timeout``
    seconds (None: no limit); None if none came. Each message is received exactly once."""
    ctx = require_context("recv")
    topic = topic_of(topic)
    return durable_wait(
        ctx,
        "recv",
        "pgjobs.recv",
        wait_key=f"message:{ctx.workflow_id}:{topic}",
        timeout=check_timeout(timeout, "recv()'s timeout"),
        params={"topic": topic},
    )


def get_event_in_workflow(workflow_id: str, key: str, timeout: float | None) -> Any:
    ctx = require_context("get_event")
    return durable_wait(
        ctx,
        "event",
        "pgjobs.get_event",
        wait_key=f"event:{workflow_id}:{key}",
        timeout=timeout,
        params={"target": workflow_id, "key": key},
    )


def result_in_workflow(workflow_id: str, timeout: float | None) -> dict[str, Any] | None:
    """{status, output, error} of another workflow once it ends; None if ``timeout`` ran out."""
    ctx = require_context("get_result")
    found = durable_wait(
        ctx,
        "result",
        "pgjobs.get_result",
        wait_key=f"result:{workflow_id}",
        timeout=timeout,
        params={"target": workflow_id},
    )
    return found if isinstance(found, dict) else None
