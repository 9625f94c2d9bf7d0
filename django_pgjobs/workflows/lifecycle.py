"""The signals of a workflow's life (:mod:`django_pgjobs.signals`): ``workflow_started`` when
``start_workflow()`` creates it, ``workflow_finished`` when it ends.

A run that completes or fails hands its ending to the worker (the attempt's notes), which writes
it with the job's completion, and sends ``workflow_finished`` once that is committed, from where
the worker sends every signal of its attempts (the attempt's ``on_written``: a thread of the
worker's own; with ``--pool process`` the callback is pickled back to the worker, so it is a
module-level function and plain values); not if the ending was dropped, the workflow cancelled
meanwhile (the cancel sent its own). A cancel sends it from ``cancel_workflow()``. A
workflow whose job reached the dead letters (status "dead", trigger 0008) is announced by the
worker that buried the job (:func:`django_pgjobs.worker.job_signals.send_workflows_dead`).
"""

from __future__ import annotations

import functools
import json
import logging

from django_pgjobs import signals
from django_pgjobs.jobs.context import WorkflowEnding, current_notes
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.workflows.context import cursor

logger = logging.getLogger("django_pgjobs.workflows")


def started(workflow_id: str, name: str, using: str) -> None:
    signals.send_workflow(signals.workflow_started, workflow_id=workflow_id, name=name, using=using)


def cancelled(workflow_id: str, name: str, was: str) -> None:
    """``cancel_workflow()`` (or ``cancel_job()`` on its job) ended it; it ``was`` pending or
    running."""
    logger.info(
        "Workflow %s (%s) cancelled (it was %s)%s",
        workflow_id, name, was,
        ": its job is cancelled too" if was == "pending" else ": it stops at its next step",
        extra={"workflow_id": workflow_id, "workflow_name": name, "action": "cancel"},
    )  # fmt: skip
    _send_finished(workflow_id, name, "cancelled", None, "completed")


def ended(
    workflow_id: str,
    name: str,
    status: str,
    *,
    output: str | None,
    error: str | None,
    why: str | None,
) -> None:
    """The running workflow ended with ``status`` (``output``, ``error``: JSON text, or None):
    the worker writes it with its job's completion and then announces it (a job retried after a
    lost connection runs the workflow again); ``why``: the failure, for ``workflow_finished``."""
    notes = current_notes.get()
    if notes is None:  # run_workflow_job runs only in an attempt, which always has its notes
        raise RuntimeError("A workflow ended outside a worker's attempt.")
    ending = {"id": workflow_id, "s": status}
    text = json.dumps(ending)[:-1]  # the output and error are JSON already: joined, not parsed
    text += "".join(f', "{k}": {v}' for k, v in (("o", output), ("e", error)) if v is not None)
    notes.workflow_ending = WorkflowEnding(workflow_id, text + "}")
    if signals.workflow_finished.has_listeners():
        notes.on_written = functools.partial(_send_finished, workflow_id, name, status, why)


def _send_finished(
    workflow_id: str, name: str, status: str, error: str | None, outcome: str
) -> None:
    if outcome != "completed":
        return  # the job did not complete after all: the workflow runs again
    # The job completed; its workflow ended so unless it was cancelled meanwhile (the cancel
    # sent its own), which the completion's reply says, but not a completion whose reply was
    # lost and that was found written afterwards: the row says it in every case.
    with cursor() as cur:
        if reads.status_of(cur, workflow_id) != status:
            return
    signals.send_workflow(
        signals.workflow_finished,
        workflow_id=workflow_id,
        name=name,
        status=status,
        error=error,
    )
