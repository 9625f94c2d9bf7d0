"""The next claim sent behind the completions, neither waiting for the other (libpq's pipeline).

queries.sent lets the server write a busy worker's completions while its loop thread makes the
claim's rows into jobs. The turns that were left (benchmarks/README.md, the seventeenth round):
while the handler threads ran those jobs the server had nothing to do, and while it claimed
again the threads had nothing. A claim that comes back full says more is due: the worker sends
the next one at once, behind the completions waiting so far, and the server writes and claims
while the last claim's jobs are made and handed out.

Each statement is its own implicit transaction (a Sync after each), as two autocommit
``execute()`` calls would be: a completion that fails takes nothing from the claim behind it,
and each commits on its own. Neither is prepared, so a transaction pooler passes them as it
passes any other statement. Until :meth:`ClaimBehind.reply` has read both replies the
connection is in pipeline mode and nothing else may use it: the caller reads it before its next
statement, whatever happens in between. Interrupted while it waits, it closes the connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

from django_pgjobs.queries.base import ClaimedJob, Token
from django_pgjobs.queries.claim import FlowHint, claim_statement, claimed_from, rules_alone
from django_pgjobs.queries.completions import Completed, completion_statement
from django_pgjobs.queries.sent import (
    closed_if_interrupted,
    deliver_notifications,
    flush,
    next_result,
    numbered,
    placeholders,
)


class ClaimBehind:
    """The completions of ``tokens`` (``took``, ``results``, ``endings``, ``lock_timeout``: as
    queries.complete_jobs; none when ``tokens`` is empty) and a plain claim (``claim``:
    queries.claim_jobs' arguments, its ``lease_token`` among them, and its ``hint`` if any), on
    their way. Raises psycopg's errors: at the send if the connection is gone or a parameter
    cannot be sent; :meth:`reply` raises the completions' error, :meth:`claimed` the claim's."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        tokens: Sequence[Token],
        took: Sequence[float | None] | None = None,
        results: Sequence[str | None] | None = None,
        endings: Sequence[str | None] | None = None,
        lock_timeout: str | None = None,
        claim: dict[str, Any],
    ) -> None:
        self._conn = conn
        self._tokens = tokens
        claim = dict(claim)
        self._hint: FlowHint | None = claim.pop("hint", None)
        self.lease_token: uuid.UUID = claim["lease_token"]
        # Everything is encoded before anything is sent: a parameter that cannot be leaves the
        # connection as it was.
        statements: list[Encoded] = []
        if tokens:
            completions = completion_statement(conn, tokens, took, results, endings, lock_timeout)
            statements.append(completions)
        statements.append(_encoded(conn, *claim_statement(**claim)))
        self._claim: list[pq.abc.PGresult] = []
        # When the claim was sent (monotonic), no later than its statement began: its jobs'
        # leases count from here (worker.ahead).
        self.sent = time.monotonic()
        pgconn = conn.pgconn
        with closed_if_interrupted(conn):
            try:
                pgconn.enter_pipeline_mode()
                for sql, values, types, formats in statements:
                    pgconn.send_query_params(sql, values, param_types=types, param_formats=formats)
                    pgconn.pipeline_sync()
                flush(pgconn)
            except psycopg.Error:
                # Part of the pipeline may be on its way: the connection is of no further use
                # (the loop reconnects, and gives back what the claim took if it committed).
                conn.close()
                raise

    def reply(self) -> Completed:
        """Wait for both replies; the attempts the completions wrote, as complete_jobs returns
        them. Raises the error the server answered the completions with (the claim's reply
        read all the same), or OperationalError if the connection was lost before both were in
        (either may have committed)."""
        conn, pgconn = self._conn, self._conn.pgconn
        replies: list[list[pq.abc.PGresult]] = []
        statement: list[pq.abc.PGresult] = []
        with closed_if_interrupted(conn):
            while len(replies) < (2 if self._tokens else 1) and pgconn.status == pq.ConnStatus.OK:
                result = next_result(pgconn)
                if result is None:  # the end of a statement's results; its Sync's comes next
                    continue
                if result.status == pq.ExecStatus.PIPELINE_SYNC:
                    replies.append(statement)
                    statement = []
                    continue
                statement.append(result)
        if pgconn.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError("the connection was lost before the reply was read")
        try:
            pgconn.exit_pipeline_mode()
        except psycopg.Error:
            conn.close()  # left in pipeline mode, it would run nothing more
            raise
        deliver_notifications(pgconn)
        self._claim = replies[-1]
        if not self._tokens:
            return Completed(self._tokens, ())
        completed = _only(replies[0])
        if completed is None or completed.status != pq.ExecStatus.TUPLES_OK:
            raise _error(conn, completed)
        places = (int(completed.get_value(i, 0) or 0) for i in range(completed.ntuples))
        return Completed(self._tokens, places)

    def claimed(self) -> list[ClaimedJob]:
        """The claim's jobs (once :meth:`reply` has read it); raises the server's error. A
        reply that says flow control applies took none (``hint`` notes it)."""
        result = _only(self._claim)
        if result is None or result.status != pq.ExecStatus.TUPLES_OK:
            raise _error(self._conn, result)
        transformer = Transformer.from_context(self._conn)
        transformer.set_pgresult(result)
        rows = transformer.load_rows(0, result.ntuples, tuple)
        return claimed_from(rows, sent=self.sent, lease_token=self.lease_token, hint=self._hint)

    def taken(self) -> int:
        """How many jobs the claim took (once :meth:`reply` has read it), before its rows are
        made into jobs: 0 if it failed or flow control applies."""
        result = _only(self._claim)
        if result is None or result.status != pq.ExecStatus.TUPLES_OK:
            return 0
        return 0 if rules_alone(result) else result.ntuples


# A statement as libpq's send_query_params() takes it: text, values, their types and formats.
Encoded = tuple[bytes, Sequence[Any], Sequence[int] | None, Sequence[pq.Format] | None]


def _encoded(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> Encoded:
    """A statement in psycopg's ``%(name)s`` style as the protocol's, its parameters dumped as
    psycopg would dump them for a cursor's ``execute()``: those it uses (a parameter the server
    is sent but never sees in the text has no type it could tell)."""
    names = placeholders(sql)
    transformer = Transformer.from_context(conn)
    values = transformer.dump_sequence([params[n] for n in names], [PyFormat.AUTO] * len(names))
    return numbered(sql, names), values, transformer.types, transformer.formats


def _only(results: Sequence[pq.abc.PGresult]) -> pq.abc.PGresult | None:
    """A statement's one result (None if it has none: it never ran)."""
    return results[0] if results else None


def _error(conn: psycopg.Connection[Any], result: pq.abc.PGresult | None) -> psycopg.Error:
    if result is None:  # a Sync with no result before it: nothing ran
        return psycopg.OperationalError("the statement sent in the pipeline has no reply")
    return psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
