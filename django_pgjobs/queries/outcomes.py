"""What became of an attempt: completed, or failed and then retried or buried (moved to the
dead letters), or cancelled by its own handler. The worker's completer is the only caller.

Every write here is fenced on the attempt's lease token (see the package docstring): an attempt
whose job was rescued or cancelled meanwhile matches nothing, and its outcome is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from django_pgjobs.queries.base import (
    CLEAR_LEASE,
    FINISHED,
    HELD_JOIN,
    MINE,
    MINE_TO_DELETE,
    UNDO_CLAIM,
    Cursor,
    Token,
    append_failure,
    lease_params,
    notify_queues,
    record_start,
    token_params,
    w3c_trace,
)
from django_pgjobs.queries.sent import Sent, encoded_texts, numbered

# Completing finished attempts, fenced on their lease tokens (see complete_jobs), skipping rows
# another transaction holds (``mine``), and writing how the workflows some of them ran ended.
# ``done`` says which attempts it completed, by token: a batch can hold two attempts of one job
# (a stale one, whose job was rescued and claimed again by the same worker), of which only the
# one holding the row matches. ``results`` maps an attempt's place in the batch (text) to the
# return value its handler kept; ``->`` is NULL for others. By place, not by lease token: every
# job of one claim has the same token, and keyed so, the tasks of one claim completed in one
# batch all stored the same value. The update takes each row by the tuple id ``mine`` locked (a
# Tid Scan), where a join on the id looked every attempt up in the key a second time (a tenth of
# the write's time: benchmarks/README.md, the ninth round). ``mine``'s lock holds the row where
# it is until the statement commits; a row another transaction updated and committed after this
# statement's snapshot, locked in its newest version, is not visible to the update by that
# version's tuple id: the attempt is not in ``done``, and the worker, finding it still held
# (lease.no_longer_held), writes it again. The id and token are checked again on the row the
# tuple id found (a filter, no lookup): a tuple id alone names a row only within one table.
#
# A workflow ends with its job's completion, in this statement (``endings``: place -> the
# ending's JSON, jobs.context.WorkflowEnding; NULL when no attempt of the batch ended one), so a
# workflow is never completed behind a job that is not, nor a job behind a workflow still
# running, whatever crashes between (benchmarks/README.md, the twenty-second round: a handler
# thread no longer waits for a commit of its own at the end of each workflow). ``ending`` locks
# those workflows' rows first (a workflow row before its job row, as everywhere) and skips one
# another transaction holds, as ``mine`` skips a job: that attempt is left out of ``mine``, so
# not completed, and written again like a held job. A workflow no longer running or pending
# (cancelled meanwhile) keeps what it is and its job completes all the same: the attempt comes
# back as ``-place``. ``ended`` writes the rest and wakes their waiters, whose rows an
# application's transaction may hold: ``lock_timeout`` (for this statement's transaction only;
# NULL inside a caller's transaction, which it would outlast) bounds those waits, as
# worker.lock_waits bounds a bury's.
COMPLETED_CTE = f"""ending AS MATERIALIZED (
    SELECT f.key::int AS place, w.workflow_id, w.status IN ('running', 'pending') AS open,
           f.value AS ending,
           CASE WHEN %(lock_timeout)s::text IS NOT NULL
                THEN set_config('lock_timeout', %(lock_timeout)s::text, true) END
    FROM jsonb_each(%(endings)s::jsonb) AS f
    JOIN pgjobs_workflow_executions AS w ON w.workflow_id = f.value ->> 'id'
    FOR NO KEY UPDATE OF w SKIP LOCKED
),
mine AS MATERIALIZED (
    SELECT j.id, j.ctid, held.token, held.took, held.place
    FROM pgjobs_job_queue AS j JOIN {FINISHED} ON {HELD_JOIN}
    WHERE %(endings)s::jsonb IS NULL OR NOT %(endings)s::jsonb ? held.place::text
       OR held.place IN (SELECT place FROM ending)
       OR NOT EXISTS (
           SELECT FROM pgjobs_workflow_executions AS w
           WHERE w.workflow_id = %(endings)s::jsonb -> held.place::text ->> 'id')
    FOR NO KEY UPDATE OF j SKIP LOCKED
),
done AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'completed', completed_at = now(), result = %(results)s::jsonb -> mine.place::text,
        {record_start("mine.took")}, {CLEAR_LEASE}
    FROM mine WHERE j.ctid = mine.ctid AND j.id = mine.id AND j.lease_token = mine.token
    RETURNING j.id, mine.token, mine.place
),
ended AS (
    UPDATE pgjobs_workflow_executions AS w
    SET status = ending.ending ->> 's', output = ending.ending -> 'o',
        error = ending.ending -> 'e', completed_at = now(), updated_at = now()
    FROM ending JOIN done ON done.place = ending.place
    WHERE w.workflow_id = ending.workflow_id AND ending.open
    RETURNING ending.place, pgjobs_workflow_wake('result:' || w.workflow_id)
)"""
# The reply: each attempt completed, by its place in the batch; negated when it had ended a
# workflow and that ending was not written (see COMPLETED_CTE). When no attempt of the batch
# ended a workflow, the CASE is NULL and neither subquery runs.
_COMPLETED = f"""WITH {COMPLETED_CTE}
SELECT CASE WHEN %(endings)s::jsonb ? place::text AND place NOT IN (SELECT place FROM ended)
            THEN -place ELSE place END
FROM done"""
# The parameters of COMPLETED_CTE (finished_params), in the order send_completion numbers them.
_FINISHED_NAMES = ("ids", "tokens", "took", "results", "endings", "lock_timeout")
# COMPLETED_CTE for send_completion.
_SENT_COMPLETION = numbered(_COMPLETED, _FINISHED_NAMES)


class Completed(list[Token]):
    """The attempts a completion wrote (by token), and among them those that had ended a
    workflow whose ending it did not write (``endings_dropped``: the workflow was no longer
    running or pending, cancelled meanwhile)."""

    def __init__(self, tokens: Sequence[Token], places: Iterable[int]) -> None:
        super().__init__()
        dropped = []
        for place in places:
            token = tokens[abs(place) - 1]
            self.append(token)
            if place < 0:
                dropped.append(token)
        self.endings_dropped = frozenset(dropped)


def finished_params(
    tokens: Sequence[Token],
    took: Sequence[float | None] | None = None,
    results: Sequence[str | None] | None = None,
    endings: Sequence[str | None] | None = None,
    lock_timeout: str | None = None,
) -> dict[str, Any]:
    """The parameters of COMPLETED_CTE: the attempts' tokens, how long each ran, the result
    each kept and the workflow each ended (both as JSON text), all in the same order (None:
    unknown, or none); ``lock_timeout`` bounds the waits of the wake-ups of a workflow's ending
    (None: unbounded, inside a caller's transaction)."""
    return {
        **token_params(tokens),
        # A float8[] literal, as token_params sends the uuids: cheaper than the list dumper.
        "took": "{" + ",".join("NULL" if t is None else repr(float(t)) for t in took) + "}"
        if took is not None
        else None,
        "results": _by_place(results),
        "endings": _by_place(endings),
        "lock_timeout": lock_timeout,
    }


def _by_place(values: Sequence[str | None] | None) -> str | None:
    """One jsonb object, place in the batch (from 1) -> value: the texts are JSON already, so
    joining them is cheaper than a jsonb[] parameter; NULL when none of the batch has one."""
    if values is None or all(v is None for v in values):
        return None
    return "{" + ",".join(f'"{i}":{v}' for i, v in enumerate(values, 1) if v is not None) + "}"


def complete_jobs(
    cur: Cursor,
    *,
    tokens: Sequence[Token],
    took: Sequence[float | None] | None = None,
    results: Sequence[str | None] | None = None,
    endings: Sequence[str | None] | None = None,
    lock_timeout: str | None = None,
) -> Completed:
    """Mark many finished attempts completed in one statement, with the workflows they ended;
    returns the attempts (job id, lease token) it completed.

    ``took``, ``results``, ``endings`` and ``lock_timeout`` as in :func:`finished_params`.
    Fenced on (id, lease_token, running): an attempt whose job was rescued or cancelled
    meanwhile matches nothing and its outcome is dropped (the workflow it ended, if any, runs
    again from its checkpoints). Locks: those rows and their workflows' rows, briefly; a row
    another transaction holds is skipped, not waited for (COMPLETED_CTE: the attempt still
    holds it, and the worker writes it again). A crash before this commits leaves the jobs
    running; they are rescued and run again (at-least-once).
    """
    if not tokens:
        return Completed(tokens, ())
    cur.execute(_COMPLETED, finished_params(tokens, took, results, endings, lock_timeout))
    return Completed(tokens, (place for (place,) in cur.fetchall()))


class SentCompletion:
    """:func:`complete_jobs` on its way (:func:`send_completion`): :meth:`reply` says which of
    its attempts it completed."""

    def __init__(self, sent: Sent, tokens: Sequence[Token]) -> None:
        self._sent = sent
        self._tokens = tokens

    def reply(self) -> Completed:
        """Wait for the write; the attempts it completed, as complete_jobs returns them."""
        return Completed(self._tokens, self._sent.reply())


def completion_statement(
    conn: psycopg.Connection[Any],
    tokens: Sequence[Token],
    took: Sequence[float | None] | None = None,
    results: Sequence[str | None] | None = None,
    endings: Sequence[str | None] | None = None,
    lock_timeout: str | None = None,
) -> tuple[bytes, list[bytes | None], None, None]:
    """:func:`send_completion`'s statement and its parameters, encoded for libpq (texts, their
    types left to the server), as queries.claim_behind sends it."""
    params = finished_params(tokens, took, results, endings, lock_timeout)
    return _SENT_COMPLETION, encoded_texts(conn, [params[n] for n in _FINISHED_NAMES]), None, None


def send_completion(
    conn: psycopg.Connection[Any],
    *,
    tokens: Sequence[Token],
    took: Sequence[float | None] | None = None,
    results: Sequence[str | None] | None = None,
    endings: Sequence[str | None] | None = None,
    lock_timeout: str | None = None,
) -> SentCompletion:
    """:func:`complete_jobs` (the same statement, fenced and locking the same way) sent without
    waiting for it (queries.sent): the caller reads :meth:`SentCompletion.reply` before its next
    statement on ``conn``, which must be idle and in autocommit (the write commits on its own).
    A crash before it commits leaves the jobs running, as complete_jobs says."""
    params = finished_params(tokens, took, results, endings, lock_timeout)
    sent = Sent(conn, _SENT_COMPLETION, [params[name] for name in _FINISHED_NAMES])
    return SentCompletion(sent, tokens)


# A failing attempt's row ``j`` with its failure ``f`` (error, exception, took) in the history.
_FAILURE_RECORDED = append_failure(error="f.error", exception="f.exception", took="f.took")

# The dead letter's columns, in pgjobs_failed_jobs' order below, from a job row ``j`` that is
# being deleted with its failure ``f``.
DEAD_LETTER_COLUMNS = (
    "id, job_name, payload, queue, priority, attempt, max_attempts, error, original_created_at, "
    "started_at, metadata, error_history, trace_context, partition_key, timeout"
)


def dead_letter_values(error: str, history: str) -> str:
    """The RETURNING list that moves row ``j`` to the dead letters (DEAD_LETTER_COLUMNS); its
    trace context without anything but the trace (:func:`w3c_trace`)."""
    return (
        "j.id, j.job_name, j.payload, j.queue, j.priority, j.attempt, j.max_attempts, "
        f"{error}, j.created_at, coalesce(j.started_at, j.locked_at), j.metadata, {history}, "
        f"{w3c_trace('j.trace_context')}, j.partition_key, j.timeout"
    )


# Shared by fail and rescue: given the rows in CTE ``failing`` (already locked, each with its
# error, exception class, how long it ran and delay), bury those out of attempts and send the
# rest back to pending, in one statement. The two branches test opposite conditions, so no row
# is touched twice. RETRY_OR_BURY_CTES are the CTEs alone, for a statement that adds its own.
RETRY_OR_BURY_CTES = f"""
buried AS (
    DELETE FROM pgjobs_job_queue AS j USING failing AS f
    WHERE j.id = f.id AND j.attempt >= j.max_attempts
    RETURNING {dead_letter_values("f.error", _FAILURE_RECORDED)}
),
dead AS (
    INSERT INTO pgjobs_failed_jobs ({DEAD_LETTER_COLUMNS})
    SELECT * FROM buried
    RETURNING id
),
retried AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'pending', error = f.error, error_history = {_FAILURE_RECORDED},
        {record_start("f.took")}, {CLEAR_LEASE},
        scheduled_for = now() + make_interval(secs => f.delay)
    FROM failing AS f
    WHERE j.id = f.id AND j.attempt < j.max_attempts
    RETURNING j.id, j.queue, f.delay
)"""
RETRY_OR_BURY = f"""{RETRY_OR_BURY_CTES}
-- Jobs due again at once (rescues) wake idle workers; delayed retries are picked up by the
-- failing worker's own timer or by polling.
SELECT (SELECT count(*) FROM retried), (SELECT count(*) FROM dead),
       {notify_queues("retried", "WHERE delay <= 0")}
"""

FailOutcome = Literal["retried", "buried", "lost"]


def fail_job(
    cur: Cursor,
    *,
    token: Token,
    error: str,
    delay: float,
    spare: bool = False,
    exception: str | None = None,
    took: float | None = None,
    last: bool = False,
) -> FailOutcome:
    """Record a failed attempt: back to pending after ``delay`` seconds, or dead-lettered.

    One statement, so a job is never both gone from the queue and missing from the dead letters.
    Fenced like :func:`complete_jobs`; returns "lost" when this attempt no longer owns the job.
    ``spare``: the attempt failed because its database connection was lost (an outage, not the
    job's fault), so it is not counted, once per job (``attempt_spared``): a job whose every
    attempt loses its connection still ends in the dead letters. The failure joins the job's
    ``error_history`` with ``exception`` (the class path of what was raised) and when the
    attempt started (``took`` seconds ago when its start was not recorded). Locks: the job row,
    unless another transaction holds it ("lost" then too: base.MINE). ``last``: the caller
    expects the attempt to be the job's last (it moves the row to the dead letters), so the row
    is locked as for a delete (base.MINE_TO_DELETE): a lock a foreign key's check holds on it
    then makes it skip the row, where upgrading a weaker lock to delete it would wait. A crash
    before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        f"""
        WITH {MINE_TO_DELETE if last else MINE},
        failing AS (
            SELECT id, %(error)s::text AS error, %(delay)s::float8 AS delay,
                   %(exception)s::text AS exception, %(took)s::float8 AS took
            FROM pgjobs_job_queue
            WHERE id IN (SELECT id FROM mine) AND NOT (%(spare)s AND NOT attempt_spared)
        ),
        spared AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM}, attempt_spared = true, error = %(error)s,
                error_history = {_GIVEN_FAILURE_RECORDED},
                scheduled_for = now() + make_interval(secs => %(delay)s)
            WHERE j.id IN (SELECT id FROM mine) AND %(spare)s AND NOT j.attempt_spared
            RETURNING j.queue, %(delay)s::float8 AS delay
        ),
        {RETRY_OR_BURY_CTES}
        SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM spared),
               (SELECT count(*) FROM dead),
               {notify_queues(_DUE_AGAIN, "WHERE delay <= 0")}
        """,
        {
            **lease_params(token),
            "error": error,
            "delay": delay,
            "spare": spare,
            "exception": exception,
            "took": took,
        },
    )
    retried, buried, _ = cur.fetchone()
    if buried:
        return "buried"
    return "retried" if retried else "lost"


# A failure given as parameters joins the history: a spared attempt's (it ran and failed,
# though it does not count) and one buried at once.
_GIVEN_FAILURE_RECORDED = append_failure(
    error="%(error)s::text", exception="%(exception)s::text", took="%(took)s::float8"
)

# The rows fail_job sent back to pending (a relation for notify_queues).
_DUE_AGAIN = "(SELECT queue, delay FROM retried UNION ALL SELECT queue, delay FROM spared) AS r"


# Burying an attempt's job whatever attempts it has left (see bury_job); the same move to the
# dead letters as RETRY_OR_BURY's, for one fenced row.
_BURY_NOW = f"""
WITH {MINE_TO_DELETE},
buried AS (
    DELETE FROM pgjobs_job_queue AS j
    WHERE j.id IN (SELECT id FROM mine)
    RETURNING {dead_letter_values("%(error)s::text", _GIVEN_FAILURE_RECORDED)}
),
dead AS (
    INSERT INTO pgjobs_failed_jobs ({DEAD_LETTER_COLUMNS})
    SELECT * FROM buried
    RETURNING id
)
SELECT count(*) FROM dead
"""


def bury_job(
    cur: Cursor,
    *,
    token: Token,
    error: str,
    exception: str | None = None,
    took: float | None = None,
) -> Literal["buried", "lost"]:
    """Record a failed attempt that no retry can cure (its payload cannot be decoded, or the
    handler said not to retry): the job moves to the dead letters now, attempts left or not.

    One statement, fenced like :func:`fail_job` (``exception`` and ``took`` as there); "lost"
    when this attempt no longer owns the job or another transaction holds its row (base.MINE).
    Locks: the job row. A crash before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        _BURY_NOW,
        {**lease_params(token), "error": error, "exception": exception, "took": took},
    )
    (buried,) = cur.fetchone()
    return "buried" if buried else "lost"


def cancel_held_job(
    cur: Cursor,
    *,
    token: Token,
    error: str,
    exception: str | None = None,
    took: float | None = None,
) -> Literal["cancelled", "lost"]:
    """A handler raised ``Cancel``: its job ends ``cancelled`` now, never retried, with
    ``error`` (the reason) recorded and the attempt in ``error_history`` (``exception`` and
    ``took`` as in :func:`fail_job`). "lost" when this attempt no longer owns the job (fenced)
    or another transaction holds its row (base.MINE).

    Locks the job row (primary key). A crash before commit leaves it running until its lease is
    rescued; the attempt then counts and the job runs again.
    """
    cur.execute(
        f"""
        WITH {MINE}
        UPDATE pgjobs_job_queue AS j
        SET status = 'cancelled', completed_at = now(), error = %(error)s,
            error_history = {_GIVEN_FAILURE_RECORDED}, {record_start("%(took)s::float8")},
            {CLEAR_LEASE}
        WHERE j.id IN (SELECT id FROM mine)
        RETURNING j.id
        """,
        {**lease_params(token), "error": error, "exception": exception, "took": took},
    )
    return "cancelled" if cur.fetchone() is not None else "lost"


@dataclass(frozen=True)
class JobState:
    status: str  # a job's status, or "dead" for a dead letter
    attempt: int
    error: str | None


def find_job_state(cur: Cursor, *, job_id: uuid.UUID) -> JobState | None:
    """Where a job is now, queue or dead letters: how a worker whose write of an outcome lost its
    reply tells whether that write committed. Reads by primary key; locks nothing. None when the
    job is in neither (pruned, or deleted by an operator)."""
    cur.execute(
        """
        SELECT status, attempt, error FROM pgjobs_job_queue WHERE id = %(id)s
        UNION ALL
        SELECT 'dead', attempt, error FROM pgjobs_failed_jobs WHERE id = %(id)s
        """,
        {"id": job_id},
    )
    row = cur.fetchone()
    return None if row is None else JobState(str(row[0]), int(row[1]), row[2])
