"""The raw-SQL baseline: the least a PostgreSQL queue worker can do, with psycopg and nothing else.

One statement claims a batch with SKIP LOCKED, one statement completes it. ``drain`` empties the
due jobs and exits; ``listen`` waits on LISTEN/NOTIFY and notes when each job's "handler" starts.
Run by run.py as separate processes, exactly like the library's workers.
"""

from __future__ import annotations

import select
import sys
import time
from typing import Any

import psycopg

CLAIM = """
WITH due AS (
    SELECT id FROM pgjobs_job_queue
    WHERE status = 'pending' AND scheduled_for <= now()
    ORDER BY priority DESC, scheduled_for, id LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE pgjobs_job_queue AS j SET status = 'running', attempt = j.attempt + 1, locked_at = now()
FROM due WHERE j.id = due.id RETURNING j.id, j.payload
"""
COMPLETE = (
    "UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() WHERE id = ANY(%s)"
)


def drain(conn: psycopg.Connection[tuple[Any, ...]], batch: int) -> None:
    while True:
        rows = conn.execute(CLAIM, [batch]).fetchall()
        if not rows:
            return
        conn.execute(COMPLETE, [[r[0] for r in rows]])


def listen(conn: psycopg.Connection[tuple[Any, ...]], expected: int) -> None:
    conn.execute("LISTEN pgjobs")
    seen = 0
    while seen < expected:
        select.select([conn.fileno()], [], [], 1.0)
        list(conn.notifies(timeout=0))
        rows = conn.execute(CLAIM, [10]).fetchall()
        for _id, payload in rows:
            conn.execute(
                "INSERT INTO bench_latency (n, started) VALUES (%s, %s)",
                [payload["n"], time.time()],
            )
        if rows:
            conn.execute(COMPLETE, [[r[0] for r in rows]])
            seen += len(rows)


if __name__ == "__main__":
    mode, url, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with psycopg.connect(url, autocommit=True, application_name="pgjobs-baseline") as connection:
        drain(connection, number) if mode == "drain" else listen(connection, number)
