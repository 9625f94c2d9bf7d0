"""An idle worker's claim is prepared on its connection (parse and plan were most of its round
trip), the flow-controlled one on its generic plan; the batch statements never are."""

from __future__ import annotations

from typing import Any

import pytest

from django_pgjobs import enqueue, get_job
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = 8  # past the sixth run of a statement, where psycopg prepares it


def prepared(worker: Worker) -> list[str]:
    """The statements prepared on the worker's own connection (its server session)."""
    conn = worker._link.conn
    assert conn is not None
    rows = conn.execute("SELECT statement FROM pg_prepared_statements", prepare=False).fetchall()
    return [row[0] for row in rows]


def claims(worker: Worker, queue: str = "default") -> list[Any]:
    """RUNS idle cycles, each claiming the one job just enqueued, alone."""
    ids = []
    for n in range(RUNS):
        ids.append(enqueue("test.record", {"label": f"idle {n}"}, queue=queue))
        assert worker.run_once().completed == 1
    return ids


def test_the_plain_claim_is_prepared_and_runs_prepared(make_worker: type[Worker]) -> None:
    worker = make_worker(concurrency=1)
    ids = claims(worker)
    statements = prepared(worker)
    assert [s for s in statements if "FROM claimed" in s and "due_flow" not in s], statements
    # Nothing with a batch in it: a generic plan made without the arrays' sizes was slow.
    assert not [s for s in statements if "held" in s], statements
    assert all(get_job(job_id).status == "completed" for job_id in ids)


def test_the_flow_controlled_claim_runs_prepared_on_its_generic_plan(
    make_worker: type[Worker],
) -> None:
    """Left to choose, PostgreSQL planned the prepared flow claim again at every run; it runs
    on one generic plan (its reads: tests/queries/test_flow_plan.py), and the setting that
    makes it so is the claim's alone: the batch statements after it are planned as before."""
    set_queue_limits("limited", concurrency=5)
    worker = make_worker(concurrency=1, queues=["limited"])
    ids = claims(worker, queue="limited")
    conn = worker._link.conn
    assert conn is not None
    rows = conn.execute(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%%due_flow%%'",
        prepare=False,
    ).fetchall()
    # Prepared from its first run (the connection is asked at once whether it is direct), so
    # every claim but the first plain one ran on the generic plan.
    assert len(rows) == 1 and rows[0][0] >= RUNS and rows[0][1] == 0, rows
    settings = "SELECT current_setting('plan_cache_mode'), current_setting('jit')"
    fresh = second_connection()
    try:
        defaults = fresh.execute(settings).fetchone()
    finally:
        fresh.close()
    assert conn.execute(settings, prepare=False).fetchone() == defaults
    assert all(get_job(job_id).status == "completed" for job_id in ids)


def test_a_prepared_claim_the_server_lost_is_made_again(make_worker: type[Worker]) -> None:
    """DEALLOCATE ALL behind psycopg's back (its cache still lists the claim): the next claim
    is refused before it runs, forgotten and run again, and the job runs."""
    worker = make_worker(concurrency=1)
    claims(worker)
    conn = worker._link.conn
    assert conn is not None
    conn.execute("DEALLOCATE ALL", prepare=False)
    job_id = enqueue("test.record", {"label": "after the server forgot"})
    assert worker.run_once().completed == 1
    assert get_job(job_id).status == "completed"


def test_a_claim_prepared_with_a_generic_plan_runs(make_worker: type[Worker]) -> None:
    """PostgreSQL may choose the generic plan (made without the parameters' values) for a
    prepared claim: forced here, the claims run on it (its shape: tests/queries/
    test_claim_plan.py)."""
    worker = make_worker(concurrency=1)
    worker.run_once()  # connects
    conn = worker._link.conn
    assert conn is not None
    conn.execute("SET plan_cache_mode = force_generic_plan", prepare=False)
    ids = claims(worker)
    assert all(get_job(job_id).status == "completed" for job_id in ids)
    rows = conn.execute(
        "SELECT generic_plans FROM pg_prepared_statements WHERE statement LIKE '%%FROM claimed%%'",
        prepare=False,
    ).fetchall()
    assert rows and rows[0][0] > 0, rows


def test_a_flow_controlled_claim_the_server_lost_is_made_again(make_worker: type[Worker]) -> None:
    set_queue_limits("limited", concurrency=5)
    worker = make_worker(concurrency=1, queues=["limited"])
    claims(worker, queue="limited")
    conn = worker._link.conn
    assert conn is not None
    conn.execute("DEALLOCATE ALL", prepare=False)
    job_id = enqueue("test.record", {"label": "after the server forgot"}, queue="limited")
    assert worker.run_once().completed == 1
    assert get_job(job_id).status == "completed"
    rows = conn.execute(
        "SELECT generic_plans FROM pg_prepared_statements WHERE statement LIKE '%%due_flow%%'",
        prepare=False,
    ).fetchall()
    assert rows == [(1,)], rows
