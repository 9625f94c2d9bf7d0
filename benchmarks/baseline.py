"""The raw-SQL baseline: the least a PostgreSQL queue worker can do, with psycopg and nothing else.

One statement claims a batch with SKIP LOCKED, one statement completes it. ``drain`` empties the
due jobs and exits, keeping them as ``completed`` rows (an ``UPDATE``, as our worker does);
``drain-delete`` is the same with a ``DELETE`` instead (as pgqueuer does), so the two together
show what keeping finished rows costs on its own; ``listen`` waits on LISTEN/NOTIFY and notes
when each job's "handler" starts; ``workflows`` runs started workflows of N no-op steps the
least durable way: claim one, write one checkpoint row per step (one ``INSERT`` each,
autocommit), mark it done. Run by run.py as separate processes, exactly like the library's
workers: ``python benchmarks/baseline.py MODE N`` with the database in ``BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import os
import select
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CLAIM = """
WITH due AS (
    SELECT id FROM pgjobs_job_queue
    WHERE status = 'pending' AND scheduled_for <= now()
    ORDER BY priority DESC, scheduled_for, id LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE pgjobs_job_queue AS j SET status = 'running', attempt = j.attempt + 1, locked_at = now()
WHERE j.id = ANY(ARRAY(SELECT id FROM due)) RETURNING j.id, j.payload
"""
COMPLETE = (
    "UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() WHERE id = ANY(%s)"
)
DELETE = "DELETE FROM pgjobs_job_queue WHERE id = ANY(%s)"


def drain(conn: psycopg.Connection[tuple[Any, ...]], batch: int, *, delete: bool = False) -> None:
    """Claim and complete batches until none is due. Deleting leaves no row to read the rate
    from, so that variant notes its own first claim and last completion in ``bench_drain``."""
    first: float | None = None
    done = 0
    while True:
        started = time.time()
        rows = conn.execute(CLAIM, [batch]).fetchall()
        if not rows:
            break
        first = first or started
        conn.execute(DELETE if delete else COMPLETE, [[r[0] for r in rows]])
        done += len(rows)
    if delete and first is not None:
        conn.execute(
            "INSERT INTO bench_drain (first_claim, last_completion, jobs) VALUES (%s, %s, %s)",
            [first, time.time(), done],
        )


CHECKPOINT = """
INSERT INTO pgjobs_workflow_steps
    (workflow_id, step_index, step_name, status, output, attempts, started_at, completed_at)
VALUES (%s, %s, 'bench.noop_step', 'completed', %s, 1, %s, now())
"""
# The workflow and its job, in one statement.
FINISH = """
WITH w AS (
    UPDATE pgjobs_workflow_executions
    SET status = 'completed', output = %(output)s, completed_at = now(), updated_at = now()
    WHERE workflow_id = %(workflow_id)s
)
UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() WHERE id = %(id)s
"""


def workflows(conn: psycopg.Connection[tuple[Any, ...]], steps: int) -> None:
    while True:
        row = conn.execute(CLAIM, [1]).fetchone()
        if row is None:
            return
        job_id, payload = row
        workflow_id = payload["workflow_id"]
        value = 0
        for index in range(steps):
            started = datetime.now(UTC)
            conn.execute(CHECKPOINT, [workflow_id, index, Jsonb(value), started])
        conn.execute(FINISH, {"output": Jsonb(value), "workflow_id": workflow_id, "id": job_id})


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
    # The database comes from the environment, like the library worker's: a command line is
    # visible to every user of the machine (ps), and a DSN may carry a password.
    url = os.environ["BENCH_DATABASE_URL"]
    mode, number = sys.argv[1], int(sys.argv[2])
    with psycopg.connect(url, autocommit=True, application_name="pgjobs-baseline") as connection:
        if mode in ("drain", "drain-delete"):
            drain(connection, number, delete=mode == "drain-delete")
        elif mode == "workflows":
            workflows(connection, number)
        else:
            listen(connection, number)
