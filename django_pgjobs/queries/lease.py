"""Leases: renewed by the heartbeat, released when the attempt never started, and the progress a
running attempt reports. (An expired lease is rescued by :mod:`.rescue`.)

Every write here is fenced on the attempt's lease token (see the package docstring).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django_pgjobs.queries.base import (
    FENCE,
    HELD,
    HELD_FENCE,
    UNDO_CLAIM,
    Cursor,
    Token,
    as_uuid,
    lease_params,
    notify_queues,
    token_params,
)

_RELEASE = f"""
WITH released AS (
    UPDATE pgjobs_job_queue AS j
    SET {UNDO_CLAIM}
    WHERE j.status = 'running' AND {{which}}
    RETURNING j.queue
)
SELECT (SELECT count(*) FROM released), {notify_queues("released")}
"""


def release_jobs(cur: Cursor, *, tokens: Sequence[Token]) -> int:
    """Give back claimed jobs whose handlers never started (shutdown): the attempt is undone.

    Locks: those rows. A crash before commit leaves them to the rescue sweep instead.
    """
    if not tokens:
        return 0
    cur.execute(
        _RELEASE.format(which=f"(j.id, j.lease_token) IN (SELECT id, token FROM {HELD})"),
        token_params(tokens),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def release_untracked_jobs(cur: Cursor, *, worker_id: str, tracked: Sequence[Token]) -> int:
    """After a reconnect: give back jobs this worker claimed but never heard about.

    A claim can commit and its reply be lost with the connection; those rows are running under
    this worker's id with no handler, and would burn an attempt waiting for their lease to
    expire. Worker ids are unique per process, so a running row with our id and a token we do
    not hold is such a claim: undo the attempt and make it due again. Scans running rows only.
    """
    cur.execute(
        _RELEASE.format(
            which="j.locked_by = %(worker_id)s AND j.lease_token <> ALL(%(tokens)s::uuid[])"
        ),
        {"worker_id": worker_id, "tokens": [t[1] for t in tracked]},
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def heartbeat(
    cur: Cursor, *, worker: dict[str, Any], tokens: Sequence[Token], lease_seconds: float
) -> list[uuid.UUID]:
    """Renew this worker's row and the leases of the attempts it holds; one round trip.

    Upserts the worker row so a worker that was presumed dead (and swept) reappears. Rows an
    application transaction has locked (a cancel in progress, say) are skipped rather than waited
    for, so one slow transaction never stalls the worker's heartbeat. Returns the ids of held
    jobs this attempt no longer owns (rescued or cancelled): their outcome will be dropped.
    """
    cur.execute(
        f"""
        WITH me AS (
            INSERT INTO pgjobs_workers (id, hostname, pid, queues, concurrency)
            VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s)
            ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
        ),
        held AS (SELECT * FROM {HELD}),
        renewable AS (
            SELECT j.id FROM pgjobs_job_queue AS j JOIN held ON {HELD_FENCE}
            FOR UPDATE OF j SKIP LOCKED
        ),
        renewed AS (
            UPDATE pgjobs_job_queue AS j
            SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
            FROM renewable WHERE j.id = renewable.id
        )
        SELECT held.id FROM held
        WHERE NOT EXISTS (SELECT 1 FROM pgjobs_job_queue AS j WHERE {HELD_FENCE})
        """,
        {**worker, **token_params(tokens), "lease_seconds": lease_seconds},
    )
    return [as_uuid(r[0]) for r in cur.fetchall()]


def report_progress(
    cur: Cursor, *, token: Token, progress: int | None, message: str | None
) -> None:
    """Write a running attempt's progress columns. Fenced; locks the job row briefly."""
    cur.execute(
        f"""
        UPDATE pgjobs_job_queue SET progress = %(progress)s, progress_message = %(message)s
        WHERE {FENCE}
        """,
        {**lease_params(token), "progress": progress, "message": message},
    )
