"""The flow-controlled claim's generic plan reads what its plan for the values reads.

The worker runs that claim prepared on one generic plan, made without the parameters' values
(prepared.run_generic): planning it for each claim's values cost 4.4 ms a claim. That is safe
only while the plan does not depend on them. Counted in rows and index entries of the job table
that EXPLAIN ANALYZE reports (returned or filtered out), for each kind of limit, never in
time. (The statements inside the counting functions do not show in EXPLAIN; a review compared
them with auto_explain, prepared as the worker prepares the claim, in a dozen more states: the
same reads.)"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs.database import connect
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
@pytest.mark.parametrize(
    "queues", [None, ["q"], ["q", "other"]], ids=["all queues", "one queue", "two queues"]
)
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
    planned = entries_read(sql, params, filtered=True)
    generic = generic_entries_read(sql, params, filtered=True)
    assert generic <= 1.1 * planned + 10, (planned, generic)


def test_the_generic_settings_end_with_the_statement_even_when_it_fails() -> None:
    """On one of our own connections: prepared on its first run, run on its generic plan, and
    the session's settings are a fresh connection's afterwards, whether it ran or failed."""
    settings = "SELECT current_setting('plan_cache_mode'), current_setting('jit')"
    conn = connect("default", application_name="pgjobs test")
    try:
        defaults = conn.execute(settings, prepare=False).fetchone()
        cur = preparing_cursor(conn)
        run_generic(cur, "SELECT %(n)s::int + 1", {"n": 1})
        assert cur.fetchone() == (2,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            run_generic(cur, "SELECT 1 / %(zero)s::int", {"zero": 0})
        after = conn.execute(settings, prepare=False).fetchone()
        plans = conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%%+ 1'",
            prepare=False,
        ).fetchall()
    finally:
        conn.close()
    assert after == defaults
    assert plans == [(1, 0)]
