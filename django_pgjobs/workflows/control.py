"""An operator's actions on a workflow: cancel it, resume a cancelled or dead one from its last
checkpoint (perhaps on another code version), fork a copy that reuses its checkpoints up to a
step. The admin's actions and ``manage.py pgjobs_workflows`` call these; each is one statement
(:mod:`django_pgjobs.queries.workflow_control`)."""

from __future__ import annotations

import uuid

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import (
    InvalidJobError,
    WorkflowConflict,
    WorkflowNotFound,
    WorkflowStateError,
)
from django_pgjobs.jobs import validation
from django_pgjobs.queries import workflow_control as control
from django_pgjobs.workflows import context, lifecycle, uncommitted
from django_pgjobs.workflows.definitions import app_version as current_app_version
from django_pgjobs.workflows.handles import WorkflowHandle

MAX_VERSION_LENGTH = 64  # the app_version column


def _check_version(version: object) -> str:
    text = validation.check_name(version, "app_version")
    if len(text) > MAX_VERSION_LENGTH:
        raise InvalidJobError(
            f"app_version is {len(text)} characters long; the limit is {MAX_VERSION_LENGTH}."
        )
    return text


def cancel_workflow(workflow_id: str, *, using: str | None = None) -> None:
    """Cancel a workflow. A queued or waiting one stops now; a running one at its next step."""
    validation.check_sendable(workflow_id, "workflow id")
    with context.cursor(using) as cur:
        found = control.cancel(cur, workflow_id)
    if found is None:
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
    if found.ended:
        lifecycle.cancelled(workflow_id, found.name, found.before)
    before = found.before
    if before in ("completed", "failed", "dead"):
        raise WorkflowStateError(f"Workflow {workflow_id!r} already ended ({before}).")


def resume_workflow(
    workflow_id: str, *, app_version: str | None = None, using: str | None = None
) -> WorkflowHandle:
    """Run a cancelled or dead workflow again from its last checkpoint.

    Refused (:class:`WorkflowStateError`) while a cancelled run is still in a step: wait until
    it stops.

    ``app_version`` re-pins it (and a pending workflow no worker of its version is left to run)
    to that code version, e.g. ``django_pgjobs.workflows.app_version()`` for the deployed code.
    A pending workflow is refused without one: nothing of it is stopped.
    """
    validation.check_sendable(workflow_id, "workflow id")
    if app_version is not None:
        _check_version(app_version)
    with context.cursor(using) as cur:
        resumed = control.resume(cur, workflow_id=workflow_id, app_version=app_version)
    before = resumed.before
    if before is None:
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
    if before in ("completed", "failed"):
        raise WorkflowStateError(
            f"Workflow {workflow_id!r} is {before}: it ended, and only a cancelled or dead "
            "workflow is resumed (fork a failed or completed one instead: fork_workflow(), "
            "`manage.py pgjobs_workflows fork`)."
        )
    if before == "running" or (before == "pending" and app_version is None):
        raise WorkflowStateError(
            f"Workflow {workflow_id!r} is {before} (queued, running, or waiting for what it "
            "waits for): there is nothing to resume; only a cancelled or dead workflow is "
            "resumed, and a pending one moved to another code version (app_version)."
        )
    if resumed.busy:
        raise WorkflowStateError(
            f"Workflow {workflow_id!r} is {before}, but its last run is still running (a run "
            "stops at its next step, a step is never interrupted): wait until the cancelled run "
            "stops, then resume it. Resuming now would run that step a second time beside it."
        )
    uncommitted.noted(using or conf.DATABASE, workflow_id, "resumed")
    return WorkflowHandle(workflow_id)


def fork_workflow(
    workflow_id: str,
    from_step: int = 0,
    *,
    new_workflow_id: str | None = None,
    app_version: str | None = None,
    using: str | None = None,
) -> WorkflowHandle:
    """Start a new workflow with the same inputs that reuses the checkpoints of steps before
    ``from_step`` and runs the rest again, on the deployed code version unless ``app_version``
    says otherwise. ``from_step`` may be at most the step after the source's last recorded one
    (then every checkpoint is reused)."""
    validation.check_sendable(workflow_id, "workflow id")
    if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 0:
        raise InvalidJobError(f"from_step must be an int >= 0; got {from_step!r}.")
    new_id = (
        str(uuid.uuid4())
        if new_workflow_id is None
        else validation.check_name(new_workflow_id, "workflow id")
    )
    version = app_version if app_version is not None else current_app_version()
    with context.cursor(using) as cur:
        forked = control.fork(
            cur,
            {
                "source": workflow_id,
                "workflow_id": new_id,
                "from_step": from_step,
                "app_version": _check_version(version),
            },
        )
    if not forked.source_found:
        raise WorkflowNotFound(f"No workflow has the id {workflow_id!r}.")
    if from_step > forked.recorded:
        raise InvalidJobError(
            f"Workflow {workflow_id!r} recorded steps up to step {forked.recorded - 1}: "
            f"from_step must be at most {forked.recorded} (the step after its last); got "
            f"{from_step}."
            if forked.recorded
            else f"Workflow {workflow_id!r} has recorded no step: from_step must be 0; got "
            f"{from_step}."
        )
    if not forked.created:
        raise WorkflowConflict(f"Workflow id {new_id!r} is already taken.")
    uncommitted.noted(using or conf.DATABASE, new_id, "forked")
    return WorkflowHandle(new_id)
