"""The claim statement's plan: an ordered index scan that stops at LIMIT, rows updated by key."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def cte_plan(plan: str, name: str) -> str:
    """The lines of ``plan`` (EXPLAIN text) under ``CTE name``: that CTE's own subtree."""
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"CTE {name}"))
    depth = len(lines[start]) - len(lines[start].lstrip())
    subtree = [lines[start]]
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= depth and line.strip().startswith(("CTE ", "->")):
            break
        subtree.append(line)
    return "\n".join(subtree)


@pytest.mark.parametrize(
    ("queues", "index"),
    [(None, "pgjobs_job_claim"), (["mail"], "pgjobs_job_queue_claim")],
    ids=["all queues", "one queue"],
)
def test_the_claim_walks_its_index_in_order(queues: list[str] | None, index: str) -> None:
    """EXPLAIN the worker's own claim statement over a backlog: an ordered index scan that stops
    at LIMIT, never a sort of every due row."""
    from django_pgjobs.queries.claim import claim_statement

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, scheduled_for) "
            "SELECT 'test.record', CASE WHEN n % 50 = 0 THEN 'mail' ELSE 'default' END, "
            "now() - interval '1 second' FROM generate_series(1, 5000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        sql, params = claim_statement(
            worker_id="w", limit=10, lease_seconds=30, queues=queues, job_names=["test.record"]
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = cte_plan("\n".join(r[0] for r in cur.fetchall()), "due")
    assert index in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("limit", [1, 50, 500])
def test_the_claim_updates_its_rows_by_tuple_id_however_large_the_batch(limit: int) -> None:
    """A prefetching worker claims hundreds of rows at once: the update takes each by the tuple
    id its lock found (a Tid Scan: no second descent of the primary key), never by hashing the
    batch against a sequential scan of the whole table."""
    from django_pgjobs.queries.claim import claim_statement

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) "
            "SELECT 'test.record' FROM generate_series(1, 5000)"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        sql, params = claim_statement(
            worker_id="w", limit=limit, lease_seconds=30, queues=None, job_names=None
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    claimed = cte_plan(plan, "claimed")
    assert "Tid Scan on pgjobs_job_queue" in claimed, plan
    assert "pgjobs_job_queue_pkey" not in claimed, plan
    # Nor the rows chosen (the flow-controlled part, unused here, has its own test).
    for part in (claimed, cte_plan(plan, "due")):
        assert "Seq Scan on pgjobs_job_queue" not in part, plan
