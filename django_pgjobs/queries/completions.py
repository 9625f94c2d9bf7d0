"""Completing finished attempts, in batches: a job's ``running -> completed``, with the ending of
the workflow it ran, if any (``pending, running -> completed, failed`` of the workflow). The
worker's completer is the only caller (see queries.outcomes for the other ends of an attempt).

Every write here is fenced on the attempt's lease token (see the package docstring): an attempt
whose job was rescued or cancelled meanwhile matches nothing, and its outcome is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import psycopg

from django_pgjobs.queries.base import (
    CLEAR_LEASE,
    FINISHED,
    HELD_JOIN,
    Cursor,
    Token,
    record_start,
    token_params,
)
from django_pgjobs.queries.sent import Sent, encoded_texts, numbered


# Completing finished attempts, fenced on their lease tokens (see complete_jobs), skipping rows
# another transaction holds (``mine``: see base.MINE). ``done`` says which attempts it completed,
# by token: a batch can hold two attempts of one job (a stale one, whose job was rescued and
# claimed again by the same worker), of which only the one holding the row matches. ``results``
# maps an attempt's place in the batch (text) to the return value its handler kept; ``->`` is
# NULL for others. By place, not by lease token: every job of one claim has the same token, and
# keyed so, the tasks of one claim completed in one batch all stored the same value. The update
# takes each row by the tuple id ``mine`` locked (a Tid Scan), where a join on the id looked
# every attempt up in the key a second time (a tenth of the write's time: benchmarks/README.md,
# the ninth round). ``mine``'s lock holds the row where it is until the statement commits; a row
# another transaction updated and committed after this statement's snapshot, locked in its
# newest version, is not visible to the update by that version's tuple id: the attempt is not in
# ``done``, and the worker, finding it still held (lease.no_longer_held), writes it again. The id
# and token are checked again on the row the tuple id found (a filter, no lookup): a tuple id
# alone names a row only within one table.
def _completed_cte(done_where: str = "") -> str:
    return f"""mine AS MATERIALIZED (
    SELECT j.id, j.ctid, held.token, held.took, held.place
    FROM pgjobs_job_queue AS j JOIN {FINISHED} ON {HELD_JOIN}
    FOR NO KEY UPDATE OF j SKIP LOCKED
),
done AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'completed', completed_at = now(), result = %(results)s::jsonb -> mine.place::text,
        {record_start("mine.took")}, {CLEAR_LEASE}
    FROM mine WHERE j.ctid = mine.ctid AND j.id = mine.id AND j.lease_token = mine.token{done_where}
    RETURNING j.id, mine.token, mine.place
)"""


COMPLETED_CTE = _completed_cte()

# The attempts ``done`` completes in a batch with endings: those that end no workflow, those
# whose workflow's row ``ending`` locked, and those whose workflow is gone. Judged on ``mine``'s
# rows, once each; ``mine`` locks the others too (its own jobs, for the statement's length).
# Written into ``mine``, the test went down to the batch's unnest, which the planner ran again for
# each job it locked: the batch's square in tests and lookups (a batch of 200 took 110 ms, one of
# 1,000 1.6 s, where the plain batch took 6 and 30).
_NOT_HELD_ELSEWHERE = """
      AND (NOT %(endings)s::jsonb ? mine.place::text OR mine.place IN (SELECT place FROM ending)
           OR NOT EXISTS (
               SELECT FROM pgjobs_workflow_executions AS w
               WHERE w.workflow_id = %(endings)s::jsonb -> mine.place::text ->> 'id'))"""

# A workflow ends with its job's completion, in the same statement (``endings``: place -> the
# ending's JSON, jobs.context.WorkflowEnding), so a workflow is never completed behind a job that
# is not, nor a job behind a workflow still running, whatever crashes between; and a handler
# thread does not wait for a commit of its own at the end of each workflow (benchmarks/README.md,
# the twenty-second round). ``ending`` locks those workflows' rows first (a workflow row before
# its job row, as everywhere) and skips one another transaction holds, as ``mine`` skips a job:
# that attempt is left out of ``done``, so not completed, and written again like a held job (not
# when its workflow is gone: an operator deleted it, and the job completes). A workflow no longer
# running or pending (cancelled meanwhile) keeps what it is and its job completes all the same:
# the reply gives that attempt as ``-place``. ``ended`` writes the rest and wakes their waiters,
# whose rows an application's transaction may hold: ``lock_timeout`` (set for this statement's
# transaction only; NULL inside a caller's transaction, which it would outlast) bounds those
# waits, as worker.lock_waits bounds a bury's. Not a lock on the workflows' table itself (DDL
# without CONCURRENTLY, LOCK TABLE): that one is taken as the statement is planned, before the
# bound, and waited for as the plain completion waits for one on the job table. Only a batch
# with an ending runs this statement: the plain one plans in half the time (0.19 against 0.35
# ms). Each workflow is looked up by its key, one lookup an ending: joined, the planner took
# jsonb_each for a hundred rows and hashed it against a scan of every workflow, for a batch of
# four (benchmarks/README.md, the twenty-third round); a subquery that locks is never flattened
# into a join, so it runs once an ending, by the key.
ENDED_CTE = f"""ending AS MATERIALIZED (
    SELECT f.key::int AS place, w.workflow_id, w.status IN ('running', 'pending') AS open,
           f.value AS ending,
           CASE WHEN %(lock_timeout)s::text IS NOT NULL
                THEN set_config('lock_timeout', %(lock_timeout)s::text, true) END
    FROM jsonb_each(%(endings)s::jsonb) AS f,
    LATERAL (
        SELECT w.workflow_id, w.status FROM pgjobs_workflow_executions AS w
        WHERE w.workflow_id = f.value ->> 'id'
        FOR NO KEY UPDATE SKIP LOCKED
    ) AS w
),
{_completed_cte(_NOT_HELD_ELSEWHERE)},
ended AS (
    UPDATE pgjobs_workflow_executions AS w
    SET status = ending.ending ->> 's', output = ending.ending -> 'o',
        error = ending.ending -> 'e', completed_at = now(), updated_at = now()
    FROM ending JOIN done ON done.place = ending.place
    WHERE w.workflow_id = ending.workflow_id AND ending.open
    RETURNING ending.place, pgjobs_workflow_wake('result:' || w.workflow_id)
)"""


class _Statement(NamedTuple):
    """A completion statement: its text for ``execute()``, its parameters (finished_params) in
    the order :attr:`numbered` (its text for queries.sent) numbers them."""

    sql: str
    names: tuple[str, ...]

    @property
    def numbered(self) -> bytes:
        return _NUMBERED[self.sql]


# Each reply names each attempt completed by its place in the batch; with endings, negated when
# it had ended a workflow and that ending was not written.
_JOBS = _Statement(
    f"WITH {COMPLETED_CTE} SELECT place FROM done", ("ids", "tokens", "took", "results")
)
_ENDED = _Statement(
    f"""WITH {ENDED_CTE}
SELECT CASE WHEN %(endings)s::jsonb ? place::text AND place NOT IN (SELECT place FROM ended)
            THEN -place ELSE place END
FROM done""",
    (*_JOBS.names, "endings", "lock_timeout"),
)
_NUMBERED = {s.sql: numbered(s.sql, s.names) for s in (_JOBS, _ENDED)}


def _statement(params: dict[str, Any]) -> _Statement:
    return _JOBS if params["endings"] is None else _ENDED


def _numbered(*finished: Any) -> tuple[bytes, list[str | None]]:
    """The statement for :func:`finished_params` of ``finished``, numbered for queries.sent,
    and its parameters in that order."""
    params = finished_params(*finished)
    statement = _statement(params)
    return statement.numbered, [params[name] for name in statement.names]


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
    """The parameters of COMPLETED_CTE and ENDED_CTE: the attempts' tokens, how long each ran,
    the result each kept and the workflow each ended (both as JSON text), all in the same order
    (None: unknown, or none); ``lock_timeout`` bounds the waits of the wake-ups of a workflow's
    ending (None: unbounded, inside a caller's transaction)."""
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
    another transaction holds is skipped, not waited for (ENDED_CTE: the attempt still
    holds it, and the worker writes it again). A crash before this commits leaves the jobs
    running; they are rescued and run again (at-least-once).
    """
    if not tokens:
        return Completed(tokens, ())
    params = finished_params(tokens, took, results, endings, lock_timeout)
    cur.execute(_statement(params).sql, params)
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
    statement, values = _numbered(tokens, took, results, endings, lock_timeout)
    return statement, encoded_texts(conn, values), None, None


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
    sent = Sent(conn, *_numbered(tokens, took, results, endings, lock_timeout))
    return SentCompletion(sent, tokens)
