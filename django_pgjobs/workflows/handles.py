"""What a caller holds and reads: a started workflow's handle, and the snapshots that describe
a workflow and its steps. Waiting for a result from ordinary code listens for the wake-up the
finishing statement sends; from inside a workflow it is a durable, checkpointed wait."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from django_pgjobs.conf import conf
from django_pgjobs.database import WAIT_NAME, connect, queue_database, through_pooler
from django_pgjobs.exceptions import (
    PayloadNotDecodable,
    WorkflowCancelled,
    WorkflowDead,
    WorkflowNotFound,
    WorkflowTimeout,
)
from django_pgjobs.jobs import validation
from django_pgjobs.listening import LISTEN_CONNECT_TIMEOUT, listen_alias, open_within
from django_pgjobs.models import WorkflowExecution
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.workflows import codec, context, uncommitted, waits

logger = logging.getLogger("django_pgjobs.workflows")

# An outside wait that listens straight to PostgreSQL is woken by the NOTIFY of the commit that
# ends its wait, which PostgreSQL does not lose: it re-reads the state this often only in case
# the connection itself went silent. One that polls (POLL_ONLY, a listener behind a pooler, a
# listener that failed) re-reads every POLL_INTERVAL.
SAFETY_RECHECK = 30.0


@dataclass(frozen=True)
class WorkflowInfo:
    workflow_id: str
    name: str
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    app_version: str
    queue: str
    priority: int
    parent_workflow_id: str | None
    forked_from: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    # The input as stored: ``{"args": [...], "kwargs": {...}}`` as start_workflow() writes it;
    # a row SQL wrote may hold anything, of which ``args`` and ``kwargs`` keep what fits them.
    input: Any = None

    @classmethod
    def from_model(cls, row: WorkflowExecution) -> WorkflowInfo:
        given = row.input if isinstance(row.input, dict) else {}
        args, kwargs = given.get("args"), given.get("kwargs")
        return cls(
            workflow_id=row.workflow_id,
            name=row.name,
            status=row.status,
            args=list(args) if isinstance(args, list) else [],
            kwargs=dict(kwargs) if isinstance(kwargs, dict) else {},
            input=row.input,
            output=row.output,
            error=row.error,
            app_version=row.app_version,
            queue=row.queue,
            priority=row.priority,
            parent_workflow_id=row.parent_workflow_id,
            forked_from=row.forked_from,
            created_at=row.created_at,
            started_at=row.started_at,
            updated_at=row.updated_at,
            completed_at=row.completed_at,
        )


@dataclass(frozen=True)
class StepInfo:
    index: int
    name: str
    status: str
    output: Any
    error: dict[str, Any] | None
    attempts: int
    wake_at: datetime | None
    started_at: datetime
    completed_at: datetime | None
    # A wait's wake-up key, what ends it early (``message:<id>:<topic>``,
    # ``event:<id>:<key>``, ``result:<id>``); None for a sleep and for the other steps.
    wait_key: str | None = None


@dataclass(frozen=True)
class WorkflowHandle:
    """A started workflow. Inside a workflow, ``get_result`` is a durable, checkpointed wait."""

    workflow_id: str

    def get_status(self) -> str:
        return get_workflow(self.workflow_id).status

    def get_workflow(self) -> WorkflowInfo:
        return get_workflow(self.workflow_id)

    def get_result(self, timeout: float | None = None) -> Any:
        """The workflow's return value once it finishes; raises its error if it failed (a
        ``SystemExit`` or ``KeyboardInterrupt`` as :class:`WorkflowFailed`, an ordinary
        exception), :class:`WorkflowCancelled` / :class:`WorkflowDead`, or
        :class:`WorkflowTimeout`."""
        seconds = waits.check_timeout(timeout, "timeout")
        validation.check_sendable(self.workflow_id, "workflow id")
        if context.in_workflow_body():
            found = waits.result_in_workflow(self.workflow_id, seconds)
        else:
            found = wait_outside(
                f"result:{self.workflow_id}",
                lambda: _final_result(self.workflow_id),
                seconds,
                workflow_id=self.workflow_id,
            )
        if found is None:
            raise WorkflowTimeout(
                f"Workflow {self.workflow_id!r} did not finish within {timeout} s."
            )
        return _outcome(self.workflow_id, found)


def get_workflow(workflow_id: str, *, using: str | None = None) -> WorkflowInfo:
    """What is known about a workflow now; raises :class:`WorkflowNotFound`."""
    validation.check_sendable(workflow_id, "workflow id")  # else a driver's error (NUL, an int)
    try:
        row = WorkflowExecution.objects.using(queue_database(using)).get(workflow_id=workflow_id)
    except WorkflowExecution.DoesNotExist:
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.") from None
    return WorkflowInfo.from_model(row)


def _final_result(workflow_id: str) -> dict[str, Any] | None:
    with context.cursor() as cur:
        found = reads.read_result(cur, workflow_id)
    if found is None:
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
    if found.status in ("pending", "running"):
        return None
    return {"status": found.status, "output": found.output, "error": found.error}


def _outcome(workflow_id: str, found: dict[str, Any]) -> Any:
    status = found.get("status")
    if status == "missing":
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
    if status == "completed":
        output = found.get("output")
        if isinstance(output, UndecodableJSON):
            # Stored by SQL: never hand the stand-in out as if it were the value (a workflow
            # waiting on this result fails the same way: queries.finish_wait).
            raise PayloadNotDecodable(
                f"The result of workflow {workflow_id!r} cannot be decoded: {output.error}"
            )
        return output
    if status == "cancelled":
        raise WorkflowCancelled(f"Workflow {workflow_id!r} was cancelled.")
    if status == "dead":
        error = found.get("error")
        # Not what the rescue records when a row written by SQL holds "boom" or a list there.
        why = error.get("message", "it kept crashing") if isinstance(error, dict) else error
        raise WorkflowDead(f"Workflow {workflow_id!r} is dead: {why or 'it kept crashing'}")
    raise codec.rebuild_for_caller(found.get("error") or {"type": "Exception", "message": "failed"})


def wait_outside(
    key: str, check: Any, timeout: float | None, *, workflow_id: str | None = None
) -> Any:
    """Wait until ``check()`` returns something other than None, woken by the NOTIFY that
    ``pgjobs_workflow_wake(key)`` sends; None if ``timeout`` runs out first. Raises
    :class:`WorkflowStateError` at once if what it waits for, of workflow ``workflow_id``, can
    never come before the caller's own transaction ends (:mod:`.uncommitted`)."""
    found = check()
    if found is not None or timeout == 0:
        return found
    if workflow_id is not None:
        uncommitted.refuse_wait(conf.DATABASE, workflow_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    listener, recheck = _listener(deadline)
    try:
        while True:
            # Checked after LISTEN: a wake-up from here on is heard.
            found = check()
            if found is not None:
                return found
            left = recheck if deadline is None else min(recheck, deadline - time.monotonic())
            if left <= 0:
                return None
            if listener is None:
                time.sleep(left)
                continue
            try:
                for notice in listener.notifies(timeout=left):
                    if notice.payload == key:
                        break
            except psycopg.OperationalError as exc:  # the listening connection broke: poll
                logger.warning("A workflow wait lost its listening connection (%s)", exc)
                listener.close()
                listener, recheck = None, conf.POLL_INTERVAL
    finally:
        if listener is not None:
            listener.close()


def _listener(deadline: float | None) -> tuple[psycopg.Connection[Any] | None, float]:
    """The connection an outside wait listens on (LISTEN_DATABASE, else DATABASE; none under
    POLL_ONLY or behind a pooler), and how often the wait re-reads the state. Given up at
    ``deadline`` (a monotonic time): the wait then takes its last look."""
    if conf.POLL_ONLY:
        return None, conf.POLL_INTERVAL
    alias = listen_alias(conf.DATABASE)
    try:
        listener = open_within(
            lambda: _listen(alias), None if deadline is None else deadline - time.monotonic()
        )
    except TimeoutError:
        return None, conf.POLL_INTERVAL  # not a fault: a short wait, or a slow path to it
    except psycopg.OperationalError as exc:
        logger.warning("A workflow wait cannot listen on database %r (%s); polling", alias, exc)
        return None, conf.POLL_INTERVAL
    if listener is not None:
        return listener, SAFETY_RECHECK
    if alias not in _warned:
        _warned.add(alias)  # once a process: every get_result() would say it again
        logger.warning(
            "Workflow waits (get_result, get_event) cannot listen on database %r: it goes "
            "through a connection pooler, so they see a result only when they re-read it "
            "(every %ss). Set PGJOBS['LISTEN_DATABASE'] to an alias that connects straight to "
            "the same PostgreSQL database, or PGJOBS['POLL_ONLY'] = True to poll without this "
            "warning (docs/howto/worker.md, Behind PgBouncer).",
            alias,
            conf.POLL_INTERVAL,
        )
    return None, conf.POLL_INTERVAL


def _listen(alias: str) -> psycopg.Connection[Any] | None:
    """A connection to ``alias`` that LISTENs for the workflows' wake-ups; None if it goes
    through a pooler, where the LISTEN would land on a pooled session, and be heard by others."""
    listener = connect(alias, application_name=WAIT_NAME, connect_timeout=LISTEN_CONNECT_TIMEOUT)
    try:
        if through_pooler(listener):
            listener.close()
            return None
        listener.execute(f"LISTEN {runs.NOTIFY_CHANNEL}")
    except BaseException:
        listener.close()
        raise
    return listener


# Aliases the warning above was given for.
_warned: set[str] = set()
