"""Claiming due jobs: the worker's one-round-trip claim."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_pgjobs.prepared import run_generic
from django_pgjobs.queries import flow as flow_sql
from django_pgjobs.queries import rate_starts
from django_pgjobs.queries.base import (
    PENDING_PRIORITIES,
    ClaimedJob,
    Cursor,
    as_uuid,
    claimed_job,
    filter_params,
    filters,
)
from django_pgjobs.stored_json import decode_json

# The due jobs of a worker whose queues have no flow control (``rules`` empty): for each pending
# priority, highest first (pending_priorities: one descent of pgjobs_job_claim each, computed only
# while the claim still has room), one range of pgjobs_job_claim (pgjobs_job_queue_claim for one
# queue) in due order, until LIMIT. The same rows, in the same order, as one walk of the index
# would give; but an equality on priority leaves the planner one index that serves the range in
# order, whatever the statistics say. With statistics taken before a burst (one pending row
# expected), PostgreSQL 18 otherwise skip-scanned pgjobs_job_partition_claim for every due job
# and sorted them all (tests/queries/test_claim_plan.py). Rows are locked as the walk returns them,
# so no more than LIMIT. When ``rules`` has rows the one-time filter makes it take nothing; the
# flow-controlled statement (queries.flow) then chooses instead. Each row comes with its tuple id
# (ctid), by which the update takes it (_BY_TUPLE).
_PLAIN_DUE = """due{suffix} AS (
    SELECT d.id, d.ctid FROM pending_priorities AS p, LATERAL (
        SELECT j.id, j.ctid FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.priority = p.priority AND j.scheduled_for <= now()
              {filters}
        ORDER BY j.scheduled_for, j.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS d
    WHERE p.priority IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rules)
    LIMIT %(limit)s
)"""

_FLOW_DUE = """{plain},
{flow},
due AS (
    SELECT id FROM due_plain
    UNION ALL
    (SELECT id FROM due_flow ORDER BY n)
)"""

# Taking the rows chosen in ``due``; the statements select from ``claimed``.
_CLAIMED = """timeouts AS MATERIALIZED (
    SELECT name, extract(epoch FROM timeout)::float8 AS seconds
    FROM pgjobs_queues WHERE timeout IS NOT NULL
),
claimed AS (
    -- An array, not a join with ``due``: the planner costs a join for LIMIT rows and often
    -- prefers hashing them against a sequential scan of the whole table (2.5 ms at 20,000
    -- rows, more as the queue grows); = ANY(ARRAY(...)) always goes straight to the rows (by
    -- tuple id in the plain claim), as does a join with unnest(ARRAY(...)), whose rows the
    -- planner expects to be few (by key in the flow-controlled one).
    -- locked_at (the attempt started) only for the first start_now jobs, which free handler
    -- threads start at once; the rest are claimed ahead and the worker records their start
    -- later (lease.heartbeat). A rescue does not count an attempt that never started. Those
    -- claimed ahead get the short ahead_lease_seconds: if the worker dies they come back within
    -- seconds, not a lease later (the worker records their start well before it runs out).
    -- The attempt counts up to the largest int: a row SQL wrote with attempt 2147483647 made the
    -- addition fail (integer out of range), and with it every claim of every worker, where it
    -- now runs as an attempt past its max_attempts (a failure buries it).
    UPDATE pgjobs_job_queue AS j
    SET status = 'running', attempt = least(j.attempt, 2147483646) + 1, locked_by = %(worker_id)s,
        locked_at = CASE WHEN j.attempt_spared OR {starts} THEN now() END,
        lease_expires_at = now() + make_interval(secs => CASE
            WHEN j.attempt_spared OR {starts} THEN %(lease_seconds)s
            ELSE coalesce(%(ahead_lease_seconds)s::float8, %(lease_seconds)s) END),
        lease_token = %(lease_token)s
    {source}WHERE {match}
    RETURNING j.id, j.job_name, j.payload::text AS payload, j.queue, j.priority, j.attempt,
              j.max_attempts, j.scheduled_for, j.partition_key,
              extract(epoch FROM j.timeout)::float8 AS timeout,
              (SELECT t.seconds FROM timeouts AS t WHERE t.name = j.queue) AS queue_timeout,
              j.seq, {place} AS place, j.trace_context::text AS trace_context,
              {stamp} AS rate_stamp, {counted} AS rate_counted
)"""
# The plain claim: its jobs' order is the claim order (NULL place), and the first start_now rows
# of ``due`` start now.
_PLAIN_CLAIMED = {
    "place": "NULL::int",
    "stamp": "NULL::timestamptz",
    "counted": "NULL::timestamptz",
    "starts": "j.id = ANY(ARRAY(SELECT id FROM due LIMIT %(start_now)s))",
    "source": "",
}
# How the update finds the plain claim's rows: by the tuple ids ``due`` locked (a Tid Scan), not
# by looking each id up in the key again, a descent of pgjobs_job_queue_pkey a job (a tenth of
# the claim's time, benchmarks/README.md, the ninth round). The row cannot have moved: ``due``
# holds its lock until the statement commits. A row another transaction updated and committed
# after this statement's snapshot, which FOR UPDATE then locked in its newest version, is not
# visible to the update by that version's tuple id: it is left pending, its lock gone at commit,
# for the next claim. The status is checked again on the row found (a filter; ``IS TRUE``, so
# that no partial index's predicate matches it): a tuple id alone names a row only within one
# table. The flow-controlled statement's candidates come from several walks (queries.flow),
# which give ids; it looks them up by key (_FLOW_CLAIMED says why).
_BY_TUPLE = "j.ctid = ANY(ARRAY(SELECT ctid FROM due)) AND (j.status = 'pending') IS TRUE"
# The flow-controlled claim: the claim's ids numbered in its order (due_flow's ``n``), joined by
# key. The number is each job's place, where array_position() over the claim's ids was a scan of
# them a job (0.5 ms for 480), and the first start_now places start now. By key, not by the
# tuple ids its walks locked (tried twice, benchmarks/README's fifth and twelfth rounds): a row
# updated and committed after the statement's snapshot is locked in its newest version, which
# the snapshot cannot see at that tuple id; the update by key follows the row there, so a key's
# head is never left behind while the jobs after it start. The planner's estimate for unnest()
# is small: a descent of pgjobs_job_queue_pkey a job (a nested loop), as ``= ANY`` was.
_FLOW_CLAIMED = {
    "place": "d.place",
    "stamp": rate_starts.RATE_STAMP,
    "counted": rate_starts.RATE_COUNTED,
    "starts": "d.place <= coalesce(%(start_now)s, %(limit)s)",
    "source": "FROM unnest(ARRAY(SELECT id FROM due)) WITH ORDINALITY AS d(id, place)\n    ",
}
_BY_KEY = "j.id = d.id"

_COLUMNS = (
    "id",
    "job_name",
    "payload",
    "queue",
    "priority",
    "attempt",
    "max_attempts",
    "scheduled_for",
    "partition_key",
    "timeout",
    "queue_timeout",
    "seq",
    "place",
    "trace_context",
    # A rate-limited job's: seconds from the statement's start to its claim's stamp (NULL for
    # others), so that the worker can tell how long after the stamp its handler began.
    "extract(epoch FROM rate_stamp - statement_timestamp())::float8",
    # ... and to the time the ledger counts its start at, which its handler must begin by;
    # and that time itself, by which a start that did not happen is taken out of the ledger.
    "extract(epoch FROM rate_counted - statement_timestamp())::float8",
    "rate_counted",
)
_CLAIMED_COLUMNS = ", ".join(_COLUMNS)
_NO_CLAIM = ", ".join(["NULL"] * (len(_COLUMNS) - 1))
# The statement's rows: ('claimed', job...), and one ('rules', ...) when flow control applies to
# the worker's queues.
_RULES_ROW = f"SELECT 'rules', {_NO_CLAIM}, NULL WHERE EXISTS (SELECT 1 FROM rules)"


@dataclass
class FlowHint:
    """What a worker learnt at its last claim: whether flow control applies to its queues. It
    then starts with the flow-controlled statement (whose planning costs a few milliseconds
    more) instead of finding out with the plain one first. Never trusted for correctness: each
    statement reads ``pgjobs_queues`` itself."""

    restricted: bool = False


def _ctes(queues: Sequence[str] | None, job_names: Sequence[str] | None, *, flow: bool) -> str:
    """The claim's CTEs: the plain ones, or with ``flow`` those that apply flow control."""
    found = filters(queues, job_names)
    if not flow:
        due = _PLAIN_DUE.format(suffix="", filters=found)
        claimed = _CLAIMED.format(**_PLAIN_CLAIMED, match=_BY_TUPLE)
        return f"{flow_sql.rules_cte(queues)},\n{PENDING_PRIORITIES},\n{due},\n{claimed}"
    due = _FLOW_DUE.format(
        plain=_PLAIN_DUE.format(suffix="_plain", filters=found),
        flow=flow_sql.flow_ctes(queues, job_names),
    )
    return (
        f"{flow_sql.rules_cte(queues)},\n{PENDING_PRIORITIES},\n{due},\n"
        f"{_CLAIMED.format(**_FLOW_CLAIMED, match=_BY_KEY)},\n"
        f"{rate_starts.STARTS_CTE}"
    )


def _claim_params(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
    lease_token: uuid.UUID | None,
    start_now: int | None,
    ahead_lease_seconds: float | None = None,
    start_margin: float | None = None,
) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "limit": limit,
        "start_now": start_now,  # None: all of them (LIMIT NULL)
        "lease_seconds": lease_seconds,
        "ahead_lease_seconds": ahead_lease_seconds,  # None: lease_seconds
        # The claim's lease token, made here: a worker that loses the reply still knows it,
        # so it can give back exactly what that claim took (lease.release_lost_claims).
        "lease_token": lease_token or uuid.uuid4(),
        **filter_params(queues, job_names),
        "key_walk": max(flow_sql.MIN_KEY_WALK, 4 * limit),
        # How much later than its stamp the ledger counts this claim's starts (see
        # queries.rate_starts); None: the floor alone.
        "start_margin": start_margin or 0.0,
    }


def claim_statement(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
    lease_token: uuid.UUID | None = None,
    start_now: int | None = None,
    flow: bool = False,
    ahead_lease_seconds: float | None = None,
    start_margin: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """The claim's SQL and parameters (tests EXPLAIN exactly what the worker runs): the plain
    statement, or with ``flow`` the flow-controlled one."""
    sql = (
        f"WITH RECURSIVE {_ctes(queues, job_names, flow=flow)}\n"
        f"SELECT 'claimed', {_CLAIMED_COLUMNS} FROM claimed\nUNION ALL {_RULES_ROW}"
    )
    params = _claim_params(
        worker_id=worker_id,
        limit=limit,
        lease_seconds=lease_seconds,
        queues=queues,
        job_names=job_names,
        lease_token=lease_token,
        start_now=start_now,
        ahead_lease_seconds=ahead_lease_seconds,
        start_margin=start_margin,
    )
    return sql, params


def _claimed_jobs(rows: Sequence[Any], sent: float, token: uuid.UUID) -> list[ClaimedJob]:
    """The jobs of a claim's 'claimed' rows (the tag first, then _CLAIMED_COLUMNS), taken with
    the lease ``token``."""
    # Never raises: a payload Python cannot decode comes back as an UndecodableJSON (the
    # claim has committed; the worker buries that job and runs the others). The trace context
    # stays text, decoded only by a worker that traces (django_pgjobs.tracing). In the order
    # ClaimedJob declares its fields: id, job_name, payload, queue to scheduled_for,
    # lease_token, partition_key to seq, trace_context, stamp_after (r[13] is the place, read
    # below), claim_sent, begin_by (a rate-limited job's: the counted start on this clock, as
    # early as it can be: the statement started after it was sent), counted_at. The lease
    # token is the one the claim set, not read back: one object for the whole claim, which the
    # completion's parameters write once (queries.base.uuid_array).
    jobs = [
        claimed_job(
            (
                as_uuid(r[1]),
                r[2],
                decode_json(r[3]),
                *r[4:9],
                token,
                *r[9:13],
                *r[14:16],
                sent,
                None if r[16] is None else sent + r[16],
                r[17],
            )
        )
        for r in rows
    ]
    # UPDATE ... RETURNING gives no order: run in the order the claim chose (``start_now``
    # marked the first jobs of that order started). The flow-controlled claim says each job's
    # place in it (the merge's, where a fair queue's walk gives its picks their places).
    if not rows or rows[0][13] is None:
        # UUIDs compare in Python (UUID.__lt__); their ints in C.
        jobs.sort(key=lambda j: (-j.priority, j.scheduled_for, j.id.int))
        return jobs
    place = {job.id: r[13] for job, r in zip(jobs, rows, strict=True)}
    return sorted(jobs, key=lambda j: place[j.id])


def claim_jobs(
    cur: Cursor,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
    lease_token: uuid.UUID | None = None,
    start_now: int | None = None,
    hint: FlowHint | None = None,
    ahead_lease_seconds: float | None = None,
    start_margin: float | None = None,
    meanwhile: Callable[[int], object] | None = None,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs, best priority first, in one round trip (two when flow
    control first applies to the worker's queues, then one again: see FlowHint).

    Locks: the chosen rows, only for this autocommit statement; rows another worker is claiming
    (or an application transaction holds) are skipped, never waited for. Walks pgjobs_job_claim,
    or pgjobs_job_queue_claim for a single queue, in order and stops at ``limit``. ``job_names``
    limits the claim to handlers this worker has, so a rolling deploy never hands a new kind of
    job to an old worker. A crash after commit leaves the jobs running under a lease nobody
    renews; the rescue sweep hands them back when it expires.

    Every job of one claim gets the same ``lease_token`` (a fresh one per claim, by default made
    here): the fence is the pair (id, token), and a worker that passes its own token knows what
    the claim took even when the reply is lost. ``start_now`` says how many of the jobs (in the
    claim's order) free threads start at once (None: all); the others are claimed ahead, and
    their attempt counts only once the worker records that they started. Their lease is
    ``ahead_lease_seconds`` (None: ``lease_seconds``) until then.

    Queues with flow control (a row in pgjobs_queues) are claimed as queries.flow says: paused
    ones not at all, limited ones within their limits, exactly, across all workers.

    ``meanwhile`` runs once the claim has committed and its reply is in, before its rows are
    read, given how many jobs the plain statement took (0 when the flow-controlled one ran): the
    worker sends its next statements there (queries.sent, queries.claim_behind), so the server
    runs them while this thread makes the claim's rows into jobs. Not run if the claim's
    statement raised; run if reading its rows then raises (a loader's error), whose caller must
    still read what it sent (Completer.claim).
    """
    claim: dict[str, Any] = {
        "worker_id": worker_id,
        "limit": limit,
        "lease_seconds": lease_seconds,
        "queues": queues,
        "job_names": job_names,
        # Made here, not in the parameters: the jobs carry this very object (_claimed_jobs).
        "lease_token": uuid.uuid4() if lease_token is None else as_uuid(lease_token),
        "start_now": start_now,
        "ahead_lease_seconds": ahead_lease_seconds,
        "start_margin": start_margin,
    }
    flow = hint is not None and hint.restricted
    sent = time.monotonic()  # when the statement that claims is sent (worker.start_lag)
    # Both statements may be prepared (the worker's cursor prepares them: parse and plan were
    # most of an idle worker's claim). The flow-controlled one is run on its generic plan
    # (prepared.run_generic): PostgreSQL, left to choose, planned it again at every claim
    # (4.4 ms), and its plan reads the same rows whatever the values
    # (tests/queries/test_flow_plan.py).
    rows: list[Any] | None = None
    if not flow:
        cur.execute(*claim_statement(**claim))
        flow, rows = _only_rules(cur)
        if flow:
            # The plain statement took nothing: flow control applies. Claim with it now.
            sent, rows = time.monotonic(), None
    if flow:
        run_generic(cur, *claim_statement(**claim, flow=True))
    if meanwhile is not None:
        # Before the rows are read: the server runs what it sends while they are.
        result = getattr(cur, "pgresult", None)
        meanwhile(0 if flow or result is None else result.ntuples)
    if rows is None:
        rows = cur.fetchall()
    return claimed_from(rows, sent=sent, lease_token=claim["lease_token"], hint=hint)


def claimed_from(
    rows: Sequence[Any],
    *,
    sent: float,
    lease_token: uuid.UUID,
    hint: FlowHint | None,
) -> list[ClaimedJob]:
    """The jobs of a claim's reply ``rows`` (sent at ``sent``, monotonic, with ``lease_token``),
    and what the reply says of flow control: its 'rules' row comes with the flow-controlled
    statement's jobs, or alone when the plain statement found that flow control applies."""
    if hint is not None:
        hint.restricted = any(r[0] == "rules" for r in rows)
    return _claimed_jobs([r for r in rows if r[0] == "claimed"], sent, lease_token)


def _only_rules(cur: Any) -> tuple[bool, list[Any] | None]:
    """Whether the plain claim's reply is its one 'rules' row (flow control applies to the
    worker's queues, and then it takes nothing: ``_PLAIN_DUE``). Told from the raw result, so
    that the rows are made into Python values only after ``meanwhile`` has sent its statement;
    from the rows (returned too) when the cursor has no result yet: in a caller's pipeline
    (``conn.pipeline()``) the reply is read at the fetch."""
    result = getattr(cur, "pgresult", None)
    if result is None:
        rows = cur.fetchall()
        return [r[0] for r in rows] == ["rules"], rows
    return rules_alone(result), None


def rules_alone(result: Any) -> bool:
    """Whether a claim's raw result (libpq's) is its one 'rules' row: the plain statement found
    that flow control applies, and took nothing."""
    return bool(result.ntuples == 1 and result.get_value(0, 0) == b"rules")
