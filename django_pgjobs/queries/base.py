"""What every statement module shares: the cursor protocol, the claimed job, fencing tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

NOTIFY_CHANNEL = "pgjobs"

# A workflow runs as the job ``pgjobs.workflow:<app version>`` with the key ``workflow:<id>``.
WORKFLOW_JOB_PREFIX = "pgjobs.workflow:"
WORKFLOW_KEY_PREFIX = "workflow:"

# (job id, lease token): what a worker presents to prove it still holds an attempt.
Token = tuple[uuid.UUID, uuid.UUID]

ACTIVE = "('pending', 'running')"
# The partial unique index pgjobs_job_key_active, spelled so ON CONFLICT can infer it.
KEY_CONFLICT = f"ON CONFLICT (key) WHERE key IS NOT NULL AND status IN {ACTIVE}"
# The (id, lease token) pairs a statement is given, as a relation.
HELD = "unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS held(id, token)"


class Cursor(Protocol):
    def execute(self, sql: Any, params: Any = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker knows about a job it holds: enough to run it and to fence its writes."""

    id: uuid.UUID
    job_name: str
    payload: Any
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    scheduled_for: datetime
    lease_token: uuid.UUID

    @property
    def token(self) -> Token:
        return (self.id, self.lease_token)


# This attempt still holds the job (params from :func:`lease_params`): the fence of every write
# a running attempt makes outside the worker's batches (a workflow's statements).
HOLDS_LEASE = """EXISTS (
    SELECT 1 FROM pgjobs_job_queue
    WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'running'
)"""


def lease_params(token: Token) -> dict[str, Any]:
    return {"job_id": token[0], "token": token[1]}


def token_params(tokens: Sequence[Token]) -> dict[str, str]:
    """The pairs for HELD, as two uuid[] literals: a batch holds hundreds, and psycopg's list
    dumper, one Python call per element, cost more than the statement's own parse."""
    return {"ids": uuid_array(t[0] for t in tokens), "tokens": uuid_array(t[1] for t in tokens)}


def uuid_array(values: Iterable[uuid.UUID]) -> str:
    """A PostgreSQL uuid[] literal (sent as text, cast by ``::uuid[]`` in the statement)."""
    return "{" + ",".join([v.hex for v in values]) + "}"


def filters(queues: Sequence[str] | None, job_names: Sequence[str] | None) -> str:
    # One queue is an equality, so the claim can walk pgjobs_job_queue_claim in order.
    sql = ""
    if queues and len(queues) == 1:
        sql += " AND queue = %(queue)s"
    elif queues:
        sql += " AND queue = ANY(%(queues)s)"
    if job_names is not None:
        sql += " AND job_name = ANY(%(job_names)s)"
    return sql


def filter_params(queues: Sequence[str] | None, job_names: Sequence[str] | None) -> dict[str, Any]:
    return {
        "queue": queues[0] if queues else None,
        "queues": list(queues or ()),
        "job_names": list(job_names or ()),
    }


def as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
