"""Running a workflow as a job: load it and all its checkpoints in one round trip, call the
workflow function in its context (:mod:`~django_pgjobs.workflows.context`), where every step
call either returns the checkpoint recorded at its index or runs the step and records one
(:mod:`~django_pgjobs.workflows.steps`), then hand how it ended to the worker, which writes it
with the job's completion. So a workflow re-executed after
a crash passes through its finished steps without running them and carries on from the first
step that has no checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError

from django_pgjobs.database import connection_lost
from django_pgjobs.exceptions import (
    PayloadNotDecodable,
    WorkflowError,
    WorkflowSerializationError,
)
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.context import JobHandedBack, current_attempt, current_job
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.tracing import workflows as tracing
from django_pgjobs.workflows import codec, lifecycle
from django_pgjobs.workflows.context import (
    WorkflowContext,
    _BookkeepingFailed,
    _Cancelled,
    _current,
    _LeaseLost,
    _Suspended,
    cursor,
)
from django_pgjobs.workflows.registry import workflows

logger = logging.getLogger("django_pgjobs.workflows")


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
            what = f"The return value of workflow {loaded.name!r}"
            output = codec.encode(result, what)
            # Written with the job's completion, in a batch with others: held to the limit of
            # its arguments, and as a task's result, so no one value can make the batch too big.
            validation.check_kept_size(
                len(output.encode("utf-8")), what, WorkflowSerializationError
            )
    except _Suspended as suspended:
        raise JobHandedBack(suspended.delay) from None
    except _Cancelled:
        logger.info("Workflow %s stopped: it was cancelled", workflow_id)
        return
    except _LeaseLost:
        attempt = current_attempt()
        reason = (
            f"its attempt ran past its time limit (JobTimeout); {_since_its_timeout(workflow_id)}"
            if attempt is not None and attempt.timed_out
            else "its attempt no longer holds its job (cancelled, or taken over after its lease "
            "ran out)"
        )
        logger.warning("Workflow %s stopped: %s", workflow_id, reason)
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
    lifecycle.ended(workflow_id, loaded.name, status, output=output, error=error, why=why)


def _since_its_timeout(workflow_id: str) -> str:
    """What became of a workflow whose attempt ran past its time limit, read when its abandoned
    thread returns: the worker wrote that attempt's failure long before, so its job was retried
    (the workflow runs again, and may have ended since) or moved to the dead letters with the
    workflow dead. Assuming the retry told of a rerun in the second the workflow went dead."""
    try:
        with cursor() as cur:
            status = reads.status_of(cur, workflow_id)
    except DatabaseError:
        return "its job was retried or moved to the dead letters, as any timed-out attempt's"
    if status in ("pending", "running"):
        return "it runs again from its checkpoints"
    if status == "dead":
        return "the workflow is dead (its job is in the dead letters)"
    return "the workflow no longer exists" if status is None else f"the workflow is {status}"
