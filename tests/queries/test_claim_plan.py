"""The claim's plan does not depend on the table's statistics (migration 0023).

Statistics taken while the table held only finished rows (before a burst) make PostgreSQL expect
one pending row. It then preferred the smallest index on pending jobs, on scheduled_for alone,
read every due job in it and sorted them: each claim of 10 read all 2,000 here (1,000,000 on a
backlog that size) until autovacuum analyzed the table again. Counted in index entries of
pgjobs_job_queue, as EXPLAIN ANALYZE reports them, never in time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs.queries.claim import claim_statement

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED, DUE, LIMIT = 20_000, 2_000, 10


@pytest.fixture
def stale_statistics() -> None:
    """Analyzed holding only finished jobs, then a burst of due ones the statistics miss."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, completed_at) "
            "SELECT 'test.record', 'default', 'completed', 1, now() FROM generate_series(1, %s)",
            [FINISHED],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
            "SELECT 'test.record', 'default', (g %% 3)::smallint, "
            "now() - g * interval '1 ms' FROM generate_series(1, %s) AS g",
            [DUE],
        )


def entries_read(sql: str, params: dict[str, Any]) -> int:
    """Rows the plan's scans of pgjobs_job_queue returned, summed over loops; the claim runs
    inside EXPLAIN ANALYZE and is rolled back."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        (plan,) = cur.fetchone()
        transaction.set_rollback(True)
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def entries(node: dict[str, Any]) -> int:
        own = 0
        if node.get("Relation Name") == "pgjobs_job_queue" and "Scan" in node["Node Type"]:
            own = round(node["Actual Rows"] * node["Actual Loops"])
        return own + sum(entries(child) for child in node.get("Plans", []))

    return entries(plan[0]["Plan"])


@pytest.mark.usefixtures("stale_statistics")
@pytest.mark.parametrize("queues", [None, ["default"], ["default", "other"]])
def test_a_claim_reads_what_it_takes_whatever_the_statistics_expect(
    queues: list[str] | None,
) -> None:
    """PostgreSQL 18 once skip-scanned pgjobs_job_partition_claim here and sorted every due
    job (2,010 entries) for a claim of every queue or of one; an equality on the priority
    (queries.claim: one range per pending priority) leaves it the claim's index."""
    sql, params = claim_statement(
        worker_id="w", limit=LIMIT, lease_seconds=60, queues=queues,
        job_names=["test.record"], lease_token=None, start_now=None, flow=False,
    )  # fmt: skip
    read = entries_read(sql, params)
    # The walk of the claim's index stops at LIMIT; the update looks each id up by its key.
    assert read <= 3 * LIMIT, read
