"""A completion sent without waiting for its reply (queries.send_completion over queries.sent),
as a worker sends the successes behind a claim: it writes and answers what complete_jobs does,
the connection is itself again once the reply is read, an error the server answers is raised at
the reply, and a notification that came in with the reply is still delivered."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue_many, get_job, queries
from tests.helpers import database_conninfo, second_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conn() -> Iterator[psycopg.Connection[Any]]:
    """A worker's connection: autocommit, not Django's."""
    conn = second_connection(autocommit=True)
    yield conn
    conn.close()


def claim(conn: psycopg.Connection[Any], limit: int) -> list[queries.ClaimedJob]:
    return queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=limit, lease_seconds=30, queues=None, job_names=None
    )


def test_it_completes_the_attempts_that_hold_their_jobs_and_names_them(
    conn: psycopg.Connection[Any],
) -> None:
    enqueue_many("test.record", [{}, {}, {}])
    first, second, third = claim(conn, 3)
    stale = (third.id, uuid.uuid4())  # an attempt whose job another attempt holds now
    tokens = [first.token, stale, second.token]
    sent = queries.send_completion(
        conn, tokens=tokens, took=[0.5, 0.1, None], results=['{"n": 1}', None, "[2]"]
    )
    assert sent.reply() == [first.token, second.token]
    # Each completed row has its own result, by its place in the batch (all three share their
    # claim's lease token).
    rows = conn.execute(
        "SELECT id, status, result FROM pgjobs_job_queue ORDER BY id",
    ).fetchall()
    assert {(r[0], r[1], str(r[2])) for r in rows} == {
        (first.id, "completed", "{'n': 1}"),
        (second.id, "completed", "[2]"),
        (third.id, "running", "None"),
    }
    # The connection is the worker's again.
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_error_the_server_answers_is_raised_at_the_reply_and_writes_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    enqueue_many("test.record", [{}])
    (job,) = claim(conn, 1)
    sent = queries.send_completion(conn, tokens=[job.token], results=["not json"])
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        sent.reply()
    assert get_job(job.id).status == "running"
    # Nothing of the failed statement is left on the connection: the next one runs.
    assert queries.send_completion(conn, tokens=[job.token]).reply() == [job.token]
    assert get_job(job.id).status == "completed"


def test_a_notification_that_came_with_the_reply_is_delivered(
    conn: psycopg.Connection[Any],
) -> None:
    enqueue_many("test.record", [{}])
    (job,) = claim(conn, 1)
    conn.execute("LISTEN pgjobs_test_sent")
    with second_connection() as other:
        other.execute("NOTIFY pgjobs_test_sent, 'hello'")
    # Sent after the NOTIFY committed: the notification reaches the socket before the reply, and
    # reading the reply takes both in.
    assert queries.send_completion(conn, tokens=[job.token]).reply() == [job.token]
    notes = list(conn.notifies(timeout=0))
    assert [(n.channel, n.payload) for n in notes] == [("pgjobs_test_sent", "hello")]


def test_a_connection_lost_before_the_reply_is_an_error_not_an_empty_answer(
    conn: psycopg.Connection[Any],
) -> None:
    enqueue_many("test.record", [{}])
    (job,) = claim(conn, 1)
    sent = queries.send_completion(conn, tokens=[job.token])
    conn.pgconn.finish()  # the reply is never read: it may or may not have committed
    with pytest.raises(psycopg.OperationalError, match="lost before the reply"):
        sent.reply()


def test_a_big_send_reads_what_the_server_writes_meanwhile(conn: psycopg.Connection[Any]) -> None:
    """The server, blocked writing notifications to this LISTENing connection, reads nothing
    until they are read: a send that only waited to write never ended (libpq's advice for
    PQflush: read what comes while writing)."""
    conn.execute("LISTEN pgjobs_test_flood")
    with second_connection() as other:
        other.execute(
            "SELECT pg_notify('pgjobs_test_flood', i || repeat('x', 7900)) "
            "FROM generate_series(1, 3000) AS i"  # distinct: a transaction's repeats merge
        )
    # The idle backend writes them until both sockets' buffers are full, then waits on us.
    pid = conn.info.backend_pid
    with second_connection() as watcher:
        wait_for(
            lambda: (
                watcher.execute(
                    "SELECT wait_event = 'ClientWrite' FROM pg_stat_activity WHERE pid = %s", [pid]
                ).fetchone()
                == (True,)
            ),
            what="the server blocked writing notifications to the listener",
        )
    big = '"' + "y" * (32 * 1024 * 1024) + '"'
    done: list[Any] = []
    sending = threading.Thread(
        target=lambda: done.append(
            queries.send_completion(
                conn, tokens=[(uuid.uuid4(), uuid.uuid4())], results=[big]
            ).reply()
        ),
        daemon=True,
    )
    sending.start()
    sending.join(30)
    if sending.is_alive():  # let both sides go so the test can end
        with second_connection() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    assert done == [[]], "the send never ended"
    # None lost on the way: those read during the send, and the rest as the server sends them.
    assert len(list(conn.notifies(timeout=10, stop_after=3000))) == 3000


def test_parameters_go_in_the_connections_encoding() -> None:
    latin1 = psycopg.connect(database_conninfo(), autocommit=True, client_encoding="LATIN1")
    try:
        enqueue_many("test.record", [{}])
        (job,) = claim(latin1, 1)
        sent = queries.send_completion(latin1, tokens=[job.token], results=['"café"'])
        assert sent.reply() == [job.token]
        assert get_job(job.id).result == "café"
        # One it cannot carry is refused before anything is sent: the connection goes on.
        with pytest.raises(psycopg.DataError, match="encoding"):
            queries.send_completion(latin1, tokens=[job.token], results=['"雪"'])
        assert latin1.execute("SELECT 1").fetchone() == (1,)
    finally:
        latin1.close()
