"""What every statement module shares: the cursor protocol, the claimed job, fencing tokens, and
the SQL pieces that must read the same everywhere (the fence, clearing a lease, waking workers,
a workflow's job)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

NOTIFY_CHANNEL = "pgjobs"
# A running job was cancelled: the payload is '<job id>:<lease token>' of the attempt that lost
# it, so its worker can tell that attempt (see RunningAttempt.is_cancelled) within
# milliseconds instead of at its next heartbeat.
CANCEL_CHANNEL = "pgjobs_cancel"

# A workflow runs as the job ``pgjobs.workflow:<app version>`` with the key
# ``pgjobs.workflow:<id>``; a schedule's tick is keyed ``pgjobs.cron:<name>:<fire time>``. Job
# names and keys starting with ``pgjobs.`` are the library's own: no user job or key may take one
# (jobs.validation.RESERVED_PREFIX, and pgjobs_enqueue() since migration 0010), so a client's key
# can neither swallow a tick nor block a workflow id.
WORKFLOW_JOB_PREFIX = "pgjobs.workflow:"
WORKFLOW_KEY_PREFIX = "pgjobs.workflow:"
CRON_KEY_PREFIX = "pgjobs.cron:"

# (job id, lease token): what a worker presents to prove it still holds an attempt.
Token = tuple[uuid.UUID, uuid.UUID]

ACTIVE = "('pending', 'running')"
# The partial unique index pgjobs_job_key_active, spelled so ON CONFLICT can infer it.
KEY_CONFLICT = f"ON CONFLICT (key) WHERE key IS NOT NULL AND status IN {ACTIVE}"
# The (id, lease token) pairs a statement is given, as a relation.
HELD = "unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS held(id, token)"
# The same with how long each attempt ran, for the statements that end attempts, and each pair's
# place in the batch (from 1): a reply can name the attempts it matched by place, which the
# caller maps back to its own without parsing two uuids a row.
FINISHED = (
    "unnest(%(ids)s::uuid[], %(tokens)s::uuid[], %(took)s::float8[]) WITH ORDINALITY "
    "AS held(id, token, took, place)"
)


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
    partition_key: str | None = None
    # Seconds this attempt may run: the job's own timeout, and its queue's (None: not set).
    # The handler's and PGJOBS["TIMEOUT"] come between them (jobs.timeouts).
    timeout: float | None = None
    queue_timeout: float | None = None
    seq: int | None = None  # enqueue order (None: enqueued before migration 0017)
    # The enqueuing span's carrier, as JSON text (None: enqueued outside a span, or by SQL).
    trace_context: str | None = None
    # A rate-limited queue's job: seconds from the claim statement's start to its stamp, the
    # time its start is counted at (None for other jobs). See queries.rate_starts.
    stamp_after: float | None = None
    # When the statement that claimed it was sent (time.monotonic()), for the same measure.
    claim_sent: float | None = None
    # A rate-limited job's: the time.monotonic() its handler must begin by, or not at all (the
    # ledger counts its start then: queries.rate_starts). None for other jobs.
    begin_by: float | None = None
    # ... and that time, the ledger's: a job given back unstarted is taken out of it there.
    counted_at: datetime | None = None

    @property
    def token(self) -> Token:
        return (self.id, self.lease_token)


_CLAIMED_FIELDS = tuple(f.name for f in fields(ClaimedJob))


def claimed_job(values: Sequence[Any]) -> ClaimedJob:
    """A :class:`ClaimedJob` of its field values, in the order they are declared. The worker's
    loop thread makes one per job it claims: the frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` per field) took 2.2 us a job there, filling its ``__dict__`` 0.7."""
    job = object.__new__(ClaimedJob)
    job.__dict__.update(zip(_CLAIMED_FIELDS, values, strict=True))
    return job


# The fence: the row is still held by the attempt with this token (params from lease_params).
# ``(status = 'running') IS TRUE`` (the column is never NULL) is the same check in a form no
# partial index's predicate matches: written ``status = 'running'``, it let the planner find the
# row through one of the partial indexes of running jobs, which statistics taken while none ran
# make look like a row or two, and read every running job of every worker (5,000 entries in
# tests/queries/test_batch_plans.py) for each progress report, failure or workflow checkpoint.
# So the key is the way in.
FENCE = "id = %(job_id)s AND lease_token = %(token)s AND (status = 'running') IS TRUE"
# The same for a batch: rows of ``j`` joined to the pairs of HELD, looked up by key (as many as
# the batch). Written ``j.status = 'running'``, the join let the planner read the running jobs
# through one of those partial indexes: it hashed every running job of every worker (dead index
# entries included) to match a batch against them, so each completion and heartbeat cost grew
# with the running set, not with its batch. ``IS TRUE`` as in FENCE, rechecked on a row's newest
# version as it is locked; the array subquery (of unknown size to the planner, as the claim's)
# makes the key the way in (tests/queries/test_batch_plans.py).
HELD_JOIN = (
    "j.id = held.id AND j.lease_token = held.token AND (j.status = 'running') IS TRUE "
    "AND j.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[])))"
)
# This attempt still holds the job: the fence of every write a running attempt makes outside the
# worker's batches (a workflow's statements).
HOLDS_LEASE = f"EXISTS (SELECT 1 FROM pgjobs_job_queue WHERE {FENCE})"
# The worker's writes of an attempt's end never wait for a row an application transaction holds
# (a SELECT ... FOR UPDATE around the job, an admin's edit): waiting would stall the worker's
# loop, its claims and heartbeats behind it, for as long as that transaction lasts, and behind
# PgBouncer in transaction mode no session lock_timeout can bound the wait. ``mine`` locks the
# attempt's row unless another transaction holds it; the write then touches only ``mine``'s rows.
# A row skipped is written as nothing: the caller tells it from a lost attempt with
# lease.no_longer_held (the attempt still holds it) and writes the outcome again later.
# MATERIALIZED: inlined into the write (a CTE used once may be), its rows were found through the
# write's own scan of the table, which waited for the held row (PostgreSQL 18).
# FOR NO KEY UPDATE, the lock an UPDATE takes: an application inserting a row that references
# the job (a foreign key's FOR KEY SHARE) does not make it skip. A DELETE (burying) needs
# FOR UPDATE (MINE_TO_DELETE).
MINE = f"""mine AS MATERIALIZED (
    SELECT id FROM pgjobs_job_queue WHERE {FENCE} FOR NO KEY UPDATE SKIP LOCKED
)"""
MINE_TO_DELETE = f"""mine AS MATERIALIZED (
    SELECT id FROM pgjobs_job_queue WHERE {FENCE} FOR UPDATE SKIP LOCKED
)"""

# The SET list that ends an attempt's hold on its row: whoever presents the old token afterwards
# matches nothing. locked_at and locked_by stay: when the latest attempt started and which
# worker ran it (a task's last_attempted_at and worker_ids).
CLEAR_LEASE = "lease_expires_at = NULL, lease_token = NULL"
# Undoing a claim (its handler never started, a handler snoozed, or a workflow gave its job back
# to wait): the attempt does not count, and leaves no trace of it, the progress it reported
# included. For rows aliased ``j``.
UNDO_CLAIM = (
    f"status = 'pending', attempt = j.attempt - 1, locked_at = NULL, locked_by = NULL, "
    f"progress = NULL, progress_message = NULL, {CLEAR_LEASE}"
)

# A job keeps the newest ERROR_HISTORY_LIMIT failed attempts in ``error_history``, each error's
# text cut to HISTORY_ERROR_LENGTH characters (head and tail): a job retried for days must not
# grow a row every claim rewrites. ``error`` keeps the latest failure in full.
ERROR_HISTORY_LIMIT = 20
HISTORY_ERROR_LENGTH = 8000


def started(took: str) -> str:
    """SQL: when the attempt of row ``j`` started. A job claimed ahead whose start the worker
    had not yet recorded (``locked_at`` NULL) started ``took`` seconds (an SQL expression) ago."""
    return f"coalesce(j.locked_at, now() - make_interval(secs => coalesce({took}, 0)))"


# A jsonpath for the newest ERROR_HISTORY_LIMIT - 1 entries of an array that has at least that.
_NEWEST_KEPT = f"'$[last - {ERROR_HISTORY_LIMIT - 2} to last]'"


def append_failure(*, error: str, exception: str, took: str) -> str:
    """SQL: row ``j``'s ``error_history`` with its current attempt's failure appended (the
    oldest entries dropped at the limit). ``error``, ``exception`` (the exception's class path)
    and ``took`` are SQL expressions. A history that is not an array (written by SQL) restarts,
    so no stored value can make a failure unwritable."""
    half = HISTORY_ERROR_LENGTH // 2
    return f"""(
        CASE WHEN jsonb_typeof(j.error_history) IS DISTINCT FROM 'array' THEN '[]'::jsonb
             WHEN jsonb_array_length(j.error_history) >= {ERROR_HISTORY_LIMIT}
             -- the newest LIMIT - 1 entries: also shrinks a longer history written by SQL
             THEN jsonb_path_query_array(j.error_history, {_NEWEST_KEPT})
             ELSE j.error_history END
        || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'worker', j.locked_by, 'started_at', {started(took)},
            'failed_at', now(), 'exception', {exception},
            'error', CASE WHEN length({error}) > {HISTORY_ERROR_LENGTH}
                          THEN left({error}, {half}) || E'\n...\n' || right({error}, {half})
                          ELSE {error} END)))"""


# What ending an attempt records of its start, beside its outcome: the first attempt's start
# (started_at) and this one's (locked_at, when it ran claimed ahead and the heartbeat had not
# recorded it yet). For rows aliased ``j``; ``took`` as in :func:`started`.
def record_start(took: str) -> str:
    return f"started_at = coalesce(j.started_at, {started(took)}), locked_at = {started(took)}"


def w3c_trace(trace_context: str) -> str:
    """The SQL of ``trace_context`` (a job's jsonb column) as a copy carries it forward: its
    ``traceparent`` and ``tracestate`` only, or NULL without either. Rows written before the
    enqueue stopped storing baggage (or by SQL) may hold a ``baggage`` key, often user data;
    a dead letter and the job requeued from it need only the trace. A value that is not an
    object (which the run ignores) is kept as it is."""
    return (
        f"CASE WHEN jsonb_typeof({trace_context}) = 'object' THEN nullif(jsonb_strip_nulls("
        f"jsonb_build_object('traceparent', {trace_context} -> 'traceparent', "
        f"'tracestate', {trace_context} -> 'tracestate')), '{{}}'::jsonb) "
        f"ELSE {trace_context} END"
    )


def notify_queues(rows: str, where: str = "") -> str:
    """A scalar subquery that wakes idle workers of each queue in ``rows`` (a relation with a
    ``queue`` column): one NOTIFY per queue, delivered at commit, never on rollback. Evaluates to
    how many were sent."""
    return (
        f"(SELECT count(pg_notify('{NOTIFY_CHANNEL}', q.queue)) "
        f"FROM (SELECT DISTINCT queue FROM {rows} {where}) AS q)"
    )


def local_time_text(moment: str) -> str:
    """SQL: the timestamptz ``moment`` (an SQL expression) as ``display.local_time`` writes it,
    ``2026-12-03 15:04:05+0100``, in the zone the ``%(time_zone)s`` parameter names, for text
    written by SQL that people read (a rescue's error). Not ``moment::text``: that is the
    session's zone with microseconds, ``13:11:57.648235+00``. The offset is the zone's at that
    moment, daylight saving included."""
    local = f"({moment} AT TIME ZONE %(time_zone)s)"
    offset = f"({local} - ({moment} AT TIME ZONE 'UTC'))"
    return (
        f"to_char({local}, 'YYYY-MM-DD HH24:MI:SS') "
        f"|| CASE WHEN {offset} < interval '0' THEN '-' ELSE '+' END "
        f"|| to_char(greatest({offset}, -{offset}), 'HH24MI')"
    )


def workflow_key(workflow_id: str) -> str:
    """SQL for the key of the job running the workflow ``workflow_id`` (an SQL expression)."""
    return f"'{WORKFLOW_KEY_PREFIX}' || {workflow_id}"


def holds_workflow_job(workflow_id: str) -> str:
    """SQL: this attempt (params from lease_params) holds the job keyed for the workflow
    ``workflow_id`` (an SQL expression): its own job, not a stray row under a workflow's name
    (a plain INSERT), which must never run the workflow beside its own job."""
    return (
        f"EXISTS (SELECT 1 FROM pgjobs_job_queue WHERE {FENCE} "
        f"AND key = {workflow_key(workflow_id)})"
    )


def workflow_job_name(app_version: str) -> str:
    """SQL for the name of the job that runs workflows of ``app_version`` (an SQL expression)."""
    return f"'{WORKFLOW_JOB_PREFIX}' || {app_version}"


def is_workflow_job(job_name: str = "job_name") -> str:
    """SQL: the job (or dead letter) named ``job_name`` runs a workflow. (%% is a literal %.)"""
    return f"{job_name} LIKE '{WORKFLOW_JOB_PREFIX}%%'"


def lease_params(token: Token) -> dict[str, Any]:
    return {"job_id": token[0], "token": token[1]}


def token_params(tokens: Sequence[Token]) -> dict[str, str]:
    """The pairs for HELD, as two uuid[] literals: a batch holds hundreds, and psycopg's list
    dumper, one Python call per element, cost more than the statement's own parse."""
    return {"ids": uuid_array(t[0] for t in tokens), "tokens": uuid_array(t[1] for t in tokens)}


def uuid_array(values: Iterable[uuid.UUID]) -> str:
    """A PostgreSQL uuid[] literal (sent as text, cast by ``::uuid[]`` in the statement). A
    value that is the very object before it (the jobs of one claim share its lease token) is
    written out once; ``%x`` of the integer, not ``UUID.hex``, saves a property call a value."""
    texts: list[str] = []
    last: uuid.UUID | None = None
    text = ""
    for value in values:
        if value is not last:
            last, text = value, "%032x" % value.int  # noqa: UP031 (the cheaper of the two)
        texts.append(text)
    return "{" + ",".join(texts) + "}"


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


# The queues of pending jobs, in name order, without reading every row: a recursive CTE
# ``name(queue)`` whose each step jumps to the next queue in pgjobs_job_queue_claim (a "skip
# scan", one index descent per queue); its last row is NULL. Used after ``WITH RECURSIVE`` by
# the claim, the dashboard and the metrics.
def pending_queues(name: str = "queues") -> str:
    return f"""{name}(queue) AS (
    (SELECT queue FROM pgjobs_job_queue WHERE status = 'pending' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM pgjobs_job_queue AS j
            WHERE j.status = 'pending' AND j.queue > q.queue ORDER BY j.queue LIMIT 1)
    FROM {name} AS q WHERE q.queue IS NOT NULL
)"""


# The priorities of pending jobs, highest first, without reading every row: a recursive CTE
# ``pending_priorities(priority)``, each step one descent of pgjobs_job_claim (priority DESC,
# scheduled_for, id); its last row is NULL. Within one priority that index is in due order, so
# "the earliest pending jobs" is one range of it per priority, whatever the table's statistics
# say (an index on scheduled_for alone was dropped for that: migration 0023).
PENDING_PRIORITIES = """pending_priorities(priority) AS (
    (SELECT priority FROM pgjobs_job_queue WHERE status = 'pending'
     ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT j.priority FROM pgjobs_job_queue AS j
            WHERE j.status = 'pending' AND j.priority < p.priority
            ORDER BY j.priority DESC LIMIT 1)
    FROM pending_priorities AS p WHERE p.priority IS NOT NULL
)"""
