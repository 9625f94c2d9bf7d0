"""Reads of a workflow's own row, and of the waits its steps are in: they lock nothing and write
nothing (the statements that change them are in :mod:`.workflow_runs`, :mod:`.workflow_control`
and :mod:`.workflow_steps`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_pgjobs.queries.base import Cursor, is_workflow_job
from django_pgjobs.stored_json import decode_json


def existing_name(cur: Cursor, workflow_id: str) -> str | None:
    cur.execute("SELECT name FROM pgjobs_workflow_executions WHERE workflow_id = %s", [workflow_id])
    found = cur.fetchone()
    return None if found is None else str(found[0])


def status_of(cur: Cursor, workflow_id: str) -> str | None:
    cur.execute(
        "SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %s", [workflow_id]
    )
    found = cur.fetchone()
    return None if found is None else str(found[0])


@dataclass(frozen=True)
class WorkflowResult:
    status: str
    output: Any
    error: Any


def read_result(cur: Cursor, workflow_id: str) -> WorkflowResult | None:
    """A workflow's status, output and error; None if there is no such workflow."""
    cur.execute(
        """
        SELECT status, output::text, error::text FROM pgjobs_workflow_executions
        WHERE workflow_id = %s
        """,
        [workflow_id],
    )
    found = cur.fetchone()
    if found is None:
        return None
    return WorkflowResult(
        status=str(found[0]),
        output=None if found[1] is None else decode_json(found[1]),
        error=None if found[2] is None else decode_json(found[2]),
    )


@dataclass(frozen=True)
class DeadWorkflow:
    workflow_id: str
    name: str
    error: str  # "WorkflowDead: <its message>", then the dead letter's error


def killed_by(cur: Cursor, dead_letter_ids: list[uuid.UUID]) -> list[DeadWorkflow]:
    """The workflows these dead letters made dead: a workflow's job reaching the dead letters
    marks it dead in the same transaction (trigger pgjobs_failed_workflow, 0008), so the
    workflow's row and the dead letter were written by one transaction (the same ``xmin``). A
    workflow that was dead already, or was written since (resumed), is not among them. Reads
    by primary keys; locks nothing."""
    cur.execute(
        f"""
        SELECT w.workflow_id, w.name, concat_ws(E'\\n',
                   'WorkflowDead: ' || coalesce(w.error ->> 'message', 'dead'), f.error)
        FROM pgjobs_failed_jobs AS f
        JOIN pgjobs_workflow_executions AS w ON w.workflow_id = f.payload ->> 'workflow_id'
        WHERE f.id = ANY(%s) AND {is_workflow_job("f.job_name")}
          AND w.status = 'dead' AND w.xmin = f.xmin
        ORDER BY f.failed_at, f.id
        """,
        [dead_letter_ids],
    )
    return [DeadWorkflow(str(id_), str(name), str(error)) for id_, name, error in cur.fetchall()]


def ids_starting(cur: Cursor, prefix: str, *, limit: int) -> list[str]:
    """Up to ``limit`` workflow ids that start with ``prefix``, newest first (an operator's
    command naming a workflow by the start of its id). Reads the id's pattern index."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur.execute(
        "SELECT workflow_id FROM pgjobs_workflow_executions WHERE workflow_id LIKE %s "
        "ORDER BY created_at DESC LIMIT %s",
        [pattern, limit],
    )
    return [str(found) for (found,) in cur.fetchall()]


@dataclass(frozen=True)
class Wait:
    """A durable wait in progress: its step's name (``pgjobs.sleep``, ``pgjobs.recv`` ...), what
    wakes it early (``wait_key``) and its deadline (``wake_at``; None: it has none)."""

    step_name: str
    wait_key: str | None
    wake_at: datetime | None


def waits_of(cur: Cursor, workflow_ids: list[str]) -> dict[str, Wait]:
    """The wait each of these workflows is in, for those in one (a workflow is in one at a
    time; its latest step wins should a row say otherwise). Reads pgjobs_workflow_step_unique,
    which leads with the workflow's id, once per id; locks nothing."""
    cur.execute(
        "SELECT workflow_id, step_name, wait_key, wake_at FROM pgjobs_workflow_steps "
        "WHERE workflow_id = ANY(%s) AND status = 'waiting' ORDER BY workflow_id, step_index",
        [workflow_ids],
    )
    return {str(id_): Wait(str(name), key, wake_at) for id_, name, key, wake_at in cur.fetchall()}
