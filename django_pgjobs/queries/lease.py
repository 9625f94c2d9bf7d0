"""Leases: renewed by the heartbeat, released when the attempt never started or its handler
snoozed, and the progress a running attempt reports. (An expired lease is rescued by
:mod:`.rescue`.)

Every write here is fenced on the attempt's lease token (see the package docstring).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from django_pgjobs.queries.base import (
    FENCE,
    HELD,
    HELD_JOIN,
    MINE,
    UNDO_CLAIM,
    Cursor,
    Token,
    as_uuid,
    lease_params,
    notify_queues,
    token_params,
    uuid_array,
)
from django_pgjobs.queries.rate_starts import UNCOUNT_CTES

# A row another transaction holds is skipped (base.MINE), not waited for: it stays running,
# and the rescue gives it back once its lease runs out, the attempt not counted. {uncounted}:
# nothing, or the CTEs that also take the released jobs' starts out of the rate limits'
# ledger (rate_starts.UNCOUNT_CTES, which read the id and partition key).
_RELEASE = f"""
WITH mine AS MATERIALIZED (
    SELECT j.id FROM pgjobs_job_queue AS j WHERE j.status = 'running' AND {{which}}
    FOR NO KEY UPDATE SKIP LOCKED
),
released AS (
    UPDATE pgjobs_job_queue AS j
    SET {UNDO_CLAIM}
    WHERE j.id IN (SELECT id FROM mine)
    RETURNING j.id, j.queue, j.partition_key
){{uncounted}}
SELECT (SELECT count(*) FROM released), {notify_queues("released")}
"""


def release_jobs(
    cur: Cursor, *, tokens: Sequence[Token], counted: Sequence[datetime | None] = ()
) -> int:
    """Give back claimed jobs whose handlers never started (shutdown): the attempt is undone.
    ``counted``: for each token, when a rate limit's ledger counted its start (the job's
    ``counted_at``; None, or none at all, for jobs of no rate-limited queue): a start that did
    not happen is taken out of the ledger (rate_starts.UNCOUNT_CTES).

    Locks: those rows (and the ledger rows of their starts). A crash before commit leaves them to
    the rescue sweep instead.
    """
    if not tokens:
        return 0
    which = f"(j.id, j.lease_token) IN (SELECT id, token FROM {HELD})"
    params: dict[str, Any] = token_params(tokens)
    uncounted = ""
    if any(at is not None for at in counted):
        params["counted"] = list(counted)
        uncounted = f",\n{UNCOUNT_CTES}"
    cur.execute(_RELEASE.format(which=which, uncounted=uncounted), params)
    row = cur.fetchone()
    return int(row[0]) if row else 0


def release_lost_claims(cur: Cursor, *, lease_tokens: Sequence[uuid.UUID]) -> int:
    """Give back what claims whose reply was lost (or could not be read) took.

    A claim can commit and its reply be lost with the connection, or fail to be read on the
    worker's side; its rows are running with no handler, and would burn an attempt waiting for
    their lease to expire. The worker made each claim's lease token itself, so it knows the
    tokens of claims whose jobs never reached it: undo those attempts and make the jobs due
    again. Fenced on those tokens alone, never on the
    worker id, so another process that (wrongly) runs under the same id keeps its jobs.
    Scans running rows only; locks the rows it gives back.
    """
    if not lease_tokens:
        return 0
    cur.execute(
        _RELEASE.format(which="j.lease_token = ANY(%(lease_tokens)s::uuid[])", uncounted=""),
        {"lease_tokens": uuid_array(lease_tokens)},
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def snooze_job(cur: Cursor, *, token: Token, delay: float) -> Literal["snoozed", "lost"]:
    """A handler raised ``Snooze``: release its job due again in ``delay`` seconds, the attempt
    undone as for a job that never started (its count, start and worker; the error and its
    history are left as they were). "lost" when this attempt no longer owns the job (fenced) or
    another transaction holds its row (base.MINE).

    Locks the job row (primary key). Wakes idle workers at commit when it is due at once (a
    handler handing its job back at shutdown). A crash before commit leaves it running until its
    lease is rescued, and that attempt then counts.
    """
    cur.execute(
        f"""
        WITH {MINE},
        snoozed AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM}, scheduled_for = now() + make_interval(secs => %(delay)s)
            WHERE j.id IN (SELECT id FROM mine)
            RETURNING j.queue, %(delay)s::float8 AS delay
        )
        SELECT (SELECT count(*) FROM snoozed), {notify_queues("snoozed", "WHERE delay <= 0")}
        """,
        {**lease_params(token), "delay": delay},
    )
    (snoozed, _) = cur.fetchone()
    return "snoozed" if snoozed else "lost"


def heartbeat(
    cur: Cursor,
    *,
    worker: dict[str, Any],
    tokens: Sequence[Token],
    lease_seconds: float,
    started: Sequence[tuple[Token, float]] = (),
    ahead_lease_seconds: float | None = None,
) -> list[Token]:
    """Renew this worker's row and the leases of the attempts it holds; one round trip.

    Upserts the worker row so a worker that was presumed dead (and swept) reappears. Rows an
    application transaction has locked (a cancel in progress, say) are skipped rather than waited
    for, so one slow transaction never stalls the worker's heartbeat; the worker row lists their
    tokens (``unrenewed``), and while the worker is alive the rescue leaves them alone however
    long that transaction holds the row (their leases run out meanwhile). ``started`` pairs held
    attempts whose handler has begun with how many seconds ago: a job claimed ahead gets its
    start (``locked_at``) recorded here, so from now on a rescue counts its attempt; one whose
    handler has not begun keeps the short ``ahead_lease_seconds`` (None: ``lease_seconds``).
    Returns the held attempts, (id, lease token), that no longer own their jobs (rescued or
    cancelled): their outcome will be dropped. By token, not id: a worker can hold a stale
    attempt and a new one of the same job.
    """
    cur.execute(
        f"""
        WITH held AS (SELECT * FROM {HELD}),
        began AS (
            SELECT * FROM unnest(%(began_ids)s::uuid[], %(began_tokens)s::uuid[],
                                 %(began_ago)s::float8[]) AS began(id, token, ago)
        ),
        renewable AS MATERIALIZED (
            SELECT j.id FROM pgjobs_job_queue AS j JOIN held ON {HELD_JOIN}
            FOR NO KEY UPDATE OF j SKIP LOCKED
        ),
        holding AS MATERIALIZED (
            -- The held attempts that still hold their job (locked or not), read once by key.
            SELECT held.id, held.token FROM pgjobs_job_queue AS j JOIN held ON {HELD_JOIN}
        ),
        renewed AS (
            -- A job claimed ahead whose handler has not begun keeps the short lease.
            UPDATE pgjobs_job_queue AS j
            SET lease_expires_at = now() + make_interval(secs => CASE
                    WHEN j.locked_at IS NULL AND NOT EXISTS (
                        SELECT 1 FROM began WHERE began.id = j.id AND began.token = j.lease_token)
                    THEN coalesce(%(ahead_lease_seconds)s::float8, %(lease_seconds)s)
                    ELSE %(lease_seconds)s END),
                locked_at = coalesce(j.locked_at, (
                    SELECT now() - make_interval(secs => began.ago) FROM began
                    WHERE began.id = j.id AND began.token = j.lease_token))
            FROM renewable WHERE j.id = renewable.id
        ),
        me AS (
            -- A row swept while this worker was presumed dead comes back whole, handlers too.
            INSERT INTO pgjobs_workers (id, hostname, pid, queues, concurrency, instance_token,
                                        handlers, unrenewed)
            VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s,
                    %(instance_token)s, %(handlers)s::jsonb,
                    -- Attempts still holding their job whose row another transaction holds:
                    -- their leases are not renewed, and the rescue leaves them to this worker
                    -- while it is alive (rescue_expired_leases).
                    to_jsonb(array(
                        SELECT held.token::text FROM held
                        WHERE held.id NOT IN (SELECT id FROM renewable)
                          AND (held.id, held.token) IN (SELECT * FROM holding))))
            ON CONFLICT (id) DO UPDATE
            SET last_heartbeat_at = now(), unrenewed = EXCLUDED.unrenewed
            -- Never renew another process's row under the same id (see register_worker).
            WHERE pgjobs_workers.instance_token = EXCLUDED.instance_token
        )
        SELECT held.id, held.token FROM held
        WHERE (held.id, held.token) NOT IN (SELECT * FROM holding)
        """,
        {
            "handlers": None,
            **worker,
            **token_params(tokens),
            "began_ids": uuid_array(token[0] for token, _ in started),
            "began_tokens": uuid_array(token[1] for token, _ in started),
            "began_ago": [max(ago, 0.0) for _, ago in started],
            "lease_seconds": lease_seconds,
            "ahead_lease_seconds": ahead_lease_seconds,
        },
    )
    return [(as_uuid(r[0]), as_uuid(r[1])) for r in cur.fetchall()]


def no_longer_held(cur: Cursor, *, tokens: Sequence[Token]) -> list[Token]:
    """Of these attempts, those whose job has moved on (cancelled, rescued, claimed again): a
    cancel's NOTIFY names an attempt, and anyone who can connect can send one, so the worker
    believes the rows, not the message. Reads by primary key; locks nothing."""
    if not tokens:
        return []
    cur.execute(
        f"""
        SELECT held.id, held.token FROM {HELD}
        LEFT JOIN pgjobs_job_queue AS j ON {HELD_JOIN}
        WHERE j.id IS NULL
        """,
        token_params(tokens),
    )
    return [(as_uuid(r[0]), as_uuid(r[1])) for r in cur.fetchall()]


def report_progress(
    cur: Cursor, *, token: Token, progress: int | None, message: str | None
) -> Literal["written", "held", "lost"]:
    """Write a running attempt's progress columns. Fenced, and never waits: a row another
    transaction holds is skipped (base.MINE) and reported "held", the attempt still holding
    its job; "lost" when it no longer does. Locks the job row briefly."""
    cur.execute(
        f"""
        WITH {MINE},
        written AS (
            UPDATE pgjobs_job_queue SET progress = %(progress)s, progress_message = %(message)s
            WHERE id IN (SELECT id FROM mine)
            RETURNING id
        )
        SELECT EXISTS (SELECT 1 FROM written),
               EXISTS (SELECT 1 FROM pgjobs_job_queue WHERE {FENCE})
        """,
        {**lease_params(token), "progress": progress, "message": message},
    )
    written, ours = cur.fetchone()
    return "written" if written else "held" if ours else "lost"


def save_metadata(cur: Cursor, *, token: Token, metadata: str) -> bool:
    """Replace a running attempt's job metadata (a task's ``context.save_metadata()``). Fenced:
    False when the attempt no longer holds its job. Locks the job row briefly; a crash before
    commit leaves the previous metadata."""
    cur.execute(
        f"UPDATE pgjobs_job_queue SET metadata = %(metadata)s::jsonb WHERE {FENCE} RETURNING id",
        {**lease_params(token), "metadata": metadata},
    )
    return cur.fetchone() is not None
