"""The flow-controlled claim's generic plan reads what its plan for the values reads.

The worker runs that claim prepared on one generic plan, made without the parameters' values
(prepared.run_generic): planning it for each claim's values cost 4.4 ms a claim. That is safe
only while the plan does not depend on them. Counted in rows and index entries of the job table
that EXPLAIN ANALYZE reports, for each kind of limit, never in time."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_pgjobs.prepared import preparing_cursor, run_generic
from django_pgjobs.queries.claim import claim_jobs, claim_statement
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection
from tests.queries.test_claim_plan import entries_read, generic_entries_read

pytestmark = pytest.mark.django_db(transaction=True)

LIMITS: dict[str, dict[str, Any]] = {
    "partition_concurrency": {"partition_concurrency": 1},
    "fair": {"fair": True},
    "concurrency": {"concurrency": 50},
    "rate_limit": {"rate_limit": 100, "rate_period": 1},
    "partition_rate_limit": {"partition_rate_limit": 1, "rate_period": 60},
}


@pytest.mark.parametrize("limit", [10, 500])
@pytest.mark.parametrize("queues", [None, ["q", "other"]], ids=["all queues", "two queues"])
@pytest.mark.parametrize("kind", list(LIMITS))
def test_the_flow_claims_generic_plan_reads_what_its_plan_for_the_values_reads(
    kind: str, queues: list[str] | None, limit: int
) -> None:
    set_queue_limits("q", **LIMITS[kind])
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
            "SELECT 'test.record', CASE WHEN n % 5 = 0 THEN 'other' ELSE 'q' END, "
            "'k' || (n % 1000) FROM generate_series(1, 20000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    others = second_connection()
    try:  # some of them running, claimed by another worker after the statistics were taken
        claim_jobs(
            others.cursor(), worker_id="others", limit=300, lease_seconds=60, queues=None,
            job_names=None,
        )  # fmt: skip
    finally:
        others.close()
    sql, params = claim_statement(
        worker_id="w", limit=limit, lease_seconds=60, queues=queues, job_names=["test.record"],
        flow=True, start_now=8,
    )  # fmt: skip
    planned = entries_read(sql, params)
    generic = generic_entries_read(sql, params)
    assert generic <= 1.1 * planned + 10, (planned, generic)


def test_the_generic_setting_ends_with_the_statement_even_when_it_fails() -> None:
    conn = second_connection()
    try:
        cur = preparing_cursor(conn)
        for _ in range(8):  # past the sixth run: the connection is known to be direct
            cur.execute("SELECT 1")
        with pytest.raises(Exception, match="division by zero"):
            run_generic(cur, "SELECT 1 / %(zero)s", {"zero": 0})
        row = conn.execute("SELECT current_setting('plan_cache_mode')", prepare=False).fetchone()
    finally:
        conn.close()
    assert row == ("auto",)
