"""Reads of a workflow's own row: they lock nothing and write nothing (the statements that change
it are in :mod:`.workflow_runs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_pgjobs.queries.base import Cursor
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
